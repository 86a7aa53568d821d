"""The decode state, its snapshots, and the pure moves on it: append, snapshot, rewind, finish.

A :class:`DecodeState` is one frozen pytree holding, per row, the token buffer, a **cursor**
(the length of the row's sequence, prompt included) and an append-only KV cache. Its invariant:

* ``tokens[b, :cursor[b]]`` is row ``b``'s sequence; ``tokens[b, start[b]:cursor[b]]`` its response;
* cache slots ``[0, cursor[b] - 1)`` hold the keys/values of ``tokens[b, :cursor[b] - 1]``; the
  last token is *pending*: the next :func:`decoders.step.decode_logits` feeds it, writing slot
  ``cursor[b] - 1``, and returns the logits of the token at position ``cursor[b]``.

So a rewind is a cursor move: slots at or after the new cursor are stale, hidden by the causal
mask, and overwritten as the row moves forward again. Nothing is copied or recomputed.

A :class:`Snapshot` is the few scalars per row that name a generation state (cursor, sampling
attempt, finish code). Random keys are derived from (seed, position, attempt) and ``attempt`` only
changes on a rewind, so a run that never rewinds samples exactly as plain decoding.

All functions here are pure and shape-preserving, usable inside ``jax.jit`` and loop bodies.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from decoders.config import DecodeConfig, ModelConfig
from decoders.model import KVCache, init_cache
from decoders.pytree import pytree_dataclass
from shield.result import FinishReason

__all__ = [
    "FINISH_BUDGET",
    "FINISH_CACHE_FULL",
    "FINISH_EOS",
    "FINISH_LENGTH",
    "FINISH_REASONS",
    "FINISH_REFUSED",
    "RUNNING",
    "DecodeState",
    "Snapshot",
    "append",
    "finish",
    "finish_rows",
    "init_state",
    "rewind",
    "snapshot",
]

Array = jax.Array

#: Finish codes of a row (``DecodeState.finish``). Plain decoding ends rows with the first three;
#: shielded decoding adds the last two (stopped at the last accepted state; refused).
RUNNING, FINISH_EOS, FINISH_LENGTH, FINISH_CACHE_FULL = 0, 1, 2, 3
FINISH_BUDGET, FINISH_REFUSED = 8, 9
#: The ``finish_reason`` of each finish code (the one map from device codes to JSON names).
FINISH_REASONS: dict[int, FinishReason] = {
    FINISH_EOS: "eos",
    FINISH_LENGTH: "length",
    FINISH_CACHE_FULL: "length",
    FINISH_BUDGET: "budget",
    FINISH_REFUSED: "refused",
}


@pytree_dataclass(kw_only=True)
class DecodeState:
    """Everything a decode loop carries, per row ``b`` of ``B``, with ``S`` cache slots."""

    tokens: Array  # [B, S] int32: the sequence buffer (prompt, then response)
    cursor: Array  # [B] int32: sequence length; the token at cursor - 1 is pending
    start: Array  # [B] int32: where the response begins; no rewind goes below it
    cache: KVCache  # k, v: [L, B, K, S, D]
    seed: Array  # [B] uint32: per-row sampling seed
    attempt: Array  # [B] int32: bumped on every rewind, so retries draw fresh keys
    finish: Array  # [B] int32: RUNNING or a FINISH_* code
    generated: Array  # [B] int32: tokens sampled, kept or not
    discarded: Array  # [B] int32: tokens removed by rewinds
    rollbacks: Array  # [B] int32: rewinds performed
    max_rollback: Array  # [B] int32: the most tokens one rewind removed

    @property
    def batch_size(self) -> int:
        """B, the number of rows."""
        return int(self.tokens.shape[0])

    @property
    def max_slots(self) -> int:
        """S, the cache slots per row."""
        return int(self.tokens.shape[1])

    @property
    def done(self) -> Array:
        """``[B]`` bool: rows that have finished."""
        return self.finish != RUNNING

    @property
    def response_length(self) -> Array:
        """``[B]`` int32: kept response tokens."""
        return self.cursor - self.start

    @property
    def last_token(self) -> Array:
        """``[B]`` int32: the pending token at ``cursor - 1``."""
        index = jnp.maximum(self.cursor - 1, 0)[:, None]  # [B, 1]
        return jnp.take_along_axis(self.tokens, index, axis=1)[:, 0]


@pytree_dataclass(kw_only=True)
class Snapshot:
    """The scalars per row that define a generation state; restoring them is a rewind."""

    cursor: Array  # [B] int32
    attempt: Array  # [B] int32
    finish: Array  # [B] int32


def init_state(
    model_config: ModelConfig, decode_config: DecodeConfig, seeds: Array | np.ndarray | None = None
) -> DecodeState:
    """An empty state: no tokens, zero cache, every row running.

    Args:
        model_config: the model shapes (cache heads, head width, layers, dtype).
        decode_config: rows and slots.
        seeds: ``[B]`` per-row seeds (uint32-compatible); zeros when None.

    Returns:
        A :class:`DecodeState` with ``cursor = start = 0``; fill it with
        :func:`decoders.step.prefill`.
    """
    b, s = decode_config.batch_size, decode_config.max_slots
    # Host arrays put on the device: no program to compile or fetch from the cache at each start.
    zeros = jax.device_put(np.zeros((b,), np.int32))
    seed = np.zeros((b,), np.uint32) if seeds is None else np.asarray(seeds).astype(np.uint32)
    return DecodeState(
        tokens=jax.device_put(np.zeros((b, s), np.int32)),
        cursor=zeros,
        start=zeros,
        cache=init_cache(model_config, b, s),
        seed=jax.device_put(seed),
        attempt=zeros,
        finish=zeros,
        generated=zeros,
        discarded=zeros,
        rollbacks=zeros,
        max_rollback=zeros,
    )


def append(state: DecodeState, tokens: Array, rows: Array | None = None) -> DecodeState:
    """Write one token per selected row at its cursor and advance the cursor.

    Args:
        state: the state; rows whose cursor is already ``S`` are left unchanged.
        tokens: ``[B]`` int32 token ids.
        rows: ``[B]`` bool, the rows that take a token; the running rows when None.

    Returns:
        The new state (``generated`` counts the appended tokens).
    """
    rows = ~state.done if rows is None else rows
    rows = rows & (state.cursor < state.max_slots)  # [B]
    index = jnp.where(rows, state.cursor, state.max_slots)  # [B]; S = out of range = dropped
    buffer = state.tokens.at[jnp.arange(state.batch_size), index].set(tokens, mode="drop")
    step = rows.astype(jnp.int32)
    return dataclasses.replace(
        state, tokens=buffer, cursor=state.cursor + step, generated=state.generated + step
    )


def finish(state: DecodeState, code: int, rows: Array) -> DecodeState:
    """Mark the selected rows that are still running as finished with ``code``."""
    return dataclasses.replace(
        state, finish=jnp.where(rows & ~state.done, jnp.int32(code), state.finish)
    )


def snapshot(state: DecodeState) -> Snapshot:
    """The current :class:`Snapshot` of every row (a few scalars; the cache is not copied)."""
    return Snapshot(cursor=state.cursor, attempt=state.attempt, finish=state.finish)


def rewind(
    state: DecodeState,
    to: Snapshot | Array,
    rows: Array | None = None,
    *,
    fresh_attempt: bool = True,
) -> DecodeState:
    """Move the selected rows back to a snapshot or cursor: a cursor move, no copy.

    Targets are clamped to ``[start, cursor]``: a rewind never crosses the prompt and never moves
    forward. Rewound rows count the removed tokens in ``discarded``, ``rollbacks`` and
    ``max_rollback``, and resume running unless the snapshot says otherwise.

    Args:
        state: the state.
        to: a :class:`Snapshot` or ``[B]`` int32 target cursors.
        rows: ``[B]`` bool, the rows to rewind; all rows when None.
        fresh_attempt: bump ``attempt`` so the retry draws fresh random keys (keep True unless
            reproducing a previous attempt exactly); False restores the snapshot's attempt.

    Returns:
        The rewound state.
    """
    rows = jnp.ones_like(state.done) if rows is None else rows  # [B] bool
    target = to.cursor if isinstance(to, Snapshot) else to  # [B]
    target = jnp.clip(target, state.start, state.cursor).astype(jnp.int32)
    target = jnp.where(rows, target, state.cursor)
    removed = state.cursor - target  # [B] >= 0
    if fresh_attempt:
        attempt = jnp.where(rows, state.attempt + 1, state.attempt)
    elif isinstance(to, Snapshot):
        attempt = jnp.where(rows, to.attempt, state.attempt)
    else:
        attempt = state.attempt
    finish_code = to.finish if isinstance(to, Snapshot) else jnp.zeros_like(state.finish)
    return dataclasses.replace(
        state,
        cursor=target,
        attempt=attempt,
        finish=jnp.where(rows, finish_code, state.finish),
        discarded=state.discarded + removed,
        rollbacks=state.rollbacks + rows.astype(jnp.int32),
        max_rollback=jnp.maximum(state.max_rollback, removed),
    )


#: :func:`finish` compiled once (the host calls it between device runs; run eagerly it is four
#: small programs, each fetched from the compilation cache at every start).
finish_rows = jax.jit(finish, static_argnums=1)
