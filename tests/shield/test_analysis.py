"""Analysis: never-firing rules, trap states, the refusal check and DOT export."""

from __future__ import annotations

import shield
from shield.analysis import can_fire, dfa_graph, to_dot, trap_states
from shield.policy import BacktrackPolicy
from shield.rules import MaxLengthRule, RegexRule
from tests.shield.helpers import Spec, regex_shield


def test_never_fires() -> None:
    dfa = regex_shield("a^b").compiled[0].dfa
    assert not can_fire(dfa)
    report = shield.analyze(regex_shield("a^b"))
    assert [w.code for w in report.rules[0].warnings] == ["never-fires"]


def test_trap_states_and_report() -> None:
    guard = shield.compile(
        Spec("t", (MaxLengthRule(id="len", max_bytes=10), RegexRule(id="r", pattern="x$")))
    )
    report = shield.analyze(guard)
    assert report.refusal_passes and report.rules[0].id == "len" and report.rules[0].states == 12
    assert report.rules[1].warnings == ()
    assert trap_states(regex_shield("ab").compiled[0].dfa) == []
    end_rule = regex_shield("x$").compiled[0].dfa
    assert trap_states(end_rule) == []
    assert len(dfa_graph(end_rule)) == end_rule.n_states


def test_refusal_reported() -> None:
    guard = shield.compile(
        Spec("t", (RegexRule(id="r", pattern="zz"),), BacktrackPolicy(refusal="ok"))
    )
    assert shield.analyze(guard).refusal_passes


def test_dot_export() -> None:
    text = to_dot(regex_shield("ab").compiled[0].dfa, "ab")
    assert text.startswith('digraph "ab"') and "doublecircle" in text and text.endswith("}")
