"""The host event loop of shielded decoding: device events in, cursor moves out.

The device (:func:`decoders.shielded_loop.shielded_loop`) decodes until a row raises an event; the
host answers every waiting row by replaying the event as a transition of the reference decoder's
:class:`~shield.reference.Machine`, and applies the answer to the device state as a cursor move
(a rewind), a ban list, or a finish code. So the JAX decoder takes exactly the decisions of the
reference decoder, and each row decides alone: a row's answer never looks at another row.

A row's host state is one frozen value: the reference :class:`~shield.reference.Config` after its
last transition. The device holds the row's kept tokens and monitor states; at an event they are
put into that configuration, the machine's transition returns the next one, and the row becomes
it. (Model steps are counted on the device, ``ShieldCarry.steps``; a host configuration's
``steps`` counts only the tokens the host has read.)

Classifier windows are judged off the critical path by default (:mod:`decoders.verdict_queue`):
the device does not stop when a window closes; the host scores the windows of each device run on
a worker thread during the next run and delivers the verdicts, in order, as transitions of the
machine (:meth:`~shield.reference.Machine.verdict`), before it answers any event of the row. The
synchronous path (the device stops at every window, ``EVENT_WINDOW``) stays selectable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from decoders.config import ModelConfig
from decoders.model import Params
from decoders.sampling import SamplingConfig
from decoders.shield_tables import ShieldTables
from decoders.shielded_loop import (
    EVENT_EOS,
    EVENT_LENGTH,
    EVENT_NONE,
    EVENT_STUCK,
    EVENT_VIOLATION,
    EVENT_WINDOW,
    LoopConfig,
    ShieldCarry,
    shielded_loop,
)
from decoders.state import (
    FINISH_BUDGET,
    FINISH_EOS,
    FINISH_LENGTH,
    FINISH_REFUSED,
    RUNNING,
    DecodeState,
    finish,
    rewind,
)
from decoders.step import attention_window
from shield.errors import DecoderError
from shield.judge import Judge, Window
from shield.lifting import MonitorState
from shield.reference import Config, Finished, Machine
from shield.result import TextStream

__all__ = [
    "Decision",
    "EventHost",
    "Verdicts",
    "apply_decisions",
    "monitor_states",
    "run_host_loop",
    "states_along",
]

#: The finish code of a row whose reference run ended with this reason.
_FINISH_CODES = {
    "eos": FINISH_EOS,
    "length": FINISH_LENGTH,
    "budget": FINISH_BUDGET,
    "refused": FINISH_REFUSED,
}


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the device does to one row after the host answered its event.

    Attributes:
        kind: ``"continue"``, ``"rewind"`` or ``"finish"``.
        target: the response length to rewind to (``rewind``).
        banned: tokens banned at ``target`` (``rewind``).
        repair_until: positions before this one are generated with the repair mask (``rewind``).
        code: the finish code (``finish``).
    """

    kind: str
    target: int = 0
    banned: tuple[int, ...] = ()
    repair_until: int = 0
    code: int = 0


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


def states_along(judge: Judge, tokens: Sequence[int]) -> tuple[MonitorState, ...]:
    """The monitor states after each prefix of ``tokens`` (``len(tokens) + 1`` of them)."""
    states = [judge.initial()]
    for token in tokens:
        states.append(judge.feed(states[-1], token)[0])
    return tuple(states)


def monitor_states(history: np.ndarray, start: int, cursor: int) -> tuple[MonitorState, ...]:
    """The monitor states after each prefix of a row's response, read from the device history
    (``history``: ``[S + 1, C]``, one row of ``ShieldCarry.history``)."""
    return tuple(tuple(int(s) for s in column) for column in history[start : cursor + 1])


