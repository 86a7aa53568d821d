"""Shielded decoding on the device against the reference decoder: on a tiny random model (rules
taken from its own output, so that it violates them), and on scripted models that force each
scenario (rollbacks into a prefill, retries at one position, refusals, streaming across
rollbacks, rows that roll back next to rows that do not).

Every test asserts that its scenario happened before it asserts the outcome.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import pytest

from decoders.config import DecodeConfig, ModelConfig
from decoders.host_loop import Decision, EventHost
from decoders.loading import Model
from decoders.plain import generate_plain
from decoders.shielded import generate_shielded
from decoders.state import init_state
from decoders.step import decode_logits, prefill
from decoders.tokenizer import Tokenizer
from shield.lifting import MonitorState
from shield.reference import ReferenceSettings, reference_generate
from shield.result import GenerationResult
from shield.rules import ClassifierRule, LiteralRule, MatchOptions, WordsRule
from shield.sampling import SamplingConfig
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

#: Prompts of the tests on the tiny random model.
TEXT_PROMPTS = ["the cat sat", "hello there, my old friend"]
#: Width of the fresh prefill of :func:`fresh_logits` (every prefix fits: one compilation).
FRESH_WIDTH = 64


def mentions_z(texts: list[str]) -> list[float]:
    """A scorer ("tests.decoders.test_shielded:mentions_z"): 1 for a text with a "z" or "Z"."""
    return [1.0 if "z" in text.lower() else 0.0 for text in texts]


def fresh_logits(model: Model):  # type: ignore[no-untyped-def]
    """Next-token logits by a fresh prefill of the whole prefix (no cache reuse at all)."""

    def next_logits(prefix):  # type: ignore[no-untyped-def]
        tokens = np.zeros((1, FRESH_WIDTH), np.int32)
        tokens[0, : len(prefix)] = prefix
        state = init_state(model.config, DecodeConfig(batch_size=1, max_slots=128))
        state = prefill(
            model.params,
            model.config,
            state,
            jnp.asarray(tokens),
            jnp.asarray([len(prefix)], jnp.int32),
            window=128,
        )
        logits, _ = decode_logits(model.params, model.config, state, window=128)
        return np.asarray(logits[0])

    return next_logits


def plain_greedy(model: Model, tokenizer: Tokenizer, max_new: int) -> list[GenerationResult]:
    return generate_plain(model, tokenizer, TEXT_PROMPTS, max_new_tokens=max_new, temperature=0.0)


def forbidden_from_plain(model: Model, tokenizer: Tokenizer, max_new: int) -> list[LiteralRule]:
    """Rules that plain greedy decoding of TEXT_PROMPTS certainly violates (from its own output)."""
    rules = []
    for index, result in enumerate(plain_greedy(model, tokenizer, max_new)):
        data = b"".join(tokenizer.token_bytes[t] for t in result.tokens)
        middle = data[len(data) // 3 : len(data) // 3 + 2]
        if len(middle) == 2 and middle.isascii():
            rules.append(LiteralRule(id=f"plain-{index}", literal=middle.decode()))
    assert rules, "the tiny model produced no ASCII text to forbid"
    return rules


@pytest.mark.parametrize("strategy", ["backtrack", "reset", "mask"])
@pytest.mark.parametrize("checkpoint", ["token", "word"])
def test_device_decoder_equals_reference_under_greedy(
    tiny_model: Model,
    tiny_tokenizer: Tokenizer,
    strategy: str,
    checkpoint: str,
    record_property: Record,
) -> None:
    max_new = 12
    rules = forbidden_from_plain(tiny_model, tiny_tokenizer, max_new)
    judge = judge_of(
        tiny_tokenizer,
        *rules,
        checkpoint=checkpoint,
        max_rollback_tokens=6,
        max_retries=2,
        max_discarded_tokens=20,
    )
    device = generate_shielded(
        tiny_model,
        tiny_tokenizer,
        TEXT_PROMPTS,
        judge=judge,
        strategy=strategy,
        max_new_tokens=max_new,
        temperature=0.0,
    )
    plain = plain_greedy(tiny_model, tiny_tokenizer, max_new)
    changed = sum(d.tokens != p.tokens for d, p in zip(device, plain, strict=True))
    counts = record(record_property, device, judge, rows_changed_from_plain=changed)
    # The scenario: the shield acted. Rewinding strategies rolled back; `mask` changed the text
    # of every row whose own plain output gave a rule.
    if strategy == "mask":
        ruled = {int(rule.id.removeprefix("plain-")) for rule in rules}
        assert all(device[row].tokens != plain[row].tokens for row in ruled)
    else:
        assert counts["rollbacks"] >= 1
    settings = ReferenceSettings(
        strategy=strategy, max_new_tokens=max_new, sampling=SamplingConfig(temperature=0.0)
    )
    for prompt, result in zip(TEXT_PROMPTS, device, strict=True):
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
        assert without_wall(result) == without_wall(expected)
        if strategy != "mask":
            assert_sound(judge, result)


def test_backtrack_repairs_what_plain_decoding_violates(
    tiny_model: Model, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    rules = forbidden_from_plain(tiny_model, tiny_tokenizer, 12)
    judge = judge_of(tiny_tokenizer, *rules, checkpoint="token", max_discarded_tokens=40)
    results = generate_shielded(
        tiny_model, tiny_tokenizer, TEXT_PROMPTS, judge=judge, max_new_tokens=12, temperature=0.0
    )
    assert record(record_property, results, judge)["rollbacks"] >= 1  # the scenario
    for result in results:
        assert_sound(judge, result)
        for event in result.events:
            if event.kind == "rollback":
                assert event.from_token - event.to_token <= judge.policy.max_rollback_tokens


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_transparency(
    tiny_model: Model, tiny_tokenizer: Tokenizer, temperature: float, record_property: Record
) -> None:
    """A spec that plain decoding never violates changes nothing: same tokens, no rollbacks."""
    judge = judge_of(tiny_tokenizer, WordsRule(id="never", words=("zzzzqqqq",)))
    kwargs = dict(max_new_tokens=16, temperature=temperature, seed=[3, 4])
    plain = generate_plain(tiny_model, tiny_tokenizer, TEXT_PROMPTS, **kwargs)  # type: ignore[arg-type]
    # The scenario: plain decoding's texts pass the spec (and are not empty).
    for result in plain:
        assert result.tokens
        assert (
            judge.shield.first_violation(response_bytes(judge, result.tokens), final=True) is None
        )
    shielded = generate_shielded(tiny_model, tiny_tokenizer, TEXT_PROMPTS, judge=judge, **kwargs)  # type: ignore[arg-type]
    record(record_property, shielded, judge, plain_tokens=sum(len(r.tokens) for r in plain))
    for p, s in zip(plain, shielded, strict=True):
        assert s.tokens == p.tokens
        assert s.stats.rollbacks == 0
        assert s.finish_reason == p.finish_reason


def test_rows_are_independent(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """A row's rollbacks never affect another row: batched results equal single-row results,
    under sampling, with rows that roll back (A, C) next to a row that does not (B)."""
    run, judge = sampled_script(tiny_config, tiny_tokenizer)
    kwargs = dict(judge=judge, max_new_tokens=8, temperature=1.0)
    seeds = [5, 6, 7]
    together = generate_shielded(run.model, tiny_tokenizer, PROMPTS, seed=seeds, **kwargs)  # type: ignore[arg-type]
    record(
        record_property,
        together,
        judge,
        rows_without_rollback=sum(r.stats.rollbacks == 0 for r in together),
    )
    # The scenario: rows A and C rolled back, row B did not.
    assert [r.stats.rollbacks > 0 for r in together] == [True, False, True]
    for prompt, seed, result in zip(PROMPTS, seeds, together, strict=True):
        (alone,) = generate_shielded(run.model, tiny_tokenizer, [prompt], seed=seed, **kwargs)  # type: ignore[arg-type]
        assert alone.tokens == result.tokens
        assert alone.events == result.events
        assert without_wall(alone) == without_wall(result)
        assert_sound(judge, result)


def test_prefill_is_judged_and_rolled_back(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """A forced prefill "so bad" completes a forbidden word: the rollback goes into the prefill
    (to the word start), and the model regenerates from there."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    script.after(t(" "), [(t("b"), 6.0), (t("g"), 5.0)])
    script.chain([t("g"), t("r"), t("e"), t("a"), t("t"), eos])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        LiteralRule(id="bad", literal="bad"),
        checkpoint="word",
        max_discarded_tokens=30,
    )
    forced = len(tiny_tokenizer.encode("so bad", add_bos=False))
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge,
        max_new_tokens=8, temperature=0.0, prefill="so bad",
    )  # fmt: skip
    record(
        record_property,
        results,
        judge,
        rollbacks_into_the_prefill=sum(
            e.kind == "rollback" and e.to_token < forced for r in results for e in r.events
        ),
    )
    for prompt, result in zip(PROMPTS, results, strict=True):
        # The scenario: the prefill's last token completed "bad"; the row went back inside it.
        first = result.events[0]
        assert (first.kind, first.rule, first.from_token) == ("rollback", "bad", forced)
        assert first.to_token == 3 < forced  # "so |bad": the start of the forbidden word
        # The outcome: the kept prefill, then the model's repair.
        assert result.text == "so great" and result.finish_reason == "eos"
        assert b"bad" not in response_bytes(judge, result.tokens)
        stats = result.stats
        assert stats.generated_tokens + forced == (
            stats.kept_tokens + stats.discarded_tokens + stats.end_tokens
        )
        assert_sound(judge, result)
        assert_agrees(
            result,
            reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=8, prefill="so bad"),
        )


