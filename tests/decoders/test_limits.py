"""Failure behaviour of shielded decoding at its limits: every row ends with a clear reason and
never returns unchecked text; a failing classifier stops generation (fail closed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import shield
from decoders.loading import Model
from decoders.plain import generate_plain
from decoders.shielded import generate_shielded, judge_for
from decoders.tokenizer import Tokenizer
from shield.errors import BudgetError, ClassifierError, DecoderError
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.rules import ClassifierRule, LiteralRule, RegexRule

PROMPTS = ["the cat sat", "hello there, my old friend", "a"]


def judge_of(rules, tokenizer: Tokenizer, **policy) -> Judge:  # type: ignore[no-untyped-def]
    spec = SimpleNamespace(name="t", rules=tuple(rules), policy=BacktrackPolicy(**policy))
    return judge_for(shield.compile(spec), tokenizer)


def returned_bytes(tokenizer: Tokenizer, tokens: tuple[int, ...]) -> bytes:
    return b"".join(tokenizer.token_bytes[t] for t in tokens)


# Scorers for the classifier-failure tests (importable as "tests.decoders.test_limits:NAME").
def explode(texts: list[str]) -> list[float]:
    raise RuntimeError("scorer is down")


def not_a_number(texts: list[str]) -> list[float]:
    return [math.nan for _ in texts]


def wrong_shape(texts: list[str]) -> list[float]:
    return [0.1] * (len(texts) + 1)


def everything_is_toxic(texts: list[str]) -> list[float]:
    return [0.99 for _ in texts]


@pytest.mark.parametrize("scorer", ["explode", "not_a_number", "wrong_shape"])
def test_failing_classifier_stops_generation(
    tiny_model: Model, tiny_tokenizer: Tokenizer, scorer: str
) -> None:
    rule = ClassifierRule(
        id="tox", scorer=f"tests.decoders.test_limits:{scorer}", threshold=0.5, scope="response"
    )
    judge = judge_of([rule], tiny_tokenizer)
    with pytest.raises(ClassifierError, match=r"classifier .tests\.decoders\.test_limits"):
        generate_shielded(
            tiny_model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=6, temperature=0.0
        )


def test_classifier_that_rejects_everything_ends_in_budget_or_refusal(
    tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    rule = ClassifierRule(
        id="tox",
        scorer="tests.decoders.test_limits:everything_is_toxic",
        threshold=0.5,
        scope="response",
    )
    judge = judge_of([rule], tiny_tokenizer, max_discarded_tokens=12)
    results = generate_shielded(
        tiny_model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=6, temperature=1.0
    )
    for result in results:
        assert result.finish_reason == "budget"
        assert (
            result.tokens == ()
        )  # only the empty response passes a scorer that rejects everything
        assert result.stats.generated_tokens <= 6 + 12


def test_budget_exhausted_stops_at_last_accepted_state(
    tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    judge = judge_of(
        [RegexRule(id="any-e", pattern="e")],
        tiny_tokenizer,
        max_discarded_tokens=3,
        checkpoint="token",
        refusal="No.",
    )
    results = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        PROMPTS,
        judge=judge,
        max_new_tokens=24,
        temperature=1.0,
        seed=[1, 2, 3],
        repair_mask=False,
    )
    for result in results:
        assert b"e" not in returned_bytes(tiny_tokenizer, result.tokens)
        assert result.finish_reason in ("budget", "eos", "length")
        assert result.stats.discarded_tokens <= 3 + 1 or result.finish_reason == "budget"


def test_max_new_tokens_reached_during_repair(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    """A violation on the very last token still gets repaired (or stops) within the bounds."""
    judge = judge_of(
        [LiteralRule(id="l", literal="l")],
        tiny_tokenizer,
        checkpoint="token",
        max_discarded_tokens=8,
    )
    for new_tokens in (1, 2, 3):
        results = generate_shielded(
            tiny_model,
            tiny_tokenizer,
            PROMPTS,
            judge=judge,
            max_new_tokens=new_tokens,
            temperature=1.0,
        )
        for result in results:
            assert len(result.tokens) <= new_tokens
            assert b"l" not in returned_bytes(tiny_tokenizer, result.tokens)
            assert result.stats.generated_tokens <= new_tokens + 8


def test_eos_as_first_token(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    import dataclasses

    eos = 5  # pretend a frequent token is the end of sequence: EOS may come first
    plain = generate_plain(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=4, temperature=0.0)
    first = plain[0].tokens[0]
    model = dataclasses.replace(
        tiny_model, config=dataclasses.replace(tiny_model.config, eos_token_ids=(first,))
    )
    judge = judge_of([LiteralRule(id="x", literal="zzz")], tiny_tokenizer)
    del eos
    results = generate_shielded(
        model, tiny_tokenizer, PROMPTS[:1], judge=judge, max_new_tokens=4, temperature=0.0
    )
    assert results[0].finish_reason == "eos"
    assert results[0].tokens == ()
    assert results[0].text == ""


def test_rows_finish_at_different_times(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of([LiteralRule(id="x", literal="qq")], tiny_tokenizer)
    results = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        PROMPTS,
        judge=judge,
        max_new_tokens=10,
        temperature=1.0,
        seed=[7, 8, 9],
    )
    alone = [
        generate_shielded(
            tiny_model, tiny_tokenizer, [p], judge=judge, max_new_tokens=10, temperature=1.0, seed=s
        )[0]
        for p, s in zip(PROMPTS, [7, 8, 9], strict=True)
    ]
    assert [r.tokens for r in results] == [r.tokens for r in alone]
    assert all(r.finish_reason in ("eos", "length") for r in results)


def test_same_seed_same_output(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of(
        [LiteralRule(id="x", literal="e ")], tiny_tokenizer, checkpoint="token", refusal="No."
    )
    first = generate_shielded(
        tiny_model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=10, seed=11
    )
    second = generate_shielded(
        tiny_model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=10, seed=11
    )
    assert [r.tokens for r in first] == [r.tokens for r in second]
    assert [r.events for r in first] == [r.events for r in second]


def test_cache_too_small_is_a_clear_error(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of([LiteralRule(id="x", literal="zz")], tiny_tokenizer)
    with pytest.raises(BudgetError, match="cache slots"):
        generate_shielded(
            tiny_model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=100, max_slots=64
        )


def test_empty_prompt_is_a_clear_error(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of([LiteralRule(id="x", literal="zz")], tiny_tokenizer)
    with pytest.raises(DecoderError, match="prompt"):
        generate_shielded(tiny_model, tiny_tokenizer, [""], judge=judge, max_new_tokens=4)


def test_unknown_strategy_is_a_clear_error(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of([LiteralRule(id="x", literal="zz")], tiny_tokenizer)
    with pytest.raises(DecoderError, match="strategy"):
        generate_shielded(
            tiny_model, tiny_tokenizer, PROMPTS, judge=judge, strategy="greedy", max_new_tokens=4
        )


def test_mask_strategy_reports_but_does_not_rewind(
    tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    judge = judge_of([LiteralRule(id="x", literal="e")], tiny_tokenizer, refusal="No.")
    results = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        PROMPTS,
        judge=judge,
        strategy="mask",
        max_new_tokens=12,
        temperature=1.0,
    )
    for result in results:
        assert result.stats.rollbacks == 0
        assert b"e" not in returned_bytes(tiny_tokenizer, result.tokens)
        assert np.all([event.kind == "violation" for event in result.events])