class EventHost:
    """Answers the device's events with the reference decoder's own transitions.

    Args:
        machine: the reference transition system of this generation.
        batch: the number of rows.

    Attributes:
        rows: each row's reference configuration after its last transition (frozen values).
        finals: the reference result of each row that stopped at its last accepted state or
            refused (these rows return the machine's tokens, not the device's).
    """

    def __init__(self, machine: Machine, batch: int) -> None:
        self.machine = machine
        self.rows: list[Config] = [machine.initial()] * batch
        self.finals: dict[int, Finished] = {}
        self.speculative = [0] * batch  # model steps thrown away by late verdicts

    def configuration(
        self,
        row: int,
        kept: Sequence[int],
        states: Sequence[MonitorState] | None = None,
        pending: Sequence[Window] = (),
    ) -> Config:
        """Row ``row``'s configuration with the device's tokens (states recomputed when absent)
        and the windows still awaiting a verdict."""
        if states is None:
            states = states_along(self.machine.judge, kept)
        return dataclasses.replace(
            self.rows[row], kept=tuple(kept), states=tuple(states), pending=tuple(pending)
        )

    def release(
        self,
        row: int,
        kept: Sequence[int],
        states: Sequence[MonitorState],
        pending: Sequence[Window] = (),
    ) -> int:
        """Advance the row's released prefix (see :meth:`shield.reference.Machine.release`); no
        text from the first window still awaiting its verdict on is released.

        Returns:
            The number of kept tokens that can no longer be rolled back.
        """
        self.rows[row] = self.machine.release(self.configuration(row, kept, states, pending))
        return self.rows[row].released

    def on_verdict(
        self, row: int, kept: Sequence[int], states: Sequence[MonitorState], window: Window
    ) -> Decision:
        """Deliver the verdict of the row's oldest pending ``window`` (its score is in the judge).

        Raises:
            ClassifierError: the scorer failed. DecoderError: a disagreement with the reference.
        """
        before = self.configuration(row, kept, states, (window,))
        return self.settle(row, before, self.machine.verdict(before), appended=False)

    def settle(
        self, row: int, before: Config, after: Config | Finished, *, appended: bool
    ) -> Decision:
        """Make ``after`` the row's configuration and turn the transition into a device decision.

        Raises:
            DecoderError: the device appended a token the reference did not, or the reverse.
        """
        if isinstance(after, Finished):
            self.rows[row] = after.config
            if after.reason in ("budget", "refused"):
                self.finals[row] = after
            return Decision(kind="finish", code=_FINISH_CODES[after.reason])
        self.rows[row] = after
        if after.attempt == before.attempt:
            if appended != (len(after.kept) == len(before.kept) + 1):
                raise DecoderError(
                    "shielded loop: the device and the reference disagree on a token."
                )
            return Decision(kind="continue")
        target = len(after.kept)
        return Decision(
            kind="rewind",
            target=target,
            banned=tuple(sorted(after.trace.banned_at(target))),
            repair_until=after.repair_until,
        )

    def on_event(
        self,
        row: int,
        event: int,
        kept: Sequence[int],
        rejected: int,
        states: Sequence[MonitorState],
    ) -> Decision:
        """Replay an event as a reference transition; ``states[i]`` is the state after ``kept[:i]``.

        Raises:
            DecoderError: an unknown event code, or a disagreement with the reference.
        """
        machine = self.machine
        if event == EVENT_STUCK:
            before = self.configuration(row, kept, states)
            return self.settle(row, before, machine.stuck(before), appended=False)
        if event in (EVENT_VIOLATION, EVENT_EOS):
            before = self.configuration(row, kept, states)
            after = machine.read(before, rejected, forced=False)
            return self.settle(row, before, after, appended=False)
        if event in (EVENT_WINDOW, EVENT_LENGTH):
            before = self.configuration(row, kept[:-1], states[:-1])
            after = machine.read(before, kept[-1], forced=False)
            # The response is full only if the read kept the token (no rewind): then END is read.
            if (
                event == EVENT_LENGTH
                and isinstance(after, Config)
                and after.attempt == before.attempt
            ):
                after = machine.end(after)
            return self.settle(row, before, after, appended=True)
        raise DecoderError(f"shielded loop: expected an event code in 1..5, received {event}.")

    def walk_prefill(
        self, row: int, prefill: Sequence[int]
    ) -> tuple[tuple[MonitorState, ...], Decision | None]:
        """Read a forced prefill token by token, exactly as the reference decoder does.

        Returns:
            The monitor states along the prefill that was read, and the decision when reading it
            failed (a rewind into the prefill, or a stop).
        """
        config = self.rows[row]
        for token in prefill:  # bounded by the prefill's length
            after = self.machine.read(config, token, forced=True)
            if isinstance(after, Config) and after.attempt == config.attempt:
                # The prefill is known before decoding starts: its windows are judged at once,
                # as the synchronous path does, whatever the verdict delay.
                after = self.machine.settle(after, everything=True)
            if not isinstance(after, Config) or after.attempt != config.attempt:
                return config.states, self.settle(row, config, after, appended=False)
            config = after
        self.rows[row] = config
        return config.states, None


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
        elif decision.kind == "finish":
            finish_codes[b] = decision.code
    state = rewind(state, jnp.asarray(targets), jnp.asarray(rewind_rows))
    for code in np.unique(finish_codes[finish_codes > 0]):
        state = finish(state, int(code), jnp.asarray(finish_codes == code))
    carry = dataclasses.replace(
        carry,
        event=jnp.where(jnp.asarray(clear), 0, carry.event),
        ban_position=jnp.asarray(ban_position),
        ban_tokens=jnp.asarray(ban_tokens),
        repair_until=jnp.asarray(repair),
    )
    return state, carry


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
            params, config, sampling, loop, tables, state, carry, jnp.int32(steps), window=window
        )
    return finish(state, FINISH_BUDGET, state.finish == RUNNING), carry
