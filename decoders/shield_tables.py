"""The shield on the device: automaton tables as a pytree, and the token walks the step needs.

The same ``[C, S, 257]`` transition tables that the host-side :class:`shield.judge.Judge` walks are
put on the device once per generation, so a jitted decode step checks automaton rules with a few
gathers (no host round trip per token). ``C`` is the number of automaton components of the
implicit product, ``S`` the padded state count, and column 256 is the END symbol.

Two walks:

* :func:`walk_tokens` — one token per row, ``L`` gathers per component: every step.
* :func:`violating_tokens` — every token of the vocabulary from each row's state (``[B, V]``): used
  by the ``mask`` strategy and by ``backtrack`` while it repairs a failed segment. It walks the
  vocabulary's byte trie (:mod:`decoders.trie_walk`): a shared prefix is read once.

*Composed* components (normalisation as its own stage, :mod:`shield.automata.composed`) follow the
``C`` table components in the state vector: ``K`` of them, each a normaliser table ``[N, 257]``
(next state and up to two emitted atoms, packed into one int32) and a letter table ``[P, A + 1]``, with one packed int32
state ``letter * n_norm + norm``. A byte costs three gathers instead of one, but the tables add
(``N + P`` rows) instead of multiplying, and the packed state lives in the same ``[B, C + K]``
state array as every other component, so it is saved per cursor and rewinds with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decoders.pytree import pytree_dataclass
from decoders.trie_walk import TRIE_PADDING, TrieLoops, trie_loops, walk_vocabulary
from shield.automata.alphabet import END, N_SYMBOLS
from shield.automata.composed import Composed
from shield.checkpoints import SENTENCE_END_BYTES
from shield.judge import Judge

__all__ = [
    "ShieldTables",
    "composed_arrays",
    "device_tables",
    "end_step",
    "shield_tables",
    "violates",
    "violating_tokens",
    "walk_tokens",
]

Array = jax.Array


@pytree_dataclass(kw_only=True)
class ShieldTables:
    """Device copies of a lifted shield, padded to the model's vocabulary ``V``."""

    transitions: Array  # [C, S, 257] int32
    violating: Array  # [C, S] bool
    initial: Array  # [C + K] int32: table components, then composed ones (packed)
    token_bytes: Array  # [V, L] int32, padded with 0 past each token's length
    token_lengths: Array  # [V] int32
    valid: Array  # [V] bool: ids that may be sampled (text tokens and EOS)
    closes_sentence: Array  # [V] bool: the token holds ., !, ? or a newline
    norm_cells: Array  # [K, N, 257] int32: (next state * W + first atom) * W + second atom
    letters: Array  # [K, P, A + 1] int32: letter tables; column A is the identity (no atom)
    letter_violating: Array  # [K, P] bool
    norm_states: Array  # [K] int32: N of each composed component (to unpack its state)
    trie: TrieLoops  # the vocabulary's byte trie, for violating_tokens

    @property
    def components(self) -> int:
        """C + K, the number of automaton components (table components, then composed ones)."""
        return int(self.transitions.shape[0]) + int(self.letters.shape[0])

    @property
    def table_components(self) -> int:
        """C, the number of table components (the first C entries of a state vector)."""
        return int(self.transitions.shape[0])


def composed_arrays(composed: Sequence[Composed]) -> dict[str, np.ndarray]:
    """The padded device arrays of composed components (see the module docstring).

    Args:
        composed: the composed automata, in component order (may be empty).

    Returns:
        ``norm_cells`` (a normaliser step packed into one int32: ``(next * W + first) * W +
        second`` with ``W = A + 1`` letter-table columns, so a byte costs one gather there),
        ``letters``, ``letter_violating`` and ``norm_states``,
        padded to the largest normaliser, letter automaton and atom count; padding rows are
        self-loops and never violate.
    """
    k = len(composed)
    n = max((c.n_norm for c in composed), default=1)
    p = max((c.n_letters for c in composed), default=1)
    a = max((c.normaliser.n_atoms for c in composed), default=0)
    width = a + 1
    norm_cells = np.full((k, n, N_SYMBOLS), a * width + a, dtype=np.int64)  # to state 0, no atom
    letters = np.tile(np.arange(p, dtype=np.int32)[None, :, None], (k, 1, a + 1))
    letter_violating = np.zeros((k, p), dtype=bool)
    for i, c in enumerate(composed):
        own = c.letters.shape[1]  # its own identity column is own - 1; ours is a
        emit = np.where(c.emitted == own - 1, a, c.emitted).astype(np.int64)
        norm_cells[i, : c.n_norm] = (
            c.normaliser.next_state.astype(np.int64) * width + emit[..., 0]
        ) * width + emit[..., 1]
        letters[i, : c.n_letters, : own - 1] = c.letters[:, :-1]
        letter_violating[i, : c.n_letters] = c.accepting
    states = np.array([c.n_norm for c in composed], dtype=np.int32)
    return {
        "norm_cells": norm_cells.astype(np.int32),
        "letters": letters,
        "letter_violating": letter_violating,
        "norm_states": states,
    }