def test_refusal_when_budget_is_spent(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """ "ba" is rolled back (2 tokens); the repair writes "mad", whose rollback (3 more) would
    exceed the budget of 4: the row answers with the spec's refusal."""
    t = functools.partial(token, tiny_tokenizer)
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(t("b"), 6.0), (t("m"), 5.0)])
    script.after(t("b"), [(t("a"), 6.0)]).after(t("m"), [(t("a"), 6.0)])
    script.after(t("a"), [(t("d"), 6.0)])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        LiteralRule(id="ba", literal="ba"),
        LiteralRule(id="mad", literal="mad"),
        max_discarded_tokens=4,
        on_exhausted="refuse",
        refusal="Sorry.",
    )
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=8, temperature=0.0
    )
    counts = record(record_property, results, judge)
    assert counts["refused"] == 3
    for prompt, result in zip(PROMPTS, results, strict=True):
        # The scenario: a rollback, then exhaustion of the budget.
        assert [(e.kind, e.rule) for e in result.events] == [
            ("rollback", "ba"),
            ("exhausted", "mad"),
        ]
        assert "budget of 4" in result.events[-1].detail
        # The outcome: the refusal, and none of the produced tokens.
        assert result.finish_reason == "refused" and result.text == "Sorry."
        assert list(result.tokens) == tiny_tokenizer.encode("Sorry.", add_bos=False)
        stats = result.stats
        assert stats.generated_tokens == stats.discarded_tokens + stats.end_tokens == 5
        assert_agrees(result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=8))


