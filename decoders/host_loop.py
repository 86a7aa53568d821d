"""The host event loop of shielded decoding: device runs and host answers, in turn.

The device (:func:`decoders.shielded_loop.shielded_loop`) decodes until a row raises an event; the
host answers every waiting row with the reference machine's own transition
(:class:`decoders.host_events.EventHost`) and applies the answers to the device state as cursor
moves (rewinds), ban lists and finish codes (:func:`apply_decisions`).

Classifier windows are judged off the critical path by default (:mod:`decoders.verdict_queue`):
the device does not stop when a window closes; the host scores the windows of each device run on
a worker thread during the next run and delivers the verdicts, in order, as transitions of the
machine (:meth:`~shield.machine.Machine.verdict`), before it answers any event of the row. The
synchronous path (the device stops at every window, ``EVENT_WINDOW``) stays selectable.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from decoders.config import ModelConfig
from decoders.host_events import Decision, EventHost, monitor_states, states_along
from decoders.model import Params
from decoders.sampling import SamplingConfig
from decoders.shield_tables import ShieldTables
from decoders.shielded_loop import (
    EVENT_EOS,
    EVENT_LENGTH,
    EVENT_NONE,
    EVENT_WINDOW,
    LoopConfig,
    ShieldCarry,
    shielded_loop,
)
from decoders.state import FINISH_BUDGET, RUNNING, DecodeState, finish, finish_rows, rewind
from decoders.step import attention_window
from shield.errors import DecoderError
from shield.judge import Window
from shield.result import TextStream

# Decision, EventHost, monitor_states and states_along are defined in decoders.host_events and
# re-exported here, where the shielded decoder and the verdict queue have always imported them.
__all__ = [
    "Decision",
    "EventHost",
    "Verdicts",
    "apply_decisions",
    "monitor_states",
    "run_host_loop",
    "states_along",
]


class Verdicts(Protocol):
    """Classifier verdicts computed off the critical path (:class:`decoders.verdict_queue.Verdicts`)."""

    def collect(
        self,
        host: EventHost,
        state: DecodeState,
        carry: ShieldCarry,
        starts: np.ndarray,
        max_bans: int,
    ) -> tuple[DecodeState, ShieldCarry]:
        """Submit the windows the new tokens closed, deliver the verdicts that are in."""
        ...

    def pending(self, row: int) -> tuple[Window, ...]:
        """The row's windows awaiting a verdict, oldest first."""
        ...

    def rewound(self, row: int, target: int) -> None:
        """The row went back to ``target`` tokens."""
        ...

    def tick(self) -> None:
        """A device run starts."""
        ...


def apply_decisions(
    state: DecodeState,
    carry: ShieldCarry,
    decisions: dict[int, Decision],
    starts: np.ndarray,
    max_bans: int,
) -> tuple[DecodeState, ShieldCarry]:
    """Apply host decisions to the device state: rewinds are cursor moves, never copies.

    Raises:
        DecoderError: a rewind bans more tokens than the carry has ban slots (the controller's
            bound, ``max_retries``, makes this impossible).
    """
    batch = state.batch_size
    rewind_rows = np.zeros(batch, bool)
    targets = np.zeros(batch, np.int32)
    clear = np.zeros(batch, bool)
    finish_codes = np.zeros(batch, np.int32)
    ban_position = np.asarray(jax.device_get(carry.ban_position)).copy()
    ban_tokens = np.asarray(jax.device_get(carry.ban_tokens)).copy()
    repair = np.asarray(jax.device_get(carry.repair_until)).copy()
    limit = np.asarray(jax.device_get(carry.limit)).copy()
    for b, decision in decisions.items():
        clear[b] = True
        if decision.kind == "rewind":
            if len(decision.banned) > max_bans:
                raise DecoderError(
                    f"shielded loop: {len(decision.banned)} bans at one position exceed the "
                    f"{max_bans} ban slots."
                )
            rewind_rows[b] = True
            targets[b] = starts[b] + decision.target
            ban_position[b] = targets[b]
            ban_tokens[b] = -1
            ban_tokens[b, : len(decision.banned)] = decision.banned
            repair[b] = starts[b] + decision.repair_until
            limit[b] = starts[b] + decision.limit
        elif decision.kind == "finish":
            finish_codes[b] = decision.code
    state = _rewind_rows(state, jax.device_put(targets), jax.device_put(rewind_rows))
    for code in np.unique(finish_codes[finish_codes > 0]):
        state = finish_rows(state, int(code), jax.device_put(finish_codes == code))
    carry = dataclasses.replace(
        carry,
        event=_cleared(carry.event, jax.device_put(clear)),
        ban_position=jax.device_put(ban_position),
        ban_tokens=jax.device_put(ban_tokens),
        repair_until=jax.device_put(repair),
        limit=jax.device_put(limit),
    )
    return state, carry


# The host's updates between device rounds, each one compiled program: run eagerly they were a
# dozen small programs, every one lowered and fetched from the compilation cache at each start.
_rewind_rows = jax.jit(rewind)


