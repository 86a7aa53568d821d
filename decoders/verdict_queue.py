"""Classifier verdicts off the critical path: windows scored on a worker thread while the device decodes.

With the synchronous path, every classifier window that closes (a sentence end, a full window of
tokens) stops its row: the device loop returns, the host scores the window, and only then does
the row go on. Here the device never stops for a window. After each device run the host finds the
windows that the new tokens closed, hands their texts to a worker thread
(:class:`concurrent.futures.ThreadPoolExecutor`; the scorers are CPU Python, and the main thread
spends a device run waiting on XLA, without the GIL), and starts the next run at once. Verdicts
are collected, oldest first per row, after the next run: a window submitted before the last device
run that has no verdict yet is waited for, so a verdict arrives at most ``2 * chunk - 1`` tokens
after its window closed (:func:`verdict_delay`). Before the host answers a row's event, every
pending verdict of that row is collected.

The queue only schedules scoring; what a verdict does is the reference machine's
(:meth:`shield.reference.Machine.verdict`): a safe one is dropped, an unsafe one rolls back as the
synchronous check would have at the window's end (``proofs/soundness.md``, delayed verdicts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import jax
import numpy as np

from decoders.host_loop import Decision, EventHost, apply_decisions, monitor_states
from decoders.shielded_loop import EVENT_EOS, EVENT_NONE, EVENT_VIOLATION, ShieldCarry
from decoders.state import RUNNING, DecodeState
from shield.classifiers import score
from shield.judge import Judge, Window
from shield.lifting import MonitorState

__all__ = ["Pending", "VerdictQueue", "collect_verdicts", "verdict_delay"]


def verdict_delay(chunk: int) -> int:
    """d: the most tokens a row decodes after a window closes before its verdict is applied.

    A window closed by the first step of a device run waits for the rest of that run (at most
    ``chunk - 1`` tokens), is scored during the next run (``chunk`` tokens) and is applied after it.

    Example:
        >>> verdict_delay(32)
        63
    """
    return 2 * chunk - 1


@dataclasses.dataclass(frozen=True)
class Pending:
    """A window handed to the worker: its score arrives in ``future``.

    Attributes:
        window: the classifier window (response positions ``[start, end)``).
        future: its score.
        run: the device run after which it was submitted.
    """

    window: Window
    future: Future[float]
    run: int


def _score_one(scorer: str, text: str) -> float:
    return score(scorer, [text])[0]


class VerdictQueue:
    """Per row, the windows awaiting their verdict, in the order they closed.

    Args:
        judge: the shield bound to the vocabulary (finds the windows, receives the scores).
        batch: the number of rows.

    Example:
        >>> queue = VerdictQueue(judge, batch=4)  # doctest: +SKIP
        >>> queue.scan(0, kept_tokens)  # doctest: +SKIP
        >>> queue.close()  # doctest: +SKIP
    """

    def __init__(self, judge: Judge, batch: int) -> None:
        self.judge = judge
        self.rows: list[list[Pending]] = [[] for _ in range(batch)]
        self.scanned = [0] * batch  # response tokens of each row already searched for windows
        self.run = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shield-verdicts")

    def tick(self) -> None:
        """A device run is about to start: what was submitted so far becomes overdue after it."""
        self.run += 1

    def scan(self, row: int, kept: Sequence[int]) -> None:
        """Submit the windows that the row's tokens after the last scan closed.

        Args:
            row: the row.
            kept: the row's response tokens on the device now.
        """
        start = min(self.scanned[row], len(kept))
        for end in range(start + 1, len(kept) + 1):  # bounded by the new tokens
            for window in self.judge.closed_windows(kept[:end]):
                if window.text.strip():  # blank windows are safe without a score
                    future = self._executor.submit(_score_one, window.rule.scorer, window.text)
                    self.rows[row].append(Pending(window, future, self.run))
        self.scanned[row] = len(kept)

    def pending(self, row: int) -> tuple[Window, ...]:
        """The row's windows without a delivered verdict, oldest first."""
        return tuple(item.window for item in self.rows[row])

    def next_ready(self, row: int, *, wait: bool) -> Window | None:
        """The row's oldest window, its score stored in the judge, when it may be delivered now.

        It may when its score is in, or (waiting) when it is overdue or ``wait`` is set, in
        which case this blocks until the worker has scored it.

        Raises:
            ClassifierError: the scorer failed (fail closed).
        """
        if not self.rows[row]:
            return None
        oldest = self.rows[row][0]
        if not (wait or oldest.run < self.run or oldest.future.done()):
            return None
        self.judge.remember(oldest.window, oldest.future.result())
        return oldest.window

    def delivered(self, row: int) -> None:
        """The row's oldest verdict was delivered."""
        self.rows[row].pop(0)

    def rewound(self, row: int, target: int) -> None:
        """The row went back to ``target`` tokens: windows past it are void, tokens rescanned."""
        self.rows[row] = [item for item in self.rows[row] if item.window.end <= target]
        self.scanned[row] = min(self.scanned[row], target)

    def collect(
        self,
        host: EventHost,
        state: DecodeState,
        carry: ShieldCarry,
        starts: np.ndarray,
        max_bans: int,
    ) -> tuple[DecodeState, ShieldCarry]:
        """After a device run (see :func:`collect_verdicts`)."""
        return collect_verdicts(self, host, state, carry, starts, max_bans)

    def close(self) -> None:
        """Stop the worker (waiting for what it is scoring)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _deliver(
    host: EventHost,
    verdicts: VerdictQueue,
    row: int,
    kept: list[int],
    states: tuple[MonitorState, ...],
    *,
    event: int,
) -> Decision | None:
    """Deliver the row's verdicts that are in (all of them when the row waits on ``event``),
    oldest first.

    Returns:
        The decision of the first unsafe verdict (a rewind or a stop), or None when every
        delivered verdict was safe.
    """
    for _ in range(len(verdicts.rows[row])):  # bounded: each round delivers one window
        window = verdicts.next_ready(row, wait=event != EVENT_NONE)
        if window is None:
            return None
        verdicts.delivered(row)
        decision = host.on_verdict(row, kept, states, window)
        if decision.kind != "continue":
            # What the synchronous path never decoded: the tokens after the window, and the
            # sampled token the row waits with (a violation or EOS, never appended).
            sampled = 1 if event in (EVENT_VIOLATION, EVENT_EOS) else 0
            host.speculative[row] += len(kept) - window.end + sampled
            if decision.kind == "rewind":
                verdicts.rewound(row, decision.target)
            return decision
    return None


def collect_verdicts(
    verdicts: VerdictQueue,
    host: EventHost,
    state: DecodeState,
    carry: ShieldCarry,
    starts: np.ndarray,
    max_bans: int,
) -> tuple[DecodeState, ShieldCarry]:
    """After a device run: submit the windows the new tokens closed, deliver the verdicts that
    are in or overdue (all of a row that waits for an answer to an event), apply the rollbacks."""
    tokens, cursors, history, finishes, events = jax.device_get(
        (state.tokens, state.cursor, carry.history, state.finish, carry.event)
    )
    decisions = {}
    for b in range(state.batch_size):
        if finishes[b] != RUNNING:
            continue
        kept = [int(t) for t in tokens[b, starts[b] : cursors[b]]]
        verdicts.scan(b, kept)
        if not verdicts.rows[b]:
            continue
        states = monitor_states(history[b], starts[b], cursors[b])
        decision = _deliver(host, verdicts, b, kept, states, event=int(events[b]))
        if decision is not None:
            decisions[b] = decision
    if not decisions:
        return state, carry
    return apply_decisions(state, carry, decisions, starts, max_bans)
