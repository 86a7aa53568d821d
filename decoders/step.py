"""Jitted pieces of decoding and the plain decode loop built from them.

The pieces, each pure (state in, state out) and usable inside another ``jit`` or loop body:

* :func:`prefill` — append ``[B, T]`` tokens (per-row ``lengths``) and compute their cache entries;
* :func:`decode_logits` — feed each row's pending token, return ``[B, V]`` logits for the next one;
* :func:`decoders.sampling.sample` with :func:`decoders.sampling.row_keys` — choose tokens;
* :func:`decoders.state.append`, :func:`~decoders.state.snapshot`, :func:`~decoders.state.rewind`,
  :func:`~decoders.state.finish` — move the state;
* :func:`advance` — append sampled tokens and finish rows on EOS, length or a full cache.

A plain step is ``decode_logits → sample → advance``; :func:`decode_loop` runs it in a
``lax.while_loop`` with explicit fuel, and :func:`run` drives that loop from the host in chunks,
choosing for each chunk the smallest power-of-two attention ``window`` that covers every cursor.
A shielded loop replaces :func:`plain_step` by a body that also steps the shield tables and calls
``rewind(state, target, rows)`` for the rows that were rejected; everything else is reused.

``window`` is static (one compiled variant per bucket); ``max_new_tokens`` and ``fuel`` are traced.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from decoders.aot import ahead_of_time
from decoders.config import ModelConfig
from decoders.model import Params, forward, logits
from decoders.sampling import SamplingConfig, row_keys, sample
from decoders.state import (
    FINISH_CACHE_FULL,
    FINISH_EOS,
    FINISH_LENGTH,
    DecodeState,
    append,
    finish,
)
from shield.errors import DecoderError

__all__ = [
    "MIN_ATTENTION_WINDOW",
    "advance",
    "attention_window",
    "decode_logits",
    "decode_loop",
    "plain_step",
    "prefill",
    "run",
]

Array = jax.Array

#: The smallest attention window (cache positions a step attends over).
MIN_ATTENTION_WINDOW = 64


# Exported ahead of time when the compile caches are on (decoders.aot: a warm start does not trace).
@functools.partial(ahead_of_time, static_argnames=("config", "window"))
def prefill(
    params: Params,
    config: ModelConfig,
    state: DecodeState,
    tokens: Array,
    lengths: Array,
    *,
    window: int,
) -> DecodeState:
    """Append ``lengths[b]`` tokens to each row and compute their keys/values.

    Keeps the state invariant: afterwards the last appended token of a row is pending. On a fresh
    state this is the prompt prefill, and it also sets ``start`` (the response begins after it);
    on a running state it forces text (e.g. a prefilled response start) without touching ``start``.

    Args:
        params: model weights.
        config: model shapes (static).
        state: the state to extend; rows must have room for their tokens.
        tokens: ``[B, T]`` int32, right-padded.
        lengths: ``[B]`` int32 in ``[0, T]``, tokens to take per row.
        window: static attention window, at least ``max(cursor + lengths)`` (the host checks).

    Returns:
        The extended state.
    """
    b, t = tokens.shape
    offsets = jnp.arange(t, dtype=jnp.int32)[None, :]  # [1, T]
    slots = state.cursor[:, None] + offsets  # [B, T]
    slots = jnp.where(offsets < lengths[:, None], slots, state.max_slots)  # padding -> dropped
    rows = jnp.arange(b)[:, None]  # [B, 1]
    buffer = state.tokens.at[rows, slots].set(tokens, mode="drop")  # [B, S]
    # Feed positions [first, new_cursor - 1): the old pending token and all new ones but the last.
    first = jnp.maximum(state.cursor - 1, 0)  # [B]
    positions = first[:, None] + offsets  # [B, T]; entries past the row's count write stale slots
    feed = jnp.take_along_axis(buffer, jnp.minimum(positions, state.max_slots - 1), axis=1)
    _, cache = forward(params, config, state.cache, feed, positions, window)
    fresh = state.cursor == 0
    return dataclasses.replace(
        state,
        tokens=buffer,
        cursor=state.cursor + lengths,
        start=jnp.where(fresh, lengths, state.start),
        cache=cache,
    )


@functools.partial(jax.jit, static_argnames=("config", "window"))
def decode_logits(
    params: Params, config: ModelConfig, state: DecodeState, *, window: int
) -> tuple[Array, DecodeState]:
    """Feed each row's pending token (position ``cursor - 1``) and return next-token logits.

    Args:
        params: model weights.
        config: model shapes (static).
        state: a state with ``cursor >= 1`` in every row.
        window: static attention window, at least ``max(cursor)``.

    Returns:
        ``(logits, state)``: ``[B, V]`` float32 logits for position ``cursor`` and the state with
        the pending token's keys/values written (cursor unchanged).
    """
    positions = jnp.maximum(state.cursor - 1, 0)[:, None]  # [B, 1]
    hidden, cache = forward(
        params, config, state.cache, state.last_token[:, None], positions, window
    )
    return logits(params, config, hidden[:, 0, :]), dataclasses.replace(state, cache=cache)


def advance(
    state: DecodeState, tokens: Array, config: ModelConfig, max_new_tokens: Array
) -> DecodeState:
    """Append sampled ``tokens`` ``[B]`` to running rows and finish rows that are done.

    An EOS token ends its row without being appended. A row finishes with ``FINISH_LENGTH`` when
    its response reaches ``max_new_tokens`` and with ``FINISH_CACHE_FULL`` when its cursor reaches
    the last slot. Every sampled token of a running row counts in ``generated``.
    """
    running = ~state.done  # [B]
    eos = jnp.isin(tokens, jnp.asarray(config.eos_token_ids, jnp.int32))  # [B]
    state = append(state, tokens, running & ~eos)
    state = dataclasses.replace(
        state, generated=state.generated + (running & eos).astype(jnp.int32)
    )
    state = finish(state, FINISH_EOS, running & eos)
    state = finish(state, FINISH_LENGTH, state.response_length >= max_new_tokens)
    return finish(state, FINISH_CACHE_FULL, state.cursor >= state.max_slots)


def plain_step(
    params: Params,
    config: ModelConfig,
    sampling: SamplingConfig,
    state: DecodeState,
    max_new_tokens: Array,
    window: int,
) -> DecodeState:
    """One step of plain decoding: logits, a draw keyed by (seed, position, attempt), advance."""
    next_logits, state = decode_logits(params, config, state, window=window)
    keys = row_keys(state.seed, state.cursor, state.attempt)  # position of the drawn token
    return advance(state, sample(next_logits, keys, sampling), config, max_new_tokens)


@functools.partial(
    jax.jit, static_argnames=("config", "sampling", "window"), donate_argnames=("state",)
)
def decode_loop(
    params: Params,
    config: ModelConfig,
    sampling: SamplingConfig,
    state: DecodeState,
    fuel: Array,
    max_new_tokens: Array,
    *,
    window: int,
) -> tuple[DecodeState, Array]:
    """Run :func:`plain_step` while some row runs and fuel is left (the state is donated).

    Args:
        params: model weights.
        config: model shapes (static).
        sampling: the sampling rule (static).
        state: the state; its buffers are donated and updated in place.
        fuel: int32 scalar, the most steps to run (traced).
        max_new_tokens: int32 scalar or ``[B]`` response length at which rows finish (traced).
        window: static attention window, at least ``max(cursor) + fuel - 1``.

    Returns:
        ``(state, steps)``: the new state and the number of steps taken.
    """

    def cond(carry: tuple[DecodeState, Array]) -> Array:
        state, steps = carry
        # Fuel left, and at least one row still running.
        return (steps < fuel) & jnp.any(~state.done)

    def body(carry: tuple[DecodeState, Array]) -> tuple[DecodeState, Array]:
        state, steps = carry
        return plain_step(params, config, sampling, state, max_new_tokens, window), steps + 1

    return jax.lax.while_loop(cond, body, (state, jnp.int32(0)))


def run(
    params: Params,
    config: ModelConfig,
    sampling: SamplingConfig,
    state: DecodeState,
    *,
    max_new_tokens: int,
    limit: Array | None = None,
    chunk: int = 32,
    on_chunk: Callable[[DecodeState], DecodeState] | None = None,
) -> DecodeState:
    """Decode until every row has finished, from the host, in chunks of at most ``chunk`` steps.

    Each chunk is one :func:`decode_loop` call with the smallest power-of-two window that covers
    every cursor it can reach. Total fuel is ``max_new_tokens``, so the loop always terminates.

    Args:
        params: model weights.
        config: model shapes.
        sampling: the sampling rule.
        state: a prefilled state (donated: do not reuse it afterwards).
        max_new_tokens: the fuel: model steps at most (and the response limit by default).
        limit: ``[B]`` int32 response length at which each row finishes (default
            ``max_new_tokens``); e.g. prefilled tokens plus ``max_new_tokens``.
        chunk: steps per jitted chunk (host synchronisation happens between chunks).
        on_chunk: called on the state after each chunk (e.g. to finish rows on stop strings).

    Returns:
        The final state; every row is finished.

    Raises:
        DecoderError: when ``max_new_tokens`` or ``chunk`` is not positive.
    """
    if max_new_tokens < 1 or chunk < 1:
        raise DecoderError(
            f"run: expected max_new_tokens >= 1 and chunk >= 1, received {max_new_tokens} and "
            f"{chunk}."
        )
    fuel_left = max_new_tokens
    bound = jnp.int32(max_new_tokens) if limit is None else limit
    while fuel_left > 0:
        cursors, done = jax.device_get((state.cursor, state.done))
        if bool(done.all()):
            break
        top = int(cursors[~done].max())  # finished rows may fall outside the window
        window = attention_window(top + chunk - 1, state.max_slots)
        steps = max(1, min(chunk, fuel_left, window - top + 1))
        state, used = decode_loop(
            params, config, sampling, state, jnp.int32(steps), bound, window=window
        )
        fuel_left -= int(used)
        if on_chunk is not None:
            state = on_chunk(state)
    return state


def attention_window(needed: int, slots: int) -> int:
    """The attention window for ``needed`` cache positions.

    Windows are powers of two of at least :data:`MIN_ATTENTION_WINDOW`, so a few compilations
    serve every length; the window never exceeds the cache.

    Args:
        needed: positions the window must cover.
        slots: the cache size.

    Returns:
        ``min(slots, the smallest power of two >= max(needed, MIN_ATTENTION_WINDOW))``.
    """
    window = MIN_ATTENTION_WINDOW
    while window < needed:  # at most log2(slots) doublings
        window *= 2
    return min(window, slots)
