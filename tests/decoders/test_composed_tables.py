"""Composed components on the device: the normaliser and the letter automaton, composed per byte.

The device walks (:func:`decoders.shield_tables.walk_tokens`, ``violating_tokens``, ``end_step``)
step composed components (packed ``letter * n_norm + norm`` states after the table components) and
must agree with the host's :class:`~shield.automata.composed.Composed` walk on the same bytes, on
vocabularies whose tokens split multi-byte characters; the packed state is one int32 of the state
vector, so restoring an earlier vector (a rewind) continues exactly as the uninterrupted walk.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders import shield_tables as device
from decoders.shield_tables import ShieldTables, shield_tables
from shield.automata.composed import Composed
from shield.automata.limits import CompileLimits
from shield.automata.wordlist import words_composed
from shield.rules import NORMALIZATIONS, MatchOptions
from tests.shield.helpers import words_shield

WORDS = ("fuck", "shit", "ass", "bitch")
TEXT = "what a f.u.c.k \uff46\uff55\uff43\uff4b \u0455h1t b\u200bitch A55 \u0430ss fu\u0301ck!"
#: Tokens: ASCII pieces and the bytes of the non-ASCII characters above split at every point.
PIECES = sorted(
    {
        *(TEXT[i : i + n].encode() for n in (1, 2, 3) for i in range(len(TEXT))),
        *(c.encode()[:k] for c in TEXT if ord(c) >= 128 for k in range(1, len(c.encode()) + 1)),
        *(c.encode()[k:] for c in TEXT if ord(c) >= 128 for k in range(1, len(c.encode()))),
    }
)

walk_tokens = jax.jit(device.walk_tokens)
violating_tokens = jax.jit(device.violating_tokens)
end_step = jax.jit(device.end_step)
violates = jax.jit(device.violates)


@pytest.fixture(scope="module")
def setup() -> tuple[Composed, ShieldTables, object]:
    match = MatchOptions(
        case_insensitive=True, whole_word=True, normalize=frozenset(NORMALIZATIONS)
    )
    composed = words_composed(WORDS, match, CompileLimits(), what="t", absorb=True)
    # One table component next to it (a plain rule), so both kinds are walked together.
    table_shield = words_shield(("damn",), case_insensitive=True, whole_word=True).lift(PIECES)
    never = np.zeros(len(PIECES), dtype=bool)
    tables = shield_tables(table_shield, len(PIECES), never, composed=(composed,))
    return composed, tables, table_shield


def _host(composed: Composed, table_shield: object, tokens: list[int]) -> list[int]:
    """The host's state vector after ``tokens``: the table component, then the composed one."""
    states = np.asarray(table_shield.initial)  # type: ignore[attr-defined]
    packed = composed.initial
    for token in tokens:
        states = table_shield.step_token(states, token)  # type: ignore[attr-defined]
        packed = composed.walk(packed, PIECES[token])
    return [*states.tolist(), packed]


token_lists = st.lists(st.integers(0, len(PIECES) - 1), max_size=12)


@settings(deadline=None, max_examples=40)
@given(st.lists(token_lists, min_size=3, max_size=3), st.lists(st.integers(0, 11), min_size=3))
def test_device_walk_equals_host_walk_and_rewinds_exactly(
    setup: tuple[Composed, ShieldTables, object], rows: list[list[int]], cuts: list[int]
) -> None:
    composed, tables, table_shield = setup
    assert tables.components == 2 and tables.table_components == 1  # the scenario: one of each
    longest = max(len(r) for r in rows)
    padded = [r + [0] * (longest - len(r)) for r in rows]
    start = np.array([_host(composed, table_shield, [])] * len(rows), dtype=np.int32)
    states = jnp.asarray(start)
    history = [states]
    for step in range(longest):
        tokens = jnp.asarray([r[step] for r in padded], jnp.int32)
        moved = walk_tokens(tables, states, tokens)
        live = jnp.asarray([step < len(r) for r in rows])[:, None]
        states = jnp.where(live, moved, states)
        history.append(states)
    for b, row in enumerate(rows):
        expected = _host(composed, table_shield, row)
        assert np.asarray(states[b]).tolist() == expected
        bad = bool(violates(tables, states[b : b + 1])[0])
        assert bad == (
            composed.violating(expected[1]) or table_shield.violates(np.array(expected[:1]))
        )  # type: ignore[attr-defined]
    # Rewind: restore the vector saved at a cursor, then read the rest again.
    for b, row in enumerate(rows):
        cut = min(cuts[b], len(row))
        restored = history[cut][b : b + 1]
        for token in row[cut:]:
            restored = walk_tokens(tables, restored, jnp.asarray([token], jnp.int32))
        assert np.asarray(restored[0]).tolist() == np.asarray(states[b]).tolist()


def test_violating_tokens_and_end_equal_the_host(
    setup: tuple[Composed, ShieldTables, object],
) -> None:
    composed, tables, table_shield = setup
    # States in the middle of characters and of words: after each prefix of a text that stops
    # short of every word (the absorbing automaton would stay violated after the first).
    data = "a \uff46\uff55\uff43 \u0455h1 b\u200bitc \u0430s fu\u0301c".encode()
    vectors, cases = [], []
    for cut in range(len(data)):
        packed = composed.walk(composed.initial, data[:cut])
        if composed.violating(packed):
            continue
        states = table_shield.initial  # type: ignore[attr-defined]
        vectors.append([int(states[0]), packed])
        cases.append(packed)
    assert any(p % composed.n_norm for p in cases)  # the scenario: some states mid-character
    bad = np.asarray(violating_tokens(tables, jnp.asarray(vectors, jnp.int32)))
    ends = np.asarray(violates(tables, end_step(tables, jnp.asarray(vectors, jnp.int32))))
    for i, packed in enumerate(cases):
        for t, piece in enumerate(PIECES):
            host = composed.violating(composed.walk(packed, piece))
            host = host or bool(table_shield._component_violations(0, vectors[i][0])[t])  # type: ignore[attr-defined]
            assert bool(bad[i, t]) == host, (i, piece)
        assert bool(ends[i]) == composed.violating(composed.walk(packed, b"", final=True))
    assert bad.any() and not bad.all()
