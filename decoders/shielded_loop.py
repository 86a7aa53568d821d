"""Shielded decoding on the device: the ``backtrack``, ``reset`` and ``mask`` strategies.

The split between device and host:

* **Device** (:func:`shielded_loop`, a ``lax.while_loop`` with explicit fuel): each step computes
  logits, removes the tokens banned at the row's position (progress) and — for ``mask``, or for
  ``backtrack`` while it regenerates a failed segment — every token that would make an automaton
  rule fire; samples with keys derived from ``(seed, position, attempt)``; walks the sampled
  token's bytes through the shield tables; and appends it, or raises an *event* for the row,
  which then waits. The loop returns a few steps after the first row starts waiting
  (``LoopConfig.patience``), so the host answers the events of several rows at once; otherwise
  decoding never leaves the device.
* **Host** (:func:`decoders.shielded.generate_shielded`): each event is replayed as a transition
  of the reference decoder's :class:`~shield.reference.Machine` (exact match start, classifier
  windows, end-of-text checks, :func:`~shield.controller.plan_rewind`), and the resulting decision
  is applied as a cursor move.

Events: ``VIOLATION`` (an automaton rule fired on the sampled token, which is not appended),
``EOS`` and ``LENGTH`` (the text would end: the host runs the END check and the open classifier
windows), ``WINDOW`` (the appended token closed a classifier window), ``STUCK`` (every token is
banned). The semantics are exactly those of :func:`shield.reference.reference_generate`, which the
tests check token for token under greedy decoding.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from decoders.aot import ahead_of_time
from decoders.config import ModelConfig
from decoders.model import Params
from decoders.pytree import pytree_dataclass
from decoders.sampling import SamplingConfig, row_keys, sample
from decoders.shield_tables import (
    ShieldTables,
    end_step,
    violates,
    violating_tokens,
    walk_tokens,
)
from decoders.state import FINISH_EOS, FINISH_LENGTH, RUNNING, DecodeState, append, finish
from decoders.step import decode_logits
from shield.result import REWINDING_STRATEGIES

__all__ = [
    "EVENT_EOS",
    "EVENT_LENGTH",
    "EVENT_NONE",
    "EVENT_STUCK",
    "EVENT_VIOLATION",
    "EVENT_WINDOW",
    "LoopConfig",
    "ShieldCarry",
    "init_carry",
    "shielded_loop",
]

Array = jax.Array

EVENT_NONE, EVENT_VIOLATION, EVENT_EOS, EVENT_LENGTH, EVENT_WINDOW, EVENT_STUCK = range(6)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Static settings of the shielded loop (hashable; changing them recompiles).

    Attributes:
        strategy: ``backtrack``, ``reset`` or ``mask``.
        sentence_windows: some classifier rule judges sentences (raise ``WINDOW`` on a sentence end).
        window_tokens: the token count of ``window``-scope classifier rules (0: none).
        max_bans: M, the ban slots per row (``max_retries`` suffices: bans live at one position).
        patience: once a row waits for the host, the other rows run at most this many more steps
            before the loop returns (so the host answers several rows' events in one batch; rows
            are independent, so this changes timing only, never tokens).
    """

    strategy: str
    sentence_windows: bool = False
    window_tokens: int = 0
    max_bans: int = 4
    patience: int = 1


@pytree_dataclass(kw_only=True)
class ShieldCarry:
    """The shield's part of the decode state, per row ``b`` of ``B`` with ``S`` slots and ``C`` components."""

    history: (
        Array  # [B, S + 1, C] int32: monitor state at each cursor (history[b, start] = initial)
    )
    event: Array  # [B] int32: EVENT_* raised by the row; the row waits until the host clears it
    rejected: Array  # [B] int32: the token that raised the event
    ban_position: Array  # [B] int32: cursor at which ban_tokens apply (-1: none)
    ban_tokens: Array  # [B, M] int32: tokens banned there (-1: empty slot)
    repair_until: Array  # [B] int32: cursor before which automaton-violating tokens are masked
    steps: Array  # [B] int32: tokens sampled (model steps)
    limit: Array  # [B] int32: cursor at which the response is full


