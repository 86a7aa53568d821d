"""Scenarios of shielded decoding that a random model never produces, forced by scripted models:
a row stuck at a position where every token is banned, a whole word that only the end of the text
confirms, and ``reset`` against ``backtrack`` on the same failure.

Every test asserts that its scenario happened before it asserts the outcome, and compares the
device with the reference decoder driven by the same table.
"""

from __future__ import annotations

import functools

from decoders.config import ModelConfig
from decoders.shielded import generate_shielded
from decoders.tokenizer import Tokenizer
from shield.rules import LiteralRule, MatchOptions, MaxLengthRule, WordsRule
from tests.decoders.scenario_support import (
    PROMPTS,
    Record,
    assert_agrees,
    assert_sound,
    judge_of,
    record,
    reference,
    scripted_run,
    token,
)
from tests.decoders.scripted import Script


def test_stuck_row_falls_back_further_or_exhausts(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """After " x" every token fails: a byte makes the text longer than 2 bytes, and EOS confirms
    the whole word "x". With ``max_rollback_tokens = 1`` each failure is retried at position 2,
    banning the token that failed, until every token that may ever be sampled is banned there:
    the row is stuck (``Machine.stuck``), which fails the prefix. Row A has the budget to fall
    back to position 1; row B spent one token of it earlier (a forbidden "Q"), so it exhausts
    and stops at its last accepted state. Row C never meets the trap."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    script.after(t("A"), [(t(" "), 6.0)]).after(t(" "), [(t("x"), 6.0)])
    script.after(t("B"), [(t("Q"), 6.0), (t(" "), 5.0)])
    script.chain([t("C"), t("h"), t("i"), eos])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer,
        MaxLengthRule(id="len", max_bytes=2),
        WordsRule(id="x", words=("x",), match=MatchOptions(whole_word=True)),
        LiteralRule(id="Q", literal="Q"),
        checkpoint="token",
        max_rollback_tokens=1,
        max_retries=300,
        max_discarded_tokens=264,
        refusal="No",
    )
    sampleable = int((~judge.never(tiny_config.eos_token_ids)).sum())
    assert sampleable == 263  # 261 text tokens and the two EOS ids
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=8, temperature=0.0
    )
    counts = record(record_property, results, judge)
    row_a, row_b, row_c = results
    # The scenario: in rows A and B, one failure at position 2 per sampleable token (the EOS ids
    # fail END by the whole word, the text tokens the length, or the word too when they confirm
    # it), then the stuck position fails its prefix.
    for result in (row_a, row_b):
        at_two = [e for e in result.events if e.kind == "rollback" and e.to_token == 2]
        assert len(at_two) == sampleable and all(e.from_token == 3 for e in at_two)
        assert sorted({e.rule for e in at_two}) == ["len", "x"]
    stuck_a, stuck_b = row_a.events[-1], row_b.events[-1]
    assert (stuck_a.kind, stuck_a.rule, stuck_a.from_token, stuck_a.to_token) == (
        "rollback", "no-allowed-token", 2, 1,
    )  # fmt: skip
    assert (stuck_b.kind, stuck_b.rule) == ("exhausted", "no-allowed-token")
    assert "budget of 264 (already discarded 264)" in stuck_b.detail
    assert row_b.events[0].rule == "Q" and row_c.events == ()
    assert counts["stuck"] == 2
    # The outcome: A falls back to position 1 and ends there; B stops at " ", the longest
    # accepted prefix before the stuck token "x"; C is untouched.
    assert (row_a.text, row_a.finish_reason, row_a.stats.rollbacks) == (" ", "eos", sampleable + 1)
    assert (row_b.text, row_b.finish_reason) == (" ", "budget")
    assert row_b.stats.discarded_tokens == 264 + 1  # the budget, and the stuck prefix's "x"
    assert (row_c.text, row_c.finish_reason) == ("hi", "eos")
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert_sound(judge, result)
        assert_agrees(result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=8))


def test_whole_word_is_confirmed_by_the_end_of_text(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """ " ok" is not a violation until something confirms the word: EOS right after it is one,
    so the END check fails and the row rolls back (the failed continuation includes the EOS
    step). "wok" ends the same way but holds no whole word: no rollback."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    for prompt in ("A", "C"):
        script.after(t(prompt), [(t(" "), 6.0)])
    script.after(t(" "), [(t("o"), 6.0), (t("i"), 5.0)]).chain([t("i"), t("t"), eos])
    script.chain([t("B"), t("w"), t("o"), t("k"), eos])
    run = scripted_run(tiny_config, script)
    judge = judge_of(
        tiny_tokenizer, WordsRule(id="ok", words=("ok",), match=MatchOptions(whole_word=True))
    )
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=16, temperature=0.0
    )
    record(record_property, results, judge)
    # The scenario: rows A and C failed when EOS came after " ok" (3 tokens + the EOS step),
    # and not before; row B's "wok" passed END.
    for result in (results[0], results[2]):
        assert [(e.kind, e.rule, e.from_token, e.to_token) for e in result.events] == [
            ("rollback", "ok", 4, 1)
        ]
    assert results[1].events == () and results[1].text == "wok"
    # The outcome.
    assert [r.text for r in results] == [" it", "wok", " it"]
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert result.finish_reason == "eos"
        assert_sound(judge, result)
        assert_agrees(
            result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=16)
        )


def test_reset_rewinds_to_the_start_backtrack_to_the_checkpoint(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, record_property: Record
) -> None:
    """The same script under both strategies: "hi,yo bad". ``backtrack`` goes back to the word
    "bad" (position 6), bans "b" there and writes "fun"; ``reset`` goes back to position 0 every
    time, keeps no bans, so greedy decoding repeats itself until the budget is spent."""
    t = functools.partial(token, tiny_tokenizer)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(t("h"), 6.0)])
    script.chain([t(c) for c in "hi,yo "])
    script.after(t(" "), [(t("b"), 6.0), (t("f"), 5.0)])
    script.chain([t("b"), t("a"), t("d"), eos]).chain([t("f"), t("u"), t("n"), eos])
    run = scripted_run(tiny_config, script)
    judge = judge_of(tiny_tokenizer, LiteralRule(id="bad", literal="bad"), max_discarded_tokens=20)
    outcomes = {}
    for strategy in ("backtrack", "reset"):
        results = generate_shielded(
            run.model, tiny_tokenizer, PROMPTS, judge=judge, strategy=strategy,
            max_new_tokens=16, temperature=0.0,
        )  # fmt: skip
        outcomes[strategy] = results
        for prompt, result in zip(PROMPTS, results, strict=True):
            assert_sound(judge, result)
            assert_agrees(
                result,
                reference(
                    run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=16, strategy=strategy
                ),
            )
    backtrack, reset = outcomes["backtrack"], outcomes["reset"]
    record(record_property, [*backtrack, *reset], judge)
    for back, again in zip(backtrack, reset, strict=True):
        # The scenario: both rolled back; backtrack to the checkpoint, reset to 0 each time.
        assert [(e.kind, e.from_token, e.to_token) for e in back.events] == [("rollback", 9, 6)]
        rollbacks = [e for e in again.events if e.kind == "rollback"]
        assert [(e.from_token, e.to_token) for e in rollbacks] == [(9, 0), (9, 0)]
        assert again.events[-1].kind == "exhausted"
        # The outcome: backtrack repairs the word; reset stops at its last accepted state.
        assert (back.text, back.finish_reason) == ("hi,yo fun", "eos")
        assert (again.text, again.finish_reason) == ("hi,yo ", "budget")
