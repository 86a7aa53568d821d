"""The values of the reference decoding machine: its settings, configurations and answers.

:class:`~shield.machine.Machine` (the transitions) moves from one frozen :class:`Config` to the next
under one :class:`ReferenceSettings`; :meth:`~shield.machine.Machine.action` answers with a forced
token, ``"end"`` or a :class:`Choose`, and a finished row is a :class:`Finished`. Every value is
hashable: the model checker (``proofs/model_checker.py``) uses configurations as graph nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shield.controller import RowTrace
from shield.judge import Window
from shield.lifting import MonitorState
from shield.result import STRATEGIES, Event
from shield.sampling import SamplingConfig

__all__ = ["Choose", "Config", "Finished", "ReferenceSettings"]


@dataclass(frozen=True, kw_only=True)
class ReferenceSettings:
    """Static settings of one reference generation.

    Attributes:
        strategy: ``backtrack``, ``reset``, ``mask`` or ``none``.
        max_new_tokens: N, the most tokens the model writes into a response: the response holds
            at most ``len(prefill) + N`` tokens, and a rewind into the prefill lowers that to the
            prefill tokens still kept plus N (:attr:`Config.limit`).
        sampling: temperature, top-k and top-p.
        seed: the row's seed; draws are keyed by ``(seed, position, attempt)``.
        repair_mask: while regenerating a failed segment, remove tokens that would make an
            automaton rule fire (``backtrack`` only).
        verdict_delay: d, the most tokens decoded after a classifier window closes before its
            verdict is delivered (0: judged when it closes, synchronously).
        narrow_windows: an unsafe classifier window fails from the checkpoint where the text
            became unsafe (the first prefix of the window, cut at a checkpoint, that the
            classifier scores unsafe; see :meth:`shield.machine.Machine.narrow`), not from the
            window's start, so a rewind regenerates the offending words rather than the whole
            window (``backtrack``; ``reset`` restarts anyway).
    """

    strategy: str = "backtrack"
    max_new_tokens: int = 64
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int = 0
    repair_mask: bool = True
    verdict_delay: int = 0
    narrow_windows: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}"
            )
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0; got {self.max_new_tokens}")
        if self.verdict_delay < 0:
            raise ValueError(f"verdict_delay must be >= 0; got {self.verdict_delay}")


@dataclass(frozen=True, kw_only=True)
class Config:
    """One configuration of the decoder (hashable: it is a node of the model checker's graph).

    Attributes:
        kept: the kept response tokens.
        states: the monitor state after each prefix of ``kept`` (``len(kept) + 1`` entries).
        trace: bans, retries and counters of the controller.
        attempt: rewinds so far (part of every random key).
        repair_until: positions before this one are generated with the repair mask.
        steps: tokens sampled so far (model steps). forced: prefill tokens read so far.
        events: rollbacks and exhaustion, in order.
        released: ``kept[:released]`` has been streamed; no rewind or stop may cut into it.
        pending: closed classifier windows of ``kept`` awaiting their verdict, in the order they
            closed (only with ``verdict_delay > 0``).
        limit: the response length at which the response is full: the prefill tokens kept plus
            N (``len(prefill) + N`` until a rewind moves before the prefill's end; a rewind to
            ``t`` lowers it to ``min(limit, t + N)``, so the model never writes more than N
            tokens of a response, as plain decoding after the prefill).
    """

    kept: tuple[int, ...] = ()
    states: tuple[MonitorState, ...] = ()
    trace: RowTrace = field(default_factory=RowTrace)
    attempt: int = 0
    repair_until: int = 0
    steps: int = 0
    forced: int = 0
    events: tuple[Event, ...] = ()
    released: int = 0
    pending: tuple[Window, ...] = ()
    limit: int = 0


@dataclass(frozen=True, kw_only=True)
class Finished:
    """A finished generation: the returned tokens and text, the reason, and the last configuration."""

    tokens: tuple[int, ...]
    text: str
    reason: str
    config: Config


@dataclass(frozen=True, kw_only=True)
class Choose:
    """The decoder must choose a token; ``blocked[t]`` says which ones it may not choose."""

    blocked: np.ndarray
