"""DFA laws: validation, minimisation preserves the language, product = union of violations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shield.automata.dfa import DFA, product
from shield.automata.minimize import minimize
from tests.shield.helpers import regex_shield

ALPHABET = st.binary(max_size=10).map(lambda b: bytes(x % 3 + 97 for x in b))


@st.composite
def random_dfas(draw: st.DrawFn) -> DFA:
    n = draw(st.integers(1, 8))
    classes = np.zeros(257, dtype=np.int32)
    classes[98], classes[99], classes[256] = 1, 2, 3
    table = np.array(
        draw(
            st.lists(
                st.lists(st.integers(0, n - 1), min_size=4, max_size=4), min_size=n, max_size=n
            )
        )
    )
    accepting = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return DFA(table, classes, 0, accepting)


def _reachable(dfa: DFA) -> DFA:
    seen, queue = {dfa.initial}, [dfa.initial]
    while queue:
        for t in dfa.transitions[queue.pop()].tolist():
            if t not in seen:
                seen.add(t)
                queue.append(t)
    order = sorted(seen, key=lambda s: (s != dfa.initial, s))
    remap = {s: i for i, s in enumerate(order)}
    table = np.array([[remap[t] for t in dfa.transitions[s].tolist()] for s in order])
    return DFA(table, dfa.classes, 0, dfa.accepting[order])


@given(random_dfas(), st.lists(ALPHABET, max_size=10))
@settings(max_examples=60)
def test_minimize_preserves_language(dfa: DFA, texts: list[bytes]) -> None:
    dfa = _reachable(dfa)
    small = minimize(dfa)
    assert small.n_states <= dfa.n_states
    for text in texts:
        for final in (False, True):
            assert small.accepts(text, final=final) == dfa.accepts(text, final=final)


@given(random_dfas())
@settings(max_examples=40)
def test_minimize_is_idempotent(dfa: DFA) -> None:
    once = minimize(_reachable(dfa))
    assert minimize(once).n_states == once.n_states


@given(st.lists(ALPHABET, min_size=1, max_size=10))
@settings(max_examples=30)
def test_product_violates_when_some_component_does(texts: list[bytes]) -> None:
    parts = [regex_shield(p).compiled[0].dfa for p in ("ab", "ca+", "b{2}")]
    joint = product(parts, max_states=10_000)
    for text in texts:
        assert joint.accepts(text) == any(p.accepts(text) for p in parts)


def test_dfa_is_validated_and_read_only() -> None:
    classes = np.zeros(257, dtype=np.int32)
    with pytest.raises(ValueError, match="transitions must lie"):
        DFA(np.array([[1]]), classes, 0, np.array([False]))
    with pytest.raises(ValueError, match="initial"):
        DFA(np.array([[0]]), classes, 3, np.array([False]))
    dfa = DFA(np.array([[0]]), classes, 0, np.array([False]))
    with pytest.raises(ValueError):
        dfa.transitions[0, 0] = 0
