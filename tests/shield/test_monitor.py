"""The runtime: exact match starts, stickiness, segmentation independence, scan, refusal."""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shield
from shield.policy import BacktrackPolicy
from shield.rules import AfterRule, AtMostRule, LiteralRule, MaxLengthRule, RegexRule, WordsRule
from tests.shield.helpers import Spec, python_pattern, regex_shield

REGEXES = ["ab+c", "a.b", "(ab|b)+a", r"x\d{2}", "ba*"]


def _segments(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.data())
@settings(max_examples=60)
def test_step_start_is_leftmost_start_of_detected_match(data: st.DataObject) -> None:
    pattern = data.draw(st.sampled_from(REGEXES))
    text = data.draw(st.text(alphabet="abcx01", max_size=14))
    guard = regex_shield(pattern)
    found = guard.first_violation(text.encode(), final=True)
    py = python_pattern(pattern)
    ends = [
        e for i in range(len(text) + 1) for e in range(i, len(text) + 1) if py.fullmatch(text, i, e)
    ]
    if not ends:
        assert found is None
        return
    assert found is not None
    first_end = min(ends)
    starts = [i for i in range(first_end + 1) if py.fullmatch(text, i, first_end)]
    assert (found.start, found.end) == (min(starts), first_end)


@given(st.data())
@settings(max_examples=40)
def test_segmentation_does_not_change_the_verdict(data: st.DataObject) -> None:
    guard = regex_shield(data.draw(st.sampled_from(REGEXES)))
    raw = data.draw(st.text(alphabet="abcx01", max_size=14)).encode()
    state = guard.init()
    for piece in _segments(data.draw, raw):
        state, _ = guard.step(state, piece)
    _, verdict = guard.finish(state)
    whole = guard.first_violation(raw, final=True)
    assert verdict.ok == (whole is None)
    if whole is not None:
        assert (verdict.rule_id, verdict.start, verdict.end) == (whole.rule, whole.start, whole.end)


@given(st.text(alphabet="abcé x", max_size=16))
@settings(max_examples=60)
def test_scan_spans_refullmatch(text: str) -> None:
    pattern = "é?ab+|cé"
    guard = regex_shield(pattern)
    for v in guard.scan(text):
        assert text[v.start : v.end] == v.match
        assert re.fullmatch(pattern, v.match)


def test_whole_word_fires_on_the_confirming_byte() -> None:
    guard = regex_shield("cat", whole_word=True)
    state, verdict = guard.step(guard.init(), b"a cat")
    assert verdict.ok
    state, verdict = guard.step(state, b"!")
    assert (verdict.ok, verdict.start, verdict.end) == (False, 2, 5)
    _, sticky = guard.step(state, b"more")
    assert sticky == verdict
    _, at_end = guard.finish(guard.step(guard.init(), b"the cat")[0])
    assert (at_end.start, at_end.end) == (4, 7)


def test_temporal_rules() -> None:
    rules = (
        AfterRule(
            id="card",
            trigger=RegexRule(id="t", pattern="(?i)card"),
            forbid=RegexRule(id="f", pattern=r"\d{4}"),
        ),
        AtMostRule(id="two", pattern=LiteralRule(id="x", literal="hi"), count=2),
        MaxLengthRule(id="len", max_bytes=40),
    )
    guard = shield.compile(Spec("t", rules))
    assert guard.first_violation(b"1234 then card", final=True) is None
    found = guard.first_violation(b"my Card: 1234", final=True)
    assert found is not None and (found.rule, found.start, found.end) == ("card", 9, 13)
    found = guard.first_violation(b"hi hi hi", final=True)
    assert found is not None and (found.rule, found.start) == ("two", 6)
    found = guard.first_violation(b"z" * 41, final=False)
    assert found is not None and (found.rule, found.start) == ("len", 40)
    assert [v.start for v in guard.scan("hi hi hi hi")] == [6, 9]


def test_refusal_must_pass() -> None:
    rules = (WordsRule(id="no-sorry", words=("sorry",)),)
    with pytest.raises(shield.SpecError) as info:
        shield.compile(Spec("t", rules, BacktrackPolicy(refusal="sorry, no")))
    assert info.value.rule_id == "no-sorry"
    assert shield.compile(Spec("t", rules)).refusal_passes()


def test_classifier_rules_are_validated() -> None:
    ok = shield.ClassifierRule(id="c", scorer="pkg.mod:score", threshold=0.5)
    guard = shield.compile(Spec("t", (ok,)))
    assert guard.classifiers == (ok,)
    bad: tuple[dict[str, object], ...] = (
        {"scorer": "x", "threshold": 0.5},
        {"scorer": "profanity-check", "threshold": 0.0},
        {"scorer": "profanity-check", "threshold": 0.5, "scope": "window"},
    )
    for fields in bad:  # a malformed rule never gets as far as the compiler: it cannot be built
        with pytest.raises(shield.SpecSyntaxError) as info:
            shield.compile(Spec("t", (shield.ClassifierRule(id="c", **fields),)))  # type: ignore[arg-type]
        assert info.value.rule_id == "c"


def test_compile_refuses_what_is_not_a_spec_of_rules() -> None:
    rule = LiteralRule(id="a", literal="x")
    with pytest.raises(shield.SpecSyntaxError, match="unknown rule kind str") as info:
        shield.compile(Spec("t", (rule, "not a rule")))  # type: ignore[arg-type]
    assert info.value.rule_id is None
    with pytest.raises(shield.SpecSyntaxError, match="used twice") as info:
        shield.compile(Spec("t", (rule, WordsRule(id="b", words=("y",)), rule)))
    assert info.value.rule_id == "a" and "#1 and #3" in info.value.message
    with pytest.raises(shield.SpecSyntaxError, match="needs a 'policy' attribute"):
        shield.compile(SimpleNamespace(name="t", rules=(rule,)))


def test_huge_repetition_is_a_compile_error() -> None:
    with pytest.raises(shield.CompileError, match="max_repeat"):
        regex_shield("a{100000}")
    with pytest.raises(shield.CompileError, match="max_dfa_states"):
        shield.compile(
            Spec("t", (RegexRule(id="r", pattern="[ab]*a[ab]{12}"),)),
            limits=shield.CompileLimits(max_dfa_states=500),
        )
