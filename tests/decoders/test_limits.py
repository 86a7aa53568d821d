"""Failure behaviour of shielded decoding at its limits: every row ends with a clear reason and
never returns unchecked text; a failing classifier stops generation (fail closed).

Each scenario is forced by a scripted model (``tests/decoders/scripted.py``: logits that are a
table the test chooses), and each test asserts that its scenario happened (rollbacks, an
exhausted budget, a reported violation) before it asserts the outcome. Greedy scenarios are also
compared with the reference decoder driven by the same table.
"""

from __future__ import annotations

import functools
import math
import re

import pytest

from decoders.config import ModelConfig
from decoders.loading import Model
from decoders.shielded import generate_shielded
from decoders.tokenizer import Tokenizer
from shield.errors import BudgetError, ClassifierError, DecoderError
from shield.rules import ClassifierRule, LiteralRule, MatchOptions, RegexRule, WordsRule
from tests.decoders.scenario_support import (
    PROMPTS,
    Record,
    assert_agrees,
    assert_sound,
    judge_of,
    record,
    reference,
    response_bytes,
    sampled_script,
    scripted_run,
    token,
    without_wall,
)
from tests.decoders.scripted import Script

#: Prompts of the argument-error tests (they fail before anything is compiled).
TEXT_PROMPTS = ["the cat sat", "hello there, my old friend", "a"]


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
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, scorer: str, record_property: Record
) -> None:
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size).chain([t("h"), t("i"), eos])
    for prompt in PROMPTS:
        script.after(t(prompt), [(t("h"), 6.0)])
    run = scripted_run(tiny_config, script)
    rule = ClassifierRule(
        id="tox", scorer=f"tests.decoders.test_limits:{scorer}", threshold=0.5, scope="response"
    )
    judge = judge_of(tiny_tokenizer, rule)
    # The scenario: every row writes "hi" and ends, so the response window is scored (and the
    # scorer fails); the error names the scorer, which proves it was reached.
    with pytest.raises(ClassifierError, match=r"classifier .tests\.decoders\.test_limits"):
        generate_shielded(
            run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=6, temperature=0.0
        )
    record_property("classifier_errors", 1)


