"""The host's answers to the device's events: each event replayed as a reference transition.

A row's host state is one frozen value: the reference :class:`~shield.machine_state.Config` after
its last transition. The device holds the row's kept tokens and monitor states; at an event they are
put into that configuration, the machine's transition (:class:`~shield.machine.Machine`) returns the
next one, and the row becomes it; the transition is turned into a :class:`Decision` for the device
(a rewind, a ban list, or a finish code). So the JAX decoder takes exactly the decisions of the
reference decoder, and each row decides alone: a row's answer never looks at another row. (Model
steps are counted on the device, ``ShieldCarry.steps``; a host configuration's ``steps`` counts
only the tokens the host has read.) :mod:`decoders.host_loop` runs the device and these answers in
turn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from decoders.shielded_loop import (
    EVENT_EOS,
    EVENT_LENGTH,
    EVENT_STUCK,
    EVENT_VIOLATION,
    EVENT_WINDOW,
)
from decoders.state import FINISH_BUDGET, FINISH_EOS, FINISH_LENGTH, FINISH_REFUSED
from shield.errors import DecoderError
from shield.judge import Judge, Window
from shield.lifting import MonitorState
from shield.machine import Machine
from shield.machine_state import Config, Finished

__all__ = ["Decision", "EventHost", "monitor_states", "states_along"]

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
        limit: the response length at which the row's response is full (``rewind``; see
            :attr:`shield.machine_state.Config.limit`).
        code: the finish code (``finish``).
    """

    kind: str
    target: int = 0
    banned: tuple[int, ...] = ()
    repair_until: int = 0
    limit: int = 0
    code: int = 0


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
            limit=after.limit,
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