def init_carry(history: Array, limit: Array, max_bans: int) -> ShieldCarry:
    """A carry with no events, no bans and no repairs.

    Args:
        history: ``[B, S + 1, C]`` int32 monitor states, filled up to each row's cursor.
        limit: ``[B]`` int32 cursor at which each row's response is full.
        max_bans: M, ban slots per row.

    Returns:
        The :class:`ShieldCarry`.
    """
    batch = history.shape[0]

    def zeros() -> Array:  # distinct buffers: the loop donates every leaf of the carry
        return jnp.zeros((batch,), jnp.int32)

    return ShieldCarry(
        history=history,
        event=zeros(),
        rejected=zeros(),
        ban_position=jnp.full((batch,), -1, jnp.int32),
        ban_tokens=jnp.full((batch, max_bans), -1, jnp.int32),
        repair_until=zeros(),
        steps=zeros(),
        limit=limit,
    )


def _blocked(carry: ShieldCarry, tables: ShieldTables, cursor: Array) -> Array:
    """``[B, V]`` bool: tokens banned at the row's cursor, and ids that are never sampled."""
    batch = cursor.shape[0]
    vocab = tables.valid.shape[0]
    here = (carry.ban_position == cursor)[:, None] & (carry.ban_tokens >= 0)  # [B, M]
    columns = jnp.where(here, carry.ban_tokens, vocab)  # [B, M]; vocab = dropped
    banned = (
        jnp.zeros((batch, vocab), bool)
        .at[jnp.arange(batch)[:, None], columns]
        .set(True, mode="drop")
    )
    return banned | ~tables.valid[None, :]


def _step(
    params: Params,
    config: ModelConfig,
    sampling: SamplingConfig,
    loop: LoopConfig,
    tables: ShieldTables,
    state: DecodeState,
    carry: ShieldCarry,
    window: int,
) -> tuple[DecodeState, ShieldCarry]:
    batch = state.batch_size
    rows = jnp.arange(batch)
    eos = jnp.asarray(config.eos_token_ids, jnp.int32)
    active = (state.finish == RUNNING) & (carry.event == EVENT_NONE)  # [B]
    logits, state = decode_logits(params, config, state, window=window)  # [B, V]
    monitor = carry.history[rows, state.cursor]  # [B, C]
    if loop.strategy == "mask":
        need = active
    elif loop.strategy == "backtrack":
        need = active & (state.cursor < carry.repair_until)
    else:
        need = jnp.zeros_like(active)

    def automaton_blocks() -> Array:
        bad = violating_tokens(tables, monitor)  # [B, V]
        ends_badly = violates(tables, end_step(tables, monitor))  # [B]
        return bad.at[:, eos].set(ends_badly[:, None])

    def constrained() -> tuple[Array, Array]:
        blocked = _blocked(carry, tables, state.cursor)  # [B, V]
        bad = jax.lax.cond(jnp.any(need), automaton_blocks, lambda: jnp.zeros_like(blocked))
        combined = blocked | (bad & need[:, None])
        use = jnp.where(jnp.all(combined, axis=-1, keepdims=True), blocked, combined)  # [B, V]
        return jnp.where(use, -jnp.inf, logits), active & jnp.all(use, axis=-1)

    def unconstrained() -> tuple[Array, Array]:
        # No ban at any row's cursor and no row masking violations: only never-sampled ids go,
        # which is what `constrained` computes then, in one pass instead of several.
        never = ~tables.valid
        return jnp.where(never[None, :], -jnp.inf, logits), active & jnp.all(never)

    bans_here = jnp.any((carry.ban_position == state.cursor)[:, None] & (carry.ban_tokens >= 0))
    masked, stuck = jax.lax.cond(bans_here | jnp.any(need), constrained, unconstrained)
    keys = row_keys(state.seed, state.cursor, state.attempt)
    token = sample(masked, keys, sampling)  # [B]
    drawn = active & ~stuck
    is_eos = jnp.isin(token, eos)
    after = walk_tokens(tables, monitor, token)  # [B, C]
    shielded = loop.strategy in REWINDING_STRATEGIES
    fired = violates(tables, after) & shielded
    take = drawn & ~is_eos & ~fired
    state = append(state, token, take)
    slots = carry.history.shape[1]
    index = jnp.where(take, state.cursor, slots)  # slots = out of range = dropped
    history = carry.history.at[rows, index].set(after, mode="drop")
    full = take & (state.cursor >= carry.limit)
    if shielded:
        closes = jnp.zeros_like(take)
        if loop.sentence_windows:
            closes = closes | tables.closes_sentence[token]
        if loop.window_tokens:
            closes = closes | ((state.cursor - state.start) % loop.window_tokens == 0)
        raised = jnp.select(
            [stuck, drawn & is_eos, drawn & fired, full, take & closes],
            [EVENT_STUCK, EVENT_EOS, EVENT_VIOLATION, EVENT_LENGTH, EVENT_WINDOW],
            EVENT_NONE,
        ).astype(jnp.int32)
    else:  # mask: nothing is judged during decoding; rows end on EOS or length
        state = finish(state, FINISH_EOS, drawn & is_eos)
        state = finish(state, FINISH_LENGTH, full)
        raised = jnp.zeros_like(carry.event)
    carry = dataclasses.replace(
        carry,
        history=history,
        event=jnp.where(active, raised, carry.event),
        rejected=jnp.where(active, token, carry.rejected),
        steps=carry.steps + drawn.astype(jnp.int32),
    )
    return state, carry