@pytest.mark.parametrize("on_exhausted", ["stop", "refuse"])
def test_classifier_that_rejects_everything_ends_in_budget_or_refusal(
    tiny_config: ModelConfig,
    tiny_tokenizer: Tokenizer,
    on_exhausted: str,
    record_property: Record,
) -> None:
    """Every non-empty response is rejected at its end; the budget runs out; only the empty
    response passes. With ``refuse`` the refusal fails the scorer too, so the row stops."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    firsts = [t(c) for c in "hjkmn"]  # 4 rewinds of 3 tokens spend 12; the 5th exhausts
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(first, 6.0 - 0.5 * i) for i, first in enumerate(firsts)])
    for first in firsts:
        script.after(first, [(t("i"), 6.0)])
    script.after(t("i"), [(eos, 6.0)])
    run = scripted_run(tiny_config, script)
    rule = ClassifierRule(
        id="tox",
        scorer="tests.decoders.test_limits:everything_is_toxic",
        threshold=0.5,
        scope="response",
    )
    judge = judge_of(tiny_tokenizer, rule, max_discarded_tokens=12, on_exhausted=on_exhausted)
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=6, temperature=0.0
    )
    counts = record(record_property, results, judge)
    for prompt, result in zip(PROMPTS, results, strict=True):
        # The scenario: four rewinds of 3 tokens each, then a fifth would exceed 12.
        rollbacks = [e for e in result.events if e.kind == "rollback"]
        assert len(rollbacks) == 4 and all(e.rule == "tox" and e.to_token == 0 for e in rollbacks)
        assert result.events[-1].kind == "exhausted" and "budget of 12" in result.events[-1].detail
        assert not judge.refusal_passes()  # the refusal is "toxic" too
        # The outcome: the empty response, the only one the scorer accepts.
        assert result.finish_reason == "budget"
        assert result.tokens == () and result.text == ""
        assert result.stats.generated_tokens == 15 <= 6 + 12
        assert_agrees(result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=6))
    assert counts["exhausted"] == 3 and counts["classifier_events"] == 15


def test_budget_exhausted_stops_at_last_accepted_state(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """Every continuation of " " is a word that runs into "e": each rewind goes back to the word
    start (3 tokens) until the next one would exceed ``max_discarded_tokens``."""
    t = functools.partial(token, tiny_tokenizer)
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(t(" "), 6.0)])
    script.after(t(" "), [(t("d"), 6.0), (t("m"), 5.0), (t("n"), 4.0)])
    for first in "dmn":
        script.after(t(first), [(t("o"), 6.0)])
    script.after(t("o"), [(t("e"), 6.0), (t("x"), 1.0)])  # "x" repairs, but the mask is off
    run = scripted_run(tiny_config, script)
    budget = 7
    judge = judge_of(
        tiny_tokenizer,
        RegexRule(id="any-e", pattern="e"),
        max_discarded_tokens=budget,
        checkpoint="word",
        refusal="No.",
    )
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge,
        max_new_tokens=24, temperature=0.0, repair_mask=False,
    )  # fmt: skip
    record(
        record_property,
        results,
        judge,
        rows_discarding_the_budget=sum(r.stats.discarded_tokens == budget for r in results),
    )
    for prompt, result in zip(PROMPTS, results, strict=True):
        # The scenario: rewinds to the word start, then exhaustion by the budget.
        *rollbacks, exhausted = result.events
        assert [(e.kind, e.from_token, e.to_token) for e in rollbacks] == [("rollback", 4, 1)] * 2
        assert exhausted.kind == "exhausted" and exhausted.rule == "any-e"
        found = re.search(r"discard (\d+) more .* budget of (\d+) \(already discarded (\d+)\)",
                          exhausted.detail)  # fmt: skip
        assert found is not None, exhausted.detail
        more, limit, already = (int(g) for g in found.groups())
        spent = sum(e.from_token - e.to_token for e in rollbacks)
        assert limit == budget and already == spent <= budget < spent + more
        # Every produced token is kept or discarded: the rewinds' and the last violating token.
        assert result.stats.discarded_tokens == spent + 1 == budget
        # The outcome: the row stops at its last accepted state (the failed continuation without
        # its violating token), which passes the spec.
        assert result.finish_reason == "budget"
        assert len(result.tokens) == exhausted.from_token - 1
        assert result.text == " no"
        assert b"e" not in response_bytes(judge, result.tokens)
        assert_sound(judge, result)
        assert_agrees(
            result,
            reference(
                run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=24, repair_mask=False
            ),
        )


def test_max_new_tokens_reached_during_repair(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """The response fills up (``max_new_tokens``) on a whole word that only the end of the text
    confirms; the END check still runs, also when the limit is reached again while the failed
    segment is being regenerated, and each failure is rolled back like any other."""
    t = functools.partial(token, tiny_tokenizer)
    new_tokens = 3
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(t(" "), 6.0)])
    script.after(t(" "), [(t("o"), 6.0), (t("n"), 5.0), (t("i"), 4.0)])
    script.after(t("o"), [(t("k"), 6.0)]).after(t("n"), [(t("o"), 6.0)])
    script.after(t("i"), [(t("t"), 6.0)])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        WordsRule(id="w", words=("ok", "no"), match=MatchOptions(whole_word=True)),
        checkpoint="token",
        max_discarded_tokens=8,
    )
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge,
        max_new_tokens=new_tokens, temperature=0.0,
    )  # fmt: skip
    record(
        record_property,
        results,
        judge,
        rollbacks_at_the_limit=sum(e.from_token == new_tokens for r in results for e in r.events),
    )
    for prompt, result in zip(PROMPTS, results, strict=True):
        # The scenario: " ok" fills the response and fails the END check; the regenerated " no"
        # reaches the limit inside the failed segment (positions 1..2) and fails it again.
        first, second = result.events
        assert (first.kind, first.rule, first.from_token, first.to_token) == ("rollback", "w", 3, 1)
        assert (second.kind, second.from_token, second.to_token) == ("rollback", 3, 1)
        assert second.from_token <= first.from_token  # the limit was reached during the repair
        # The outcome: a response of the full length that passes END, within the bounds.
        assert result.finish_reason == "length" and result.text == " it"
        assert len(result.tokens) == new_tokens
        assert result.stats.generated_tokens == 7 <= new_tokens + 8
        assert_sound(judge, result)
        assert_agrees(
            result,
            reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=new_tokens),
        )


def test_eos_as_first_token(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(eos, 6.0), (t("x"), 5.0)])
    run = scripted_run(tiny_config, script)
    judge = judge_of(tiny_tokenizer, LiteralRule(id="x", literal="zzz"))
    # The scenario: the model's first choice after every prompt is the end of sequence.
    assert all(run.first_choice(t(prompt)) == eos for prompt in PROMPTS)
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=4, temperature=0.0
    )
    record(record_property, results, judge, eos_first=sum(r.stats.end_tokens for r in results))
    for result in results:
        assert result.finish_reason == "eos"
        assert result.tokens == () and result.text == ""
        assert result.stats.generated_tokens == result.stats.end_tokens == 1
        assert result.stats.discarded_tokens == 0 and result.events == ()


def test_rows_finish_at_different_times(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """Row A ends after one token, row B rolls back and then ends, row C runs to the limit; each
    row's result equals the row decoded alone (and the reference decoder's)."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    script.chain([t("A"), t("x"), eos])
    script.after(t("B"), [(t("q"), 6.0), (t("u"), 5.0)]).after(t("q"), [(t("q"), 6.0)])
    script.chain([t("u"), t("v"), t("w"), t("y"), eos])
    script.after(t("C"), [(t("m"), 6.0)]).after(t("m"), [(t("n"), 6.0)])
    script.after(t("n"), [(t("m"), 6.0)])
    run = scripted_run(tiny_config, script)
    judge = judge_of(tiny_tokenizer, LiteralRule(id="x", literal="qq"), checkpoint="token")
    kwargs = dict(judge=judge, max_new_tokens=10, temperature=0.0)
    results = generate_shielded(run.model, tiny_tokenizer, PROMPTS, **kwargs)  # type: ignore[arg-type]
    steps = [r.stats.generated_tokens for r in results]
    record(record_property, results, judge, distinct_finish_steps=len(set(steps)))
    # The scenario: the rows end at different steps, for different reasons, one after a rollback.
    assert steps == [2, 7, 10]
    assert [r.finish_reason for r in results] == ["eos", "eos", "length"]
    assert [r.stats.rollbacks for r in results] == [0, 1, 0]
    # The outcome: every row equals the same row decoded alone, and the reference decoder.
    for prompt, result in zip(PROMPTS, results, strict=True):
        (alone,) = generate_shielded(run.model, tiny_tokenizer, [prompt], **kwargs)  # type: ignore[arg-type]
        assert (alone.tokens, alone.finish_reason, alone.events) == (
            result.tokens,
            result.finish_reason,
            result.events,
        )
        assert without_wall(alone) == without_wall(result)
        assert_agrees(
            result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=10)
        )
        assert_sound(judge, result)


