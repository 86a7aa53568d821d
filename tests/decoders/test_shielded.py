"""Shielded decoding on the device against the reference decoder, on a tiny random model."""

from __future__ import annotations

from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

import shield
from decoders.config import DecodeConfig
from decoders.loading import Model
from decoders.plain import generate_plain
from decoders.shielded import generate_shielded, judge_for
from decoders.state import init_state
from decoders.step import decode_logits, prefill
from decoders.tokenizer import Tokenizer
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.reference import ReferenceSettings, reference_generate
from shield.rules import LiteralRule, WordsRule
from shield.sampling import SamplingConfig

PROMPTS = ["the cat sat", "hello there, my old friend"]


def fresh_logits(model: Model):  # type: ignore[no-untyped-def]
    """Next-token logits by a fresh prefill of the whole prefix (no cache reuse at all)."""

    def next_logits(prefix):  # type: ignore[no-untyped-def]
        tokens = jnp.asarray([list(prefix)], jnp.int32)
        state = init_state(model.config, DecodeConfig(batch_size=1, max_slots=128))
        state = prefill(
            model.params,
            model.config,
            state,
            tokens,
            jnp.asarray([len(prefix)], jnp.int32),
            window=128,
        )
        logits, _ = decode_logits(model.params, model.config, state, window=128)
        return np.asarray(logits[0])

    return next_logits


def judge_of(rules, tokenizer: Tokenizer, **policy) -> Judge:  # type: ignore[no-untyped-def]
    compiled = shield.compile(
        SimpleNamespace(name="t", rules=tuple(rules), policy=BacktrackPolicy(**policy))
    )
    return judge_for(compiled, tokenizer)


def forbidden_from_plain(model: Model, tokenizer: Tokenizer, max_new: int) -> list[LiteralRule]:
    """Rules that plain greedy decoding of PROMPTS certainly violates (taken from its own output)."""
    plain = generate_plain(model, tokenizer, PROMPTS, max_new_tokens=max_new, temperature=0.0)
    rules = []
    for index, result in enumerate(plain):
        data = b"".join(tokenizer.token_bytes[t] for t in result.tokens)
        middle = data[len(data) // 3 : len(data) // 3 + 2]
        if len(middle) == 2 and middle.isascii():
            rules.append(LiteralRule(id=f"plain-{index}", literal=middle.decode()))
    assert rules, "the tiny model produced no ASCII text to forbid"
    return rules


@pytest.mark.parametrize("strategy", ["backtrack", "reset", "mask"])
@pytest.mark.parametrize("checkpoint", ["token", "word"])
def test_device_decoder_equals_reference_under_greedy(
    tiny_model: Model, tiny_tokenizer: Tokenizer, strategy: str, checkpoint: str
) -> None:
    max_new = 12
    rules = forbidden_from_plain(tiny_model, tiny_tokenizer, max_new)
    judge = judge_of(
        rules,
        tiny_tokenizer,
        checkpoint=checkpoint,
        max_rollback_tokens=6,
        max_retries=2,
        max_discarded_tokens=20,
    )
    device = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        PROMPTS,
        judge=judge,
        strategy=strategy,
        max_new_tokens=max_new,
        temperature=0.0,
    )
    settings = ReferenceSettings(
        strategy=strategy, max_new_tokens=max_new, sampling=SamplingConfig(temperature=0.0)
    )
    for prompt, result in zip(PROMPTS, device, strict=True):
        expected = reference_generate(
            fresh_logits(tiny_model),
            tiny_tokenizer.encode(prompt),
            judge=judge,
            eos_id=tiny_model.config.eos_token_ids,  # type: ignore[arg-type]
            settings=settings,
            encode=lambda text: tiny_tokenizer.encode(text, add_bos=False),
        )
        assert result.tokens == expected.tokens
        assert result.finish_reason == expected.finish_reason
        assert result.events == expected.events
        assert result.stats.generated_tokens == expected.stats.generated_tokens
        assert result.stats.discarded_tokens == expected.stats.discarded_tokens
        if strategy != "mask":
            data = b"".join(tiny_tokenizer.token_bytes[t] for t in result.tokens)
            assert (
                judge.shield.first_violation(data, final=True) is None
                or result.finish_reason == "refused"
            )


