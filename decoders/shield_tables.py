"""The shield on the device: automaton tables as a pytree, and the token walks the step needs.

The same ``[C, S, 257]`` transition tables that the host-side :class:`shield.judge.Judge` walks are
put on the device once per generation, so a jitted decode step checks automaton rules with a few
gathers (no host round trip per token). ``C`` is the number of automaton components of the
implicit product, ``S`` the padded state count, and column 256 is the END symbol.

Two walks:

* :func:`walk_tokens` — one token per row, ``L`` gathers per component: every step.
* :func:`violating_tokens` — every token of the vocabulary from each row's state (``[B, V]``): used
  by the ``mask`` strategy and by ``backtrack`` while it repairs a failed segment.
"""

from __future__ import annotations

import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from shield.automata.alphabet import END
from shield.checkpoints import SENTENCE_END_BYTES
from shield.judge import Judge

__all__ = [
    "ShieldTables",
    "device_tables",
    "end_step",
    "shield_tables",
    "violates",
    "violating_tokens",
    "walk_tokens",
]

Array = jax.Array


@struct.dataclass(frozen=True, kw_only=True)
class ShieldTables:
    """Device copies of a lifted shield, padded to the model's vocabulary ``V``."""

    transitions: Array  # [C, S, 257] int32
    violating: Array  # [C, S] bool
    initial: Array  # [C] int32
    token_bytes: Array  # [V, L] int32, padded with 0 past each token's length
    token_lengths: Array  # [V] int32
    valid: Array  # [V] bool: ids that may be sampled (text tokens and EOS)
    closes_sentence: Array  # [V] bool: the token holds ., !, ? or a newline

    @property
    def components(self) -> int:
        """C, the number of automaton components."""
        return int(self.transitions.shape[0])


def shield_tables(token_shield: Any, vocab_size: int, never: np.ndarray) -> ShieldTables:
    """Build the device tables of a lifted shield for a model with ``vocab_size`` logits.

    Args:
        token_shield: a :class:`shield.TokenShield` (``byte_transitions``, ``violating``,
            ``initial``, ``token_matrix``, ``token_lengths``).
        vocab_size: V, the model's number of logits (may exceed the tokenizer's vocabulary; ids
            beyond it are never sampled).
        never: ``[V']`` bool from :meth:`shield.judge.Judge.never`: ids never produced as text
            (EOS excluded), so the sampler never picks them.

    Returns:
        The :class:`ShieldTables`.
    """
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
    return ShieldTables(
        transitions=jnp.asarray(np.asarray(token_shield.byte_transitions, dtype=np.int32)),
        violating=jnp.asarray(np.asarray(token_shield.violating, dtype=bool)),
        initial=jnp.asarray(np.asarray(token_shield.initial, dtype=np.int32)),
        token_bytes=jnp.asarray(matrix),
        token_lengths=jnp.asarray(lengths),
        valid=jnp.asarray(valid),
        closes_sentence=jnp.asarray(closes),
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


def violates(tables: ShieldTables, states: Array) -> Array:
    """``[...]`` bool: whether any component of ``states`` ``[..., C]`` is in a violating state."""
    component = jnp.arange(tables.components)
    return jnp.any(tables.violating[component, states], axis=-1)


def walk_tokens(tables: ShieldTables, states: Array, tokens: Array) -> Array:
    """Read one token per row: ``states`` ``[B, C]``, ``tokens`` ``[B]`` → ``[B, C]``."""
    component = jnp.arange(tables.components)[None, :]  # [1, C]
    rows = tables.token_bytes[tokens]  # [B, L]
    lengths = tables.token_lengths[tokens]  # [B]

    def body(i: Array, current: Array) -> Array:
        symbol = rows[:, i][:, None]  # [B, 1]
        nxt = tables.transitions[component, current, symbol]  # [B, C]
        return jnp.where((i < lengths)[:, None], nxt, current)

    # Only as many byte steps as the longest sampled token needs (a traced bound: most tokens are
    # a few bytes long, the longest in a vocabulary can be dozens).
    return jax.lax.fori_loop(0, jnp.max(lengths), body, states)


def end_step(tables: ShieldTables, states: Array) -> Array:
    """Read END from ``states`` ``[..., C]``."""
    component = jnp.arange(tables.components)
    return tables.transitions[component, states, END]


def violating_tokens(tables: ShieldTables, states: Array) -> Array:
    """``[B, V]`` bool: tokens whose bytes make some component violate from each row's state.

    Args:
        tables: the device tables.
        states: ``[B, C]`` int32 monitor states.

    Returns:
        True where reading the token from the row's state reaches a violating state; invalid ids
        are True as well (never allowed).
    """
    batch, components = states.shape
    vocab, longest = tables.token_bytes.shape
    component = jnp.arange(components)[None, None, :]  # [1, 1, C]
    current = jnp.broadcast_to(states[:, None, :], (batch, vocab, components))  # [B, V, C]

    def body(i: Array, current: Array) -> Array:
        symbol = tables.token_bytes[:, i][None, :, None]  # [1, V, 1]
        nxt = tables.transitions[component, current, symbol]  # [B, V, C]
        return jnp.where((i < tables.token_lengths)[None, :, None], nxt, current)

    final = jax.lax.fori_loop(0, longest, body, current)
    return violates(tables, final) | ~tables.valid[None, :]