def shield_tables(
    token_shield: Any,
    vocab_size: int,
    never: np.ndarray,
    composed: Sequence[Composed] | None = None,
    *,
    trie_padding: float = TRIE_PADDING,
) -> ShieldTables:
    """Build the device tables of a lifted shield for a model with ``vocab_size`` logits.

    Args:
        token_shield: a :class:`shield.TokenShield` (``byte_transitions``, ``violating``,
            ``initial``, ``token_matrix``, ``token_lengths``).
        vocab_size: V, the model's number of logits (may exceed the tokenizer's vocabulary; ids
            beyond it are never sampled).
        never: ``[V']`` bool from :meth:`shield.judge.Judge.never`: ids never produced as text
            (EOS excluded), so the sampler never picks them.
        composed: composed components (absorbing), whose packed states follow the table
            components' in every state vector; None takes the token shield's own
            (``token_shield.composed``, the staged rules of :mod:`shield.lifting`).
        trie_padding: how many steps the padding of the vocabulary trie's level groups may add,
            as a share of its nodes (see :data:`decoders.trie_walk.TRIE_PADDING`): 0 makes each
            level its own group.

    Returns:
        The :class:`ShieldTables`.
    """
    initial = np.asarray(token_shield.initial, dtype=np.int32)
    own = tuple(getattr(token_shield, "composed", ()))
    if composed is None:
        composed = own  # its initial already covers them: [C + K]
    elif own:
        raise ValueError(
            f"the token shield has {len(own)} composed components of its own; pass composed=None"
            " to use them, or lift a shield without staged rules to add others"
        )
    else:  # extra composed components after a table-only shield's
        initial = np.concatenate([initial, [c.initial for c in composed]]).astype(np.int32)
    # Vectorised over the lifted token matrix: a Python loop over 49k tokens cost ~0.2 s a start.
    count = min(vocab_size, int(token_shield.token_matrix.shape[0]))
    source = np.asarray(token_shield.token_matrix[:count], dtype=np.int32)  # [V', L_max]
    lengths = np.zeros(vocab_size, dtype=np.int32)
    lengths[:count] = token_shield.token_lengths[:count]
    longest = max(1, int(lengths.max(initial=0)))
    matrix = np.zeros((vocab_size, longest), dtype=np.int32)
    matrix[:count] = source[:, :longest]
    valid = np.zeros(vocab_size, dtype=bool)
    valid[:count] = ~np.asarray(never[:count], dtype=bool)
    ends = np.zeros(256, dtype=bool)
    ends[list(SENTENCE_END_BYTES)] = True
    inside = np.arange(longest)[None, :] < lengths[:, None]  # [V, L]: bytes of the token
    closes = (ends[matrix] & inside).any(axis=1)  # the token holds a sentence end (closes_sentence)
    # Put, not jnp.asarray: staging host arrays with jnp runs a small compiled program per shape.
    return ShieldTables(
        transitions=jax.device_put(np.asarray(token_shield.byte_transitions, dtype=np.int32)),
        violating=jax.device_put(np.asarray(token_shield.violating, dtype=bool)),
        initial=jax.device_put(initial),
        token_bytes=jax.device_put(matrix),
        token_lengths=jax.device_put(lengths),
        valid=jax.device_put(valid),
        closes_sentence=jax.device_put(closes),
        **{name: jax.device_put(array) for name, array in composed_arrays(composed).items()},
        trie=trie_loops(token_shield.byte_trie, vocab_size, trie_padding),
    )


# Device tables per judge, built once (a judge is immutable) and dropped with the judge.
_TABLES: weakref.WeakKeyDictionary[Judge, dict[tuple[int, tuple[int, ...]], ShieldTables]] = (
    weakref.WeakKeyDictionary()
)