def test_stream_releases_only_final_text(
    tiny_config: ModelConfig,
    tiny_tokenizer: Tokenizer,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Record,
) -> None:
    """Streamed text is never taken back: at every rewind, what a row has streamed is a prefix of
    what the rewind keeps; the pieces concatenate to the final text. Row A streams text and then
    rolls back (8 tokens in), row B never rolls back, row C rolls back before streaming."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    script.chain([t(c) for c in "Adefghijk"])
    script.after(t("k"), [(t("q"), 6.0), (t("l"), 5.0)])
    script.chain([*(t(c) for c in "lmnop"), eos])
    script.chain([*(t(c) for c in "BRSTUVWXYZ"), eos])
    script.after(t("C"), [(t("q"), 6.0), (t("1"), 5.0)])
    script.chain([*(t(c) for c in "1234567890"), eos])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        LiteralRule(id="q", literal="q"),
        checkpoint="token",
        max_discarded_tokens=4,
    )
    log: list[tuple[str, int, str]] = []  # ("piece", row, text) or ("rewind", row, kept text)
    answer = EventHost.on_event

    def logged(
        host: EventHost,
        row: int,
        event: int,
        kept: Sequence[int],
        rejected: int,
        states: Sequence[MonitorState],
    ) -> Decision:
        decision = answer(host, row, event, kept, rejected, states)
        if decision.kind == "rewind":
            log.append(("rewind", row, judge.detokenize(list(kept)[: decision.target])))
        return decision

    monkeypatch.setattr(EventHost, "on_event", logged)
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge,
        max_new_tokens=16, temperature=0.0, chunk=2,
        stream=lambda row, text: log.append(("piece", row, text)),
    )  # fmt: skip
    rewinds_after_release = []
    for row, result in enumerate(results):
        streamed, late = "", 0
        for kind, which, text in log:
            if which != row:
                continue
            if kind == "piece":
                assert text, "an empty piece was streamed"
                streamed += text
            else:
                assert text.startswith(streamed), "a rewind took back streamed text"
                late += bool(streamed)
        rewinds_after_release.append(late)
        assert streamed == result.text  # the pieces concatenate to the final text
    pieces = [
        sum(1 for kind, which, _ in log if kind == "piece" and which == row) for row in range(3)
    ]
    record(
        record_property,
        results,
        judge,
        rewinds_after_release=sum(rewinds_after_release),
        pieces=sum(pieces),
    )
    # The scenario: rows A and C rolled back; row A after some of its text was streamed; text
    # was released before the end (more than one piece per row).
    assert [r.stats.rollbacks for r in results] == [1, 0, 1]
    assert rewinds_after_release[0] == 1
    assert all(count > 1 for count in pieces)
    # The outcome.
    assert [r.text for r in results] == ["defghijklmnop", "RSTUVWXYZ", "1234567890"]
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert_agrees(
            result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=16)
        )


def test_greedy_retry_differs(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """Progress under greedy decoding: the first and second continuations from position 0 both
    fail ("ex", then "fyx", found after the repaired segment), so the row retries twice there,
    each time with a new first token; the third failure ("gyxw") finds position 0 out of
    retries (``max_retries = 2``) and falls back to the latest position that has some."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(t("e"), 6.0), (t("f"), 5.0), (t("g"), 4.0)])
    script.after(t("e"), [(t("x"), 6.0)]).after(t("f"), [(t("y"), 6.0)])
    script.after(t("g"), [(t("y"), 6.0)]).after(t("y"), [(t("x"), 6.0)])
    script.after(t("x"), [(t("w"), 6.0), (eos, 5.0)])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        LiteralRule(id="ex", literal="ex"),
        LiteralRule(id="fyx", literal="fyx"),
        LiteralRule(id="gyxw", literal="gyxw"),
        checkpoint="token",
        max_retries=2,
        refusal="No.",
    )
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=8, temperature=0.0
    )
    record(
        record_property,
        results,
        judge,
        retries_at_position_0=sum(e.to_token == 0 for r in results for e in r.events),
    )
    for prompt, result in zip(PROMPTS, results, strict=True):
        # The scenario: two retries at position 0, then a fall-back to position 3.
        assert [(e.kind, e.rule, e.from_token, e.to_token) for e in result.events] == [
            ("rollback", "ex", 2, 0),
            ("rollback", "fyx", 3, 0),
            ("rollback", "gyxw", 4, 3),
        ]
        # The outcome: no failed continuation was repeated; the text passes.
        assert result.text == "gyx" and result.finish_reason == "eos"
        assert_sound(judge, result)
        assert_agrees(result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=8))