def test_same_seed_same_output(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """Sampled decoding with rollbacks: the same seeds give the same tokens and the same events."""
    run, judge = sampled_script(tiny_config, tiny_tokenizer)
    kwargs = dict(judge=judge, max_new_tokens=8, temperature=1.0)
    first = generate_shielded(run.model, tiny_tokenizer, PROMPTS, seed=[11, 12, 13], **kwargs)  # type: ignore[arg-type]
    second = generate_shielded(run.model, tiny_tokenizer, PROMPTS, seed=[11, 12, 13], **kwargs)  # type: ignore[arg-type]
    other = generate_shielded(run.model, tiny_tokenizer, PROMPTS, seed=[21, 22, 23], **kwargs)  # type: ignore[arg-type]
    record(record_property, first, judge, events=sum(len(r.events) for r in first))
    # The scenario: rows A and C rolled back (so there are events to compare; row B never does),
    # and the draws depend on the seed (so equal outputs are not the only possible outcome).
    assert [r.stats.rollbacks > 0 for r in first] == [True, False, True]
    assert first[0].events and first[2].events
    assert [r.tokens for r in other] != [r.tokens for r in first]
    # The outcome.
    assert [r.tokens for r in first] == [r.tokens for r in second]
    assert [r.events for r in first] == [r.events for r in second]
    assert [without_wall(r) for r in first] == [without_wall(r) for r in second]
    for result in first:
        assert_sound(judge, result)


def test_cache_too_small_is_a_clear_error(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of(tiny_tokenizer, LiteralRule(id="x", literal="zz"))
    with pytest.raises(BudgetError, match="cache slots"):
        generate_shielded(
            tiny_model, tiny_tokenizer, TEXT_PROMPTS, judge=judge, max_new_tokens=100, max_slots=64
        )


def test_empty_prompt_is_a_clear_error(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of(tiny_tokenizer, LiteralRule(id="x", literal="zz"))
    with pytest.raises(DecoderError, match="prompt"):
        generate_shielded(tiny_model, tiny_tokenizer, [""], judge=judge, max_new_tokens=4)


def test_unknown_strategy_is_a_clear_error(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of(tiny_tokenizer, LiteralRule(id="x", literal="zz"))
    with pytest.raises(DecoderError, match="strategy"):
        generate_shielded(
            tiny_model, tiny_tokenizer, TEXT_PROMPTS, judge=judge, strategy="greedy",
            max_new_tokens=4,
        )  # fmt: skip


def test_mask_strategy_reports_but_does_not_rewind(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """``mask`` removes the scripted forbidden continuation "e" (row A writes "hi", not "he"), and
    reports, without rewinding, the whole word that only the end of the text confirms (row B
    fills the response with " ok"): its documented limit."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    for prompt in ("A", "C"):
        script.after(t(prompt), [(t("h"), 6.0)])
    script.after(t("h"), [(t("e"), 6.0), (t("i"), 5.0)]).after(t("i"), [(eos, 6.0)])
    script.chain([t("B"), t(" "), t("o"), t("k")])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        LiteralRule(id="e", literal="e"),
        WordsRule(id="ok", words=("ok",), match=MatchOptions(whole_word=True)),
        refusal="No.",
    )
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, strategy="mask",
        max_new_tokens=3, temperature=0.0,
    )  # fmt: skip
    unshielded = [
        reference(run, tiny_tokenizer, p, judge=judge, max_new_tokens=3, strategy="none")
        for p in PROMPTS
    ]
    record(
        record_property,
        results,
        judge,
        unshielded_violations=sum(len(r.events) for r in unshielded),
    )
    # The scenario: unshielded, rows A and C write the forbidden "e" and row B the whole word.
    assert [r.text for r in unshielded] == ["he", " ok", "he"]
    assert [[e.rule for e in r.events] for r in unshielded] == [["e"], ["ok"], ["e"]]
    # The outcome: nothing rewound; "e" was masked; the END-confirmed word is reported.
    assert [r.stats.rollbacks for r in results] == [0, 0, 0]
    assert [r.text for r in results] == ["hi", " ok", "hi"]
    assert results[0].events == results[2].events == ()
    assert [(e.kind, e.rule) for e in results[1].events] == [("violation", "ok")]
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert b"e" not in response_bytes(judge, result.tokens)
        assert_agrees(
            result,
            reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=3, strategy="mask"),
        )