def device_tables(judge: Judge, vocab_size: int, eos_ids: tuple[int, ...]) -> ShieldTables:
    """The judge's device tables for a model's vocabulary size and EOS ids, built on first use.

    Args:
        judge: the token view of a compiled shield.
        vocab_size: V, the model's number of logits.
        eos_ids: the model's end-of-sequence ids (allowed to be sampled).

    Returns:
        The :class:`ShieldTables` (cached per judge).
    """
    per_judge = _TABLES.setdefault(judge, {})
    key = (vocab_size, eos_ids)
    if key not in per_judge:
        per_judge[key] = shield_tables(judge.tables, vocab_size, judge.never(eos_ids))
    return per_judge[key]


def _split(tables: ShieldTables, states: Array) -> tuple[Array, Array]:
    """The table components' and the composed components' parts of ``states`` ``[..., C + K]``."""
    c = tables.table_components
    return states[..., :c], states[..., c:]


def _table_step(tables: ShieldTables, states: Array, symbol: Array) -> Array:
    """Table components ``[..., C]`` read ``symbol`` (broadcast against them)."""
    component = jnp.arange(tables.table_components)
    return tables.transitions[component, states, symbol]


def _composed_step(tables: ShieldTables, states: Array, symbol: Array) -> Array:
    """Composed components ``[..., K]`` read ``symbol``: the normaliser, then each emitted atom."""
    component = jnp.arange(tables.letters.shape[0])
    size = _norm_size(tables, states)
    letter, norm = states // size, states % size
    width = tables.letters.shape[2]
    cell = tables.norm_cells[component, norm, symbol]  # [..., K]: one gather for N
    middle = tables.letters[component, letter, (cell // width) % width]
    letter = tables.letters[component, middle, cell % width]
    return letter * size + cell // (width * width)


def _norm_size(tables: ShieldTables, states: Array) -> Array:
    """``norm_states`` shaped like composed ``states`` ``[..., K]`` (explicit rank promotion)."""
    return tables.norm_states.reshape((1,) * (states.ndim - 1) + (-1,))


def _step(tables: ShieldTables, states: Array, symbol: Array) -> Array:
    """Every component ``[..., C + K]`` reads ``symbol`` (``[..., 1]``)."""
    table_part, composed_part = _split(tables, states)
    if composed_part.shape[-1] == 0:  # static: no composed component
        return _table_step(tables, table_part, symbol)
    return jnp.concatenate(
        [_table_step(tables, table_part, symbol), _composed_step(tables, composed_part, symbol)],
        axis=-1,
    )


def violates(tables: ShieldTables, states: Array) -> Array:
    """``[...]`` bool: whether any component of ``states`` ``[..., C + K]`` is violating."""
    table_part, composed_part = _split(tables, states)
    component = jnp.arange(tables.table_components)
    bad = jnp.any(tables.violating[component, table_part], axis=-1)
    if composed_part.shape[-1] == 0:
        return bad
    composed = jnp.arange(tables.letters.shape[0])
    letter = composed_part // _norm_size(tables, composed_part)
    return bad | jnp.any(tables.letter_violating[composed, letter], axis=-1)


def walk_tokens(tables: ShieldTables, states: Array, tokens: Array) -> Array:
    """Read one token per row: ``states`` ``[B, C + K]``, ``tokens`` ``[B]`` → ``[B, C + K]``."""
    rows = tables.token_bytes[tokens]  # [B, L]
    lengths = tables.token_lengths[tokens]  # [B]

    def body(i: Array, current: Array) -> Array:
        nxt = _step(tables, current, rows[:, i][:, None])  # [B, C + K]
        return jnp.where((i < lengths)[:, None], nxt, current)

    # Only as many byte steps as the longest sampled token needs (a traced bound: most tokens are
    # a few bytes long, the longest in a vocabulary can be dozens).
    return jax.lax.fori_loop(0, jnp.max(lengths), body, states)


def end_step(tables: ShieldTables, states: Array) -> Array:
    """Read END from ``states`` ``[..., C + K]``."""
    return _step(tables, states, jnp.full((*states.shape[:-1], 1), END, jnp.int32))


def violating_tokens(tables: ShieldTables, states: Array) -> Array:
    """``[B, V]`` bool: tokens whose bytes make some component violate from each row's state.

    Args:
        tables: the device tables.
        states: ``[B, C + K]`` int32 monitor states.

    Returns:
        True where reading the token from the row's state reaches a violating state; invalid ids
        are True as well (never allowed).
    """
    bad = walk_vocabulary(
        tables.trie, states, lambda s, b: _step(tables, s, b), lambda s: violates(tables, s)
    )
    return bad | ~tables.valid[None, :]