@pytest.mark.parametrize("checkpoint", ["token", "word", "sentence"])
def test_returned_text_is_safe(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, checkpoint: str, record_property: Record
) -> None:
    """Soundness on the device: each row is driven into a different violation (a literal after a
    sentence, a whole word at the end of the text, an unsafe sentence for a classifier), rolls
    back, and returns a text in which no rule fires and every classifier window is safe."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    script.chain([t(c) for c in "AHi."])
    script.after(t("."), [(t(" "), 6.0), (t("\n"), 5.0)])
    script.after(t(" "), [(t("b"), 6.0), (t("s"), 5.0)]).after(t("\n"), [(t("s"), 6.0)])
    script.after(t("b"), [(t("a"), 6.0)]).after(t("s"), [(t("a"), 6.0)])
    script.after(t("a"), [(t("d"), 6.0)]).after(t("d"), [(eos, 6.0)])
    script.after(t("B"), [(t("o"), 6.0), (t("w"), 5.0)]).chain([t("w"), t("o"), t("k"), eos])
    script.after(t("C"), [(t("y"), 6.0), (t("n"), 5.0)]).chain([t("y"), t("z"), t("!"), eos])
    script.chain([t("n"), t("e"), t("!")])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        LiteralRule(id="bad", literal="bad"),
        WordsRule(id="ok", words=("ok",), match=MatchOptions(whole_word=True)),
        ClassifierRule(id="z", scorer="tests.decoders.test_shielded:mentions_z", threshold=0.5),
        checkpoint=checkpoint,
    )
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=12, temperature=0.0
    )
    record(record_property, results, judge)
    # The scenario: each row rolled back for its own rule.
    assert [sorted({e.rule for e in r.events}) for r in results] == [["bad"], ["ok"], ["z"]]
    assert all(r.stats.rollbacks > 0 for r in results)
    # The outcome.
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert result.finish_reason == "eos"
        assert_sound(judge, result)
        assert_agrees(
            result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=12)
        )