def test_backtrack_repairs_what_plain_decoding_violates(
    tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    rules = forbidden_from_plain(tiny_model, tiny_tokenizer, 12)
    judge = judge_of(rules, tiny_tokenizer, checkpoint="token", max_discarded_tokens=40)
    results = generate_shielded(
        tiny_model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=12, temperature=0.0
    )
    assert sum(r.stats.rollbacks for r in results) >= 1
    for result in results:
        data = b"".join(tiny_tokenizer.token_bytes[t] for t in result.tokens)
        assert judge.shield.first_violation(data, final=True) is None
        for event in result.events:
            if event.kind == "rollback":
                assert event.from_token - event.to_token <= judge.policy.max_rollback_tokens


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_transparency(tiny_model: Model, tiny_tokenizer: Tokenizer, temperature: float) -> None:
    """A spec that plain decoding never violates changes nothing: same tokens, no rollbacks."""
    judge = judge_of([WordsRule(id="never", words=("zzzzqqqq",))], tiny_tokenizer)
    kwargs = dict(max_new_tokens=16, temperature=temperature, seed=[3, 4])
    plain = generate_plain(tiny_model, tiny_tokenizer, PROMPTS, **kwargs)  # type: ignore[arg-type]
    shielded = generate_shielded(tiny_model, tiny_tokenizer, PROMPTS, judge=judge, **kwargs)  # type: ignore[arg-type]
    for p, s in zip(plain, shielded, strict=True):
        assert s.tokens == p.tokens
        assert s.stats.rollbacks == 0
        assert s.finish_reason == p.finish_reason


def test_rows_are_independent(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    """A row's rollbacks never affect another row: batched results equal single-row results."""
    rules = forbidden_from_plain(tiny_model, tiny_tokenizer, 12)
    judge = judge_of(rules, tiny_tokenizer, checkpoint="token")
    together = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        PROMPTS,
        judge=judge,
        max_new_tokens=12,
        temperature=1.0,
        seed=[5, 6],
    )
    alone = [
        generate_shielded(
            tiny_model, tiny_tokenizer, [p], judge=judge, max_new_tokens=12, temperature=1.0, seed=s
        )[0]
        for p, s in zip(PROMPTS, [5, 6], strict=True)
    ]
    for a, b in zip(together, alone, strict=True):
        assert a.tokens == b.tokens
        assert a.events == b.events


def test_prefill_is_judged_and_rolled_back(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of(
        [LiteralRule(id="bad", literal="bad")],
        tiny_tokenizer,
        checkpoint="word",
        max_discarded_tokens=30,
    )
    results = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        PROMPTS,
        judge=judge,
        max_new_tokens=8,
        temperature=0.0,
        prefill="so bad",
    )
    for result in results:
        assert b"bad" not in b"".join(tiny_tokenizer.token_bytes[t] for t in result.tokens)
        assert (
            result.events and result.events[0].kind == "rollback" and result.events[0].rule == "bad"
        )
        assert result.text.startswith("so")


def test_refusal_when_budget_is_spent(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    judge = judge_of(
        [LiteralRule(id="bad", literal="bad")],
        tiny_tokenizer,
        max_discarded_tokens=1,
        on_exhausted="refuse",
        refusal="Sorry.",
    )
    results = generate_shielded(
        tiny_model, tiny_tokenizer, PROMPTS[:1], judge=judge, max_new_tokens=8, prefill="so bad"
    )
    assert results[0].finish_reason == "refused"
    assert results[0].text == "Sorry."


def test_stream_releases_only_final_text(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    rules = forbidden_from_plain(tiny_model, tiny_tokenizer, 16)
    judge = judge_of(rules, tiny_tokenizer, checkpoint="token", max_discarded_tokens=6)
    pieces: dict[int, list[str]] = {0: [], 1: []}
    results = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        PROMPTS,
        judge=judge,
        max_new_tokens=16,
        temperature=1.0,
        seed=[1, 2],
        stream=lambda row, text: pieces[row].append(text),
        chunk=2,
    )
    for row, result in enumerate(results):
        assert "".join(pieces[row]) == result.text
    assert any(len(p) > 1 for p in pieces.values()), "text must be released before the end"
