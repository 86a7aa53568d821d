"""The judge walks with its token shield's walkers and reports the monitor's Violation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import shield
from shield.automata.alphabet import END
from shield.judge import Judge
from shield.monitor import Violation
from shield.rules import ClassifierRule, MatchOptions, RegexRule, WordsRule
from tests.shield.helpers import Spec

VOCAB = (b"", b"f", b"u", b"ck", b"fu", b"fuck", b" ", b"!", b"cat", b"12", b"3", b"4", b"\xc3")
EOS = 0

GUARD = shield.compile(
    Spec(
        "t",
        (
            WordsRule(
                id="w",
                words=("fuck", "cat"),
                match=MatchOptions(case_insensitive=True, whole_word=True),
            ),
            RegexRule(id="d", pattern=r"\d{4}"),
        ),
    )
)
TOKENS = GUARD.lift(VOCAB, special=[i == EOS for i in range(len(VOCAB))])
JUDGE = Judge(GUARD, TOKENS)


def _byte_walk(states: np.ndarray, symbols: bytes | list[int]) -> np.ndarray:
    """The reference: every component walked byte by byte over the raw tables."""
    out = np.array(states, dtype=np.int32)
    for c in range(len(out)):
        for symbol in symbols:
            out[c] = TOKENS.byte_transitions[c, out[c], symbol]
    return out


def _violating(states: np.ndarray) -> bool:
    return any(bool(TOKENS.violating[c, s]) for c, s in enumerate(states.tolist()))


@given(st.lists(st.integers(1, len(VOCAB) - 1), max_size=12))
@settings(max_examples=80, deadline=None)
def test_feed_equals_a_byte_walk_on_the_token_shield(ids: list[int]) -> None:
    state, reference = JUDGE.initial(), np.asarray(TOKENS.initial)
    for index, token in enumerate(ids):
        state, violation = JUDGE.feed(state, token, ids[:index])
        reference = _byte_walk(reference, VOCAB[token])
        assert isinstance(state, tuple) and all(type(s) is int for s in state)
        assert state == tuple(reference.tolist())
        assert TOKENS.violates(np.asarray(state)) == _violating(reference)
        data = b"".join(VOCAB[t] for t in ids[: index + 1])
        if _violating(reference):
            # The judge reports the monitor's own violation: same class, same fields.
            assert violation == GUARD.first_violation(data, final=False)
            assert isinstance(violation, Violation)
        else:
            assert violation is None
    ends_violating = _violating(_byte_walk(reference, [END]))
    assert TOKENS.end_violates(np.asarray(state)) == ends_violating
    assert (JUDGE.end_violation(ids, state) is not None) == ends_violating
    assert bool(JUDGE.allowed(state, [EOS])[EOS]) == (not ends_violating)
    allowed = JUDGE.allowed(state, [])
    for token in range(1, len(VOCAB)):
        assert allowed[token] == (not _violating(_byte_walk(reference, VOCAB[token])))


def test_violations_carry_span_and_match() -> None:
    ids = [6, 1, 2, 3, 6]  # " fuck "
    state = JUDGE.initial()
    for index, token in enumerate(ids):
        state, violation = JUDGE.feed(state, token, ids[:index])
    assert violation == Violation("w", 1, 5, "fuck")
    assert JUDGE.locate([6, 5], final=True) == Violation("w", 1, 5, "fuck")


def test_tables_and_scan_disagreeing_fails_closed_over_the_whole_text() -> None:
    # The tables forbid "cat" but the shield that locates forbids nothing: fail closed.
    allows_all = shield.compile(Spec("t", (RegexRule(id="z", pattern="zzz"),)))
    judge = Judge(allows_all, TOKENS)
    state, violation = judge.initial(), None
    for index, token in enumerate([6, 8, 6]):  # " cat "
        state, violation = judge.feed(state, token, [6, 8, 6][:index])
    assert violation == Violation("<monitor>", 0, 5, " cat ")


def test_a_shield_without_automaton_rules_has_no_components() -> None:
    only_classifier = shield.compile(
        Spec("t", (ClassifierRule(id="c", scorer="m:f", threshold=0.5, scope="response"),))
    )
    judge = Judge(only_classifier, only_classifier.lift(VOCAB))
    assert judge.initial() == ()
    assert judge.feed((), 5) == ((), None)
    assert judge.end_violation([5], ()) is None
    assert judge.allowed((), [EOS]).all()
    assert judge.classifier_rules == only_classifier.classifiers
