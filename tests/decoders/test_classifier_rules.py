"""Classifier rules in the JAX decoder, one test per scope (``sentence``, ``window`` with
``window_tokens = 2``, ``response``), with a deterministic scorer defined here.

For each scope a scripted model drives rows into unsafe windows (closed by a token, or still open
when the text ends by EOS or by length) and one row past none. Each test asserts that an unsafe
window was judged (a rollback event of the rule), then the soundness property, recomputed from
the returned tokens alone (every window of the returned text scores below the threshold), and
that the device's result equals the reference decoder's on the same script.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from decoders.config import ModelConfig
from decoders.shielded import generate_shielded
from decoders.tokenizer import Tokenizer
from shield.rules import ClassifierRule
from tests.decoders.scenario_support import (
    PROMPTS,
    Record,
    assert_agrees,
    assert_sound,
    classifier_windows,
    judge_of,
    record,
    reference,
    scripted_run,
    token,
)
from tests.decoders.scripted import Script

MAX_NEW_TOKENS = 8
WINDOW_TOKENS = 2


def mentions_z(texts: list[str]) -> list[float]:
    """The scorer ("tests.decoders.test_classifier_rules:mentions_z"): 1 when a text has a "z"
    or a "Z", else 0."""
    return [1.0 if "z" in text.lower() else 0.0 for text in texts]


def sentence_script(t: Callable[[str], int], eos: int, script: Script) -> Script:
    """A: "aq!" then "z!" (closed unsafe sentence), repaired to "aq!b."; B: "yZ" then EOS (open
    unsafe sentence at the end), repaired to "y" (the rewind keeps "y", scored safe, and bans "Z");
    C: "c." (safe). A's unsafe sentence closes on a step where no other row stops the device, so
    the overlapped path decodes past it before its verdict lands."""
    script.chain([t("A"), t("a"), t("q"), t("!")])
    script.after(t("!"), [(t("z"), 6.0), (t("b"), 5.0)]).chain([t("z"), t("!")])
    script.chain([t("b"), t("."), eos])
    script.after(t("B"), [(t("y"), 6.0), (t("w"), 5.0)]).chain([t("y"), t("Z"), eos])
    script.after(t("w"), [(eos, 6.0)])
    return script.chain([t("C"), t("c"), t(".")])


def window_script(t: Callable[[str], int], eos: int, script: Script) -> Script:
    """A: "ab" then "zd" (closed unsafe window), repaired to "cd", then "Z" and EOS (open unsafe
    window at the end), repaired to "abcd"; B: "mnmnmnmn" to the length limit (safe); C: "yZ"
    (unsafe first window), repaired to "y" (the safe "y" is kept, "Z" banned)."""
    script.chain([t("A"), t("a"), t("b")])
    script.after(t("b"), [(t("z"), 6.0), (t("c"), 5.0)])
    script.chain([t("z"), t("d")]).chain([t("c"), t("d")])
    script.after(t("d"), [(t("Z"), 6.0), (eos, 5.0)]).after(t("Z"), [(eos, 6.0)])
    script.chain([t("B"), t("m"), t("n"), t("m")])
    script.after(t("C"), [(t("y"), 6.0), (t("x"), 5.0)]).chain([t("y"), t("Z")])
    return script.after(t("x"), [(eos, 6.0)])


def response_script(t: Callable[[str], int], eos: int, script: Script) -> Script:
    """A: "azb" then EOS (unsafe response), repaired to "a" (the rewind keeps "a", scored safe,
    and bans "z"); B: "yZmnmnmn" to the length limit (unsafe response judged at the limit),
    repaired to "y"; C: "cd" (safe)."""
    script.after(t("A"), [(t("a"), 6.0), (t("c"), 5.0)])
    script.chain([t("a"), t("z"), t("b"), eos]).chain([t("c"), t("d"), eos])
    script.after(t("B"), [(t("y"), 6.0), (t("x"), 5.0)]).chain([t("y"), t("Z"), t("m")])
    script.chain([t("x"), t("m"), t("n"), t("m")])
    return script.chain([t("C"), t("c")])


SCOPES: dict[str, tuple[Callable[[Callable[[str], int], int, Script], Script], list[str]]] = {
    # scope: (script, the texts the rows return). An unsafe window is rolled back from the piece
    # that made it unsafe (shield.machine.Machine.narrow), so the safe text before it stays.
    "sentence": (sentence_script, ["aq!b.", "y", "c."]),
    "window": (window_script, ["abcd", "mnmnmnmn", "y"]),
    "response": (response_script, ["a", "y", "cd"]),
}


@pytest.mark.parametrize("scope", list(SCOPES))
def test_classifier_scope_on_the_device(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, scope: str, record_property: Record
) -> None:
    t = functools.partial(token, tiny_tokenizer)
    build, texts = SCOPES[scope]
    script = build(t, tiny_config.eos_token_ids[0], Script(tiny_config.vocab_size))
    run = scripted_run(tiny_config, script)
    rule = ClassifierRule(
        id=f"z-{scope}",
        scorer="tests.decoders.test_classifier_rules:mentions_z",
        threshold=0.5,
        scope=scope,  # type: ignore[arg-type]
        window_tokens=WINDOW_TOKENS if scope == "window" else None,
    )
    judge = judge_of(tiny_tokenizer, rule, checkpoint="token")
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge,
        max_new_tokens=MAX_NEW_TOKENS, temperature=0.0,
    )  # fmt: skip
    counts = record(record_property, results, judge)
    # The scenario: unsafe windows were judged and rolled back in two rows, never in the third.
    judged = [[e for e in r.events if e.rule == rule.id and e.kind == "rollback"] for r in results]
    assert [len(events) > 0 for events in judged] == (
        [True, False, True] if scope == "window" else [True, True, False]
    )
    assert counts["classifier_events"] == counts["rollbacks"] > 0
    # The outcome: soundness (every window of every returned text is safe, recomputed here),
    # the repaired texts, and agreement with the reference decoder.
    assert [r.text for r in results] == texts
    for prompt, result in zip(PROMPTS, results, strict=True):
        windows = classifier_windows(rule, judge.token_bytes_of(result.tokens))
        assert windows and "".join(windows) == result.text
        assert all(score == 0.0 for score in mentions_z(windows))
        assert_sound(judge, result)
        assert_agrees(
            result,
            reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=MAX_NEW_TOKENS),
        )


@pytest.mark.parametrize("scope", ["sentence", "window", "response"])
def test_unsafe_window_closed_by_the_last_token_is_rolled_back(
    tiny_config: ModelConfig, tiny_tokenizer: Tokenizer, scope: str, record_property: Record
) -> None:
    """Regression: when the response became full on the token that closed an unsafe window, the
    host read END after the rewind and the device returned the unsafe text. The response is full
    (``max_new_tokens = 2``) on the very token that closes an unsafe
    window ("z." is a sentence and a window of 2 tokens; for ``response`` the end judges it):
    the window must be judged and rolled back like any other, and "c." returned."""
    t = functools.partial(token, tiny_tokenizer)
    script = Script(tiny_config.vocab_size)
    for prompt in PROMPTS:
        script.after(t(prompt), [(t("z"), 6.0), (t("c"), 5.0)])
    script.after(t("z"), [(t("."), 6.0)]).after(t("c"), [(t("."), 6.0)])
    run = scripted_run(tiny_config, script)
    rule = ClassifierRule(
        id=f"z-{scope}",
        scorer="tests.decoders.test_classifier_rules:mentions_z",
        threshold=0.5,
        scope=scope,  # type: ignore[arg-type]
        window_tokens=WINDOW_TOKENS if scope == "window" else None,
    )
    judge = judge_of(tiny_tokenizer, rule, checkpoint="token")
    results = generate_shielded(
        run.model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=2, temperature=0.0
    )
    record(record_property, results, judge)
    for prompt, result in zip(PROMPTS, results, strict=True):
        # The scenario: "z." filled the response and its window was judged unsafe.
        assert [(e.kind, e.rule, e.from_token, e.to_token) for e in result.events] == [
            ("rollback", rule.id, 2, 0)
        ]
        # The outcome: the window was rolled back and repaired.
        assert_sound(judge, result)
        assert (result.text, result.finish_reason) == ("c.", "length")
        assert_agrees(result, reference(run, tiny_tokenizer, prompt, judge=judge, max_new_tokens=2))