# Exported ahead of time when the compile caches are on (decoders.aot: a warm start does not trace).
@functools.partial(
    ahead_of_time,
    static_argnames=("config", "sampling", "loop", "window"),
    donate_argnames=("state", "carry"),
)
def shielded_loop(
    params: Params,
    config: ModelConfig,
    sampling: SamplingConfig,
    loop: LoopConfig,
    tables: ShieldTables,
    state: DecodeState,
    carry: ShieldCarry,
    fuel: Array,
    *,
    window: int,
) -> tuple[DecodeState, ShieldCarry, Array]:
    """Run shielded steps until rows wait for the host, every row is done, or fuel runs out.

    Args:
        params: model weights.
        config: model shapes (static).
        sampling: the sampling rule (static).
        loop: strategy and window settings (static).
        tables: the device shield tables.
        state: the decode state (donated).
        carry: the shield carry (donated).
        fuel: int32 scalar, the most steps to run.
        window: static attention window, at least ``max(cursor) + fuel - 1``.

    Returns:
        ``(state, carry, steps)``.
    """

    def cond(values: tuple[DecodeState, ShieldCarry, Array, Array]) -> Array:
        state, carry, steps, waited = values
        runnable = (state.finish == RUNNING) & (carry.event == EVENT_NONE)
        # Fuel left, some row can step, and no row has waited for the host for `patience` steps.
        return (steps < fuel) & jnp.any(runnable) & (waited < loop.patience)

    def body(
        values: tuple[DecodeState, ShieldCarry, Array, Array],
    ) -> tuple[DecodeState, ShieldCarry, Array, Array]:
        state, carry, steps, waited = values
        state, carry = _step(params, config, sampling, loop, tables, state, carry, window)
        waiting = jnp.any((state.finish == RUNNING) & (carry.event != EVENT_NONE))
        return state, carry, steps + 1, waited + waiting.astype(jnp.int32)

    state, carry, steps, _ = jax.lax.while_loop(
        cond, body, (state, carry, jnp.int32(0), jnp.int32(0))
    )
    return state, carry, steps