@functools.partial(jax.jit, static_argnums=1)
def _finish_running(state: DecodeState, code: int) -> DecodeState:
    """Every row still running finished with ``code``."""
    return finish(state, code, state.finish == RUNNING)


@jax.jit
def _cleared(event: jax.Array, rows: jax.Array) -> jax.Array:
    """``event`` with the answered rows' events cleared."""
    return jnp.where(rows, 0, event)


def _release_streams(
    host: EventHost,
    streams: Sequence[TextStream],
    state: DecodeState,
    carry: ShieldCarry,
    finish_codes: np.ndarray,
    starts: np.ndarray,
    verdicts: Verdicts | None,
) -> None:
    """Stream, for every running row, the text that can no longer be rolled back."""
    tokens, cursors, history = jax.device_get((state.tokens, state.cursor, carry.history))
    for b, text_stream in enumerate(streams):
        if finish_codes[b] != RUNNING:
            continue
        kept = [int(t) for t in tokens[b, starts[b] : cursors[b]]]
        states = monitor_states(history[b], starts[b], cursors[b])
        pending = verdicts.pending(b) if verdicts is not None else ()
        released = host.release(b, kept, states, pending)
        text_stream.update(host.machine.judge.detokenize(kept[:released]))


def _answer(
    host: EventHost,
    state: DecodeState,
    carry: ShieldCarry,
    waiting: list[int],
    starts: np.ndarray,
    max_bans: int,
    verdicts: Verdicts | None = None,
) -> tuple[DecodeState, ShieldCarry]:
    """Answer the events of every waiting row, scoring their classifier windows in one batch
    (with a verdict queue, every pending verdict of a waiting row was delivered before)."""
    tokens, cursors, history, rejected, events = jax.device_get(
        (state.tokens, state.cursor, carry.history, carry.rejected, carry.event)
    )
    judge = host.machine.judge
    kept_rows = {b: [int(t) for t in tokens[b, starts[b] : cursors[b]]] for b in waiting}
    windows = []
    for b, kept in kept_rows.items():
        if events[b] in (EVENT_WINDOW, EVENT_LENGTH):
            windows.extend(judge.closed_windows(kept))
        if events[b] in (EVENT_EOS, EVENT_LENGTH):
            windows.extend(judge.open_windows(kept))
    judge.prefetch(windows)
    decisions = {}
    for b, kept in kept_rows.items():
        states = monitor_states(history[b], starts[b], cursors[b])
        decisions[b] = host.on_event(b, int(events[b]), kept, int(rejected[b]), states)
        if verdicts is not None and decisions[b].kind == "rewind":
            verdicts.rewound(b, decisions[b].target)
    judge.forget()
    return apply_decisions(state, carry, decisions, starts, max_bans)


def run_host_loop(
    host: EventHost,
    params: Params,
    config: ModelConfig,
    sampling: SamplingConfig,
    loop: LoopConfig,
    tables: ShieldTables,
    state: DecodeState,
    carry: ShieldCarry,
    *,
    chunk: int,
    rounds: int,
    streams: Sequence[TextStream] = (),
    verdicts: Verdicts | None = None,
) -> tuple[DecodeState, ShieldCarry]:
    """Alternate device steps and host answers until every row has finished.

    Args:
        host: the rows' reference configurations and the machine.
        params: the weights. config: the model's shapes. sampling: the sampling rule.
        loop: the static shielded-loop configuration. tables: the shield's device tables.
        state: the prefilled decode state. carry: the shielded loop's carry.
        chunk: the most device steps between host synchronisations.
        rounds: fuel: the most rounds (device runs or answers); rows still running when it is
            spent finish with ``budget`` (fail closed).
        streams: one text stream per real row (streaming), or none.
        verdicts: the queue that scores classifier windows off the critical path (the device
            loop must then not stop at windows), or None for the synchronous path.

    Returns:
        The finished state and carry.
    """
    starts = np.asarray(jax.device_get(state.start))
    slots = state.max_slots
    for _ in range(rounds):
        if verdicts is not None:
            state, carry = verdicts.collect(host, state, carry, starts, loop.max_bans)
        finish_codes, events = jax.device_get((state.finish, carry.event))
        if streams:
            _release_streams(host, streams, state, carry, finish_codes, starts, verdicts)
        if bool((finish_codes != RUNNING).all()):
            return state, carry
        running = finish_codes == RUNNING
        waiting = [b for b in range(state.batch_size) if running[b] and events[b] != EVENT_NONE]
        if waiting:
            state, carry = _answer(host, state, carry, waiting, starts, loop.max_bans, verdicts)
            continue
        cursors = np.asarray(jax.device_get(state.cursor))
        top = int(cursors[running].max())
        # The smallest power-of-two attention window that covers the chunk, as plain decoding picks.
        window = attention_window(top + chunk - 1, slots)
        steps = max(1, min(chunk, window - top + 1))
        if verdicts is not None:
            verdicts.tick()
        state, carry, _ = shielded_loop(
            params, config, sampling, loop, tables, state, carry, np.int32(steps), window=window
        )
    return _finish_running(state, FINISH_BUDGET), carry
