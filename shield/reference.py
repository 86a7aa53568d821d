"""The reference decoder: the four strategies as a transition system over any next-token function.

This is the executable specification of shielded decoding. A :class:`Machine` is a pure transition
system: a frozen :class:`Config` per decoding state, an :meth:`Machine.action` saying what the
decoder must do next (read a forced prefill token, choose a token among the allowed ones, or check
the end of the text), and transitions that return the next configuration or a :class:`Finished`
result. :func:`reference_generate` drives it with a model (slow, simple, model-agnostic: one host
step per token, no cache); ``proofs/model_checker.py`` drives it with *every* possible token at
every choice, which explores the behaviour of all models at once on small instances. The JAX
decoder in ``decoders`` must agree with it token for token (``tests/decoders``).

Semantics, per response position ``p`` (see ``proofs/`` for the theorems):

- the token is forced from the prefill while ``p < len(prefill)`` and the row has not rewound;
  otherwise it is drawn from the logits with the bans at ``p`` removed, and (strategy ``mask``, or
  ``backtrack`` while repairing a failed segment) with every token that would make an automaton
  rule fire removed; the random key is derived from ``(seed, p, attempt)``;
- ``backtrack``/``reset``: the monitor reads the token's bytes; a violation, an unsafe classifier
  window, or a failed end-of-text check is a :class:`~shield.controller.Failure`, handed to
  :func:`~shield.controller.plan_rewind`; on exhaustion the row stops at its last accepted state
  (``budget``) or returns the refusal (``refused``);
- ``none``/``mask``: nothing is rewound; violations of the final text are reported as events.

Delayed classifier verdicts (``ReferenceSettings.verdict_delay = d > 0``): a classifier window
closed by a token is not judged at once but joins ``Config.pending``; decoding goes on, and the
window's verdict is delivered in order (:meth:`Machine.verdict`) at most ``d`` tokens later, and
always before an event is answered (EOS, an automaton violation, the length limit, a stuck row).
An unsafe verdict rolls back exactly as the synchronous check would have at the window's end
(:meth:`Machine.late_failure`): same failure, same plan, same bans and attempt, so the same final
text and events; the tokens decoded meanwhile are discarded too (one rewind moves the cursor back
at most ``R + d`` tokens). Text is released, and returned, only once every window in it has its
verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from shield.checkpoints import is_checkpoint
from shield.controller import Exhausted, Failure, RowTrace, plan_rewind
from shield.judge import Judge, Window, token_index
from shield.lifting import MonitorState
from shield.result import (
    REWINDING_STRATEGIES,
    STRATEGIES,
    Event,
    GenerationResult,
    GenerationStats,
    TextStream,
)
from shield.sampling import SamplingConfig, sample_token

__all__ = [
    "Choose",
    "Config",
    "Finished",
    "Machine",
    "ReferenceSettings",
    "Sampler",
    "reference_generate",
]

NextLogits = Callable[[Sequence[int]], np.ndarray]
#: ``sampler(logits, blocked, position, attempt) -> token``: draws one token that is not blocked.
Sampler = Callable[[np.ndarray, np.ndarray, int, int], int]


@dataclass(frozen=True, kw_only=True)
class ReferenceSettings:
    """Static settings of one reference generation.

    Attributes:
        strategy: ``backtrack``, ``reset``, ``mask`` or ``none``.
        max_new_tokens: N, the most tokens generated after the prefill: the response holds at most
            ``len(prefill) + N`` tokens.
        sampling: temperature, top-k and top-p.
        seed: the row's seed; draws are keyed by ``(seed, position, attempt)``.
        repair_mask: while regenerating a failed segment, remove tokens that would make an
            automaton rule fire (``backtrack`` only).
        verdict_delay: d, the most tokens decoded after a classifier window closes before its
            verdict is delivered (0: judged when it closes, synchronously).
    """

    strategy: str = "backtrack"
    max_new_tokens: int = 64
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int = 0
    repair_mask: bool = True
    verdict_delay: int = 0

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


class Machine:
    """The transition system of one row.

    Args:
        judge: the compiled shield bound to the vocabulary.
        eos_ids: the end-of-sequence token id, or several.
        settings: strategy and bounds.
        prefill: forced response start (token ids).
        encode: turns the refusal text into token ids (for ``on_exhausted = "refuse"``).
    """

    def __init__(
        self,
        judge: Judge,
        eos_ids: int | Sequence[int],
        settings: ReferenceSettings,
        prefill: Sequence[int] = (),
        encode: Callable[[str], Sequence[int]] | None = None,
    ) -> None:
        self.judge = judge
        self.eos_ids = (eos_ids,) if isinstance(eos_ids, int) else tuple(eos_ids)
        self.settings = settings
        self.prefill = tuple(int(t) for t in prefill)
        self.encode = encode
        self.policy = judge.policy
        self.limit = len(self.prefill) + settings.max_new_tokens
        self.shielded = settings.strategy in REWINDING_STRATEGIES
        self.never = judge.never(self.eos_ids)
        # Each transition is a model step, a forced token or a rewind, and every rewind discards
        # at least one token: this bounds the transitions of any run (termination, proofs/).
        # Delayed verdicts add at most d wasted tokens per rewind and one delivery per window.
        delay = settings.verdict_delay
        budget = self.policy.max_discarded_tokens
        tokens = len(self.prefill) + settings.max_new_tokens + (delay + 1) * budget
        windows = len(judge.classifier_rules) * tokens if delay else 0
        self.fuel = settings.max_new_tokens + 2 * budget + len(self.prefill) + 2
        self.fuel += delay * budget + windows

    def initial(self) -> Config:
        """The configuration before the first token."""
        return Config(states=(self.judge.initial(),))

    def action(self, config: Config) -> Literal["end"] | int | Choose:
        """What comes next: ``"end"`` (the response is full), a forced token id, or a :class:`Choose`."""
        position = len(config.kept)
        if position >= self.limit:
            return "end"
        if config.attempt == 0 and position < len(self.prefill):
            return self.prefill[position]
        blocked = self.never.copy()
        for banned in config.trace.banned_at(position):
            blocked[banned] = True
        repairing = self.settings.strategy == "backtrack" and position < config.repair_until
        if self.settings.strategy == "mask" or repairing:
            violating = ~self.judge.allowed(config.states[-1], self.eos_ids)
            if not (violating | blocked).all():
                blocked = blocked | violating
        return Choose(blocked=blocked)

    # -- transitions ------------------------------------------------------------------------------

    def read(self, config: Config, token: int, *, forced: bool) -> Config | Finished:
        """The decoder produced ``token`` (sampled, or forced from the prefill).

        With delayed verdicts, the verdicts that are due (``d`` tokens old) are delivered first,
        and every pending one before the token raises an event; an unsafe one rolls back and the
        token is discarded unread.
        """
        config = (
            replace(config, forced=config.forced + 1)
            if forced
            else replace(config, steps=config.steps + 1)
        )
        settled = self.settle(config, everything=False)
        if settled is not config:
            if not isinstance(settled, Config) or settled.attempt != config.attempt:
                return settled
            config = settled
        if token in self.eos_ids:
            settled = self.settle(config, everything=True)
            if not isinstance(settled, Config) or settled.attempt != config.attempt:
                return settled
            config = settled
            failure = (
                self.judge.end_failure(config.kept, config.states[-1], (token,))
                if self.shielded
                else None
            )
            return self.finish(config, "eos") if failure is None else self.fail(config, failure)
        state, violation = self.judge.feed(config.states[-1], token, config.kept)
        if self.shielded and violation is not None:
            settled = self.settle(config, everything=True)
            if not isinstance(settled, Config) or settled.attempt != config.attempt:
                return settled
            config = settled
            tokens = (*config.kept, token)
            start = token_index(self.judge.token_bytes, tokens, violation.start)
            return self.fail(config, Failure(tokens=tokens, start=start, rule=violation.rule))
        config = replace(config, kept=(*config.kept, token), states=(*config.states, state))
        if not self.shielded:
            return config
        if self.settings.verdict_delay:
            closed = tuple(self.judge.closed_windows(config.kept))
            return replace(config, pending=config.pending + closed) if closed else config
        window_failure = self.judge.closed_window_failure(config.kept)
        return config if window_failure is None else self.fail(config, window_failure)

    def end(self, config: Config) -> Config | Finished:
        """The response is full: check that the text may end here (every verdict first)."""
        settled = self.settle(config, everything=True)
        if not isinstance(settled, Config) or settled.attempt != config.attempt:
            return settled
        config = settled
        failure = (
            self.judge.end_failure(config.kept, config.states[-1], ()) if self.shielded else None
        )
        return self.finish(config, "length") if failure is None else self.fail(config, failure)

    def stuck(self, config: Config) -> Config | Finished:
        """Every token is banned at this position: a failure of the prefix, or exhaustion."""
        settled = self.settle(config, everything=True)
        if not isinstance(settled, Config) or settled.attempt != config.attempt:
            return settled
        config = settled
        if not config.kept:
            return self.exhausted(
                config, Failure(tokens=(self.eos_ids[0],), start=0, rule="no-allowed-token")
            )
        kept = config.kept
        return self.fail(config, Failure(tokens=kept, start=len(kept) - 1, rule="no-allowed-token"))

    # -- delayed classifier verdicts --------------------------------------------------------------

    def due(self, config: Config) -> bool:
        """Whether the oldest pending verdict must be delivered before another token is read."""
        return bool(config.pending) and (
            len(config.kept) - config.pending[0].end >= self.settings.verdict_delay
        )

    def verdict(self, config: Config) -> Config | Finished:
        """Deliver the oldest pending verdict: drop the window when safe, else roll back for it.

        Raises:
            ValueError: nothing is pending.
            ClassifierError: the window's scorer failed (fail closed).
        """
        if not config.pending:
            raise ValueError("verdict: no classifier window is pending")
        window = config.pending[0]
        if self.judge.unsafe([window]) is None:
            return replace(config, pending=config.pending[1:])
        return self.late_failure(config, window)

    def late_failure(self, config: Config, window: Window) -> Config | Finished:
        """Roll back for an unsafe ``window`` of ``config.kept`` as if it had been judged when it
        closed: the failure and the plan are those of the synchronous check at ``window.end``,
        and the tokens decoded since are discarded with it."""
        end = window.end
        tokens = config.kept[:end]
        at_close = replace(config, kept=tokens, states=config.states[: end + 1], pending=())
        failure = Failure(tokens=tokens, start=min(window.start, end - 1), rule=window.rule.id)
        return self.fail(at_close, failure)

    def settle(self, config: Config, *, everything: bool) -> Config | Finished:
        """Deliver the due verdicts (every pending one when ``everything``), oldest first,
        stopping at the first one that rolls back or ends the row.

        Returns:
            ``config`` itself when nothing was pending or due, else the configuration after
            the deliveries (rewound when a verdict was unsafe) or the finished row.
        """
        current: Config | Finished = config
        for _ in range(len(config.pending)):  # bounded: each delivery removes a window
            if not isinstance(current, Config) or current.attempt != config.attempt:
                break
            if not current.pending or not (everything or self.due(current)):
                break
            current = self.verdict(current)
        return current

    def fail(self, config: Config, failure: Failure) -> Config | Finished:
        """Plan and apply a rewind for ``failure``, or stop when the budget is spent."""
        plan = plan_rewind(
            config.trace,
            failure,
            self.policy,
            lambda p: is_checkpoint(
                self.judge.token_bytes_of(failure.tokens), p, self.policy.checkpoint
            ),
            restart=self.settings.strategy == "reset",
        )
        end = len(failure.tokens)
        if isinstance(plan, Exhausted):
            event = Event(
                kind="exhausted", rule=failure.rule, from_token=end, to_token=0, detail=plan.reason
            )
            return self.exhausted(replace(config, events=(*config.events, event)), failure)
        event = Event(kind="rollback", rule=failure.rule, from_token=end, to_token=plan.target)
        repairing = self.settings.strategy == "backtrack" and self.settings.repair_mask
        return replace(
            config,
            kept=config.kept[: plan.target],
            states=config.states[: plan.target + 1],
            pending=tuple(w for w in config.pending if w.end <= plan.target),
            trace=plan.trace,
            attempt=config.attempt + 1,
            repair_until=max(config.repair_until, end) if repairing else config.repair_until,
            events=(*config.events, event),
        )

    def exhausted(self, config: Config, failure: Failure) -> Finished:
        """Stop at the last accepted state, or refuse, as the policy says."""
        if (
            self.policy.on_exhausted == "refuse"
            and self.encode is not None
            and self.judge.refusal_passes()
        ):
            return Finished(
                tokens=tuple(self.encode(self.policy.refusal)),
                text=self.policy.refusal,
                reason="refused",
                config=config,
            )
        keep = self.judge.safe_prefix(
            config.kept, config.states, limit=min(failure.start, len(config.kept))
        )
        keep = max(keep, config.released)  # released text passed every check when it was released
        return self.finish(
            replace(config, kept=config.kept[:keep], states=config.states[: keep + 1]), "budget"
        )

    def release(self, config: Config) -> Config:
        """Advance ``released`` to the longest prefix that nothing can take back any more.

        A prefix ``kept[:t]`` is final when (a) no future rewind can reach it: rewinds discard at
        most the remaining budget ``r`` in total, so ``t <= len(kept) - r``; (b) a stop on exhaustion
        may end the text there: ``t`` is a checkpoint, a boundary of every classifier window, and
        the text passes the END check there. A refusal replaces the whole response, so with
        ``on_exhausted = "refuse"`` nothing is released before the end. Strategies that never
        rewind release everything at once. With delayed verdicts, only the text before the first
        pending window counts: a late verdict rewinds as if the text ended with that window.
        """
        kept = config.kept[: min((w.start for w in config.pending), default=len(config.kept))]
        if not self.shielded:
            return replace(config, released=len(kept))
        if self.policy.on_exhausted == "refuse":
            return config
        remaining = self.policy.max_discarded_tokens - config.trace.discarded
        pieces = self.judge.token_bytes_of(kept)
        for t in range(min(len(kept) - remaining, len(kept) - 1), config.released, -1):
            if not is_checkpoint(
                pieces, t, self.policy.checkpoint
            ) or not self.judge.window_boundary(kept, t):
                continue
            if self.judge.end_violation(kept[:t], config.states[t]) is None:
                return replace(config, released=t)
        return config

    def finish(self, config: Config, reason: str) -> Finished:
        """The generation ends with ``config.kept``."""
        if not self.shielded:
            config = replace(config, events=(*config.events, *self.judge.report(config.kept)))
        return Finished(
            tokens=config.kept,
            text=self.judge.detokenize(config.kept),
            reason=reason,
            config=config,
        )


def reference_generate(
    next_logits: NextLogits,
    prompt: Sequence[int],
    *,
    judge: Judge,
    eos_id: int,
    settings: ReferenceSettings,
    prefill: Sequence[int] = (),
    encode: Callable[[str], Sequence[int]] | None = None,
    stream: Callable[[str], None] | None = None,
    sampler: Sampler | None = None,
) -> GenerationResult:
    """Generate one response with the reference decoder.

    Args:
        next_logits: maps the token prefix (prompt + response so far) to logits over the vocabulary.
        prompt: the prompt's token ids (never rolled back, never scanned).
        judge: the compiled shield bound to the vocabulary (see :class:`shield.judge.Judge`).
        eos_id: the end-of-sequence token id.
        settings: strategy, bounds and sampling.
        prefill: token ids forced at the start of the response (part of the response).
        encode: turns the refusal text into token ids (needed for ``on_exhausted = "refuse"``).
        stream: called with each piece of text as soon as it can no longer be rolled back.
        sampler: draws a token from the logits with the blocked tokens removed, given the
            response position and the attempt; by default :func:`~shield.sampling.sample_token`
            with ``settings.sampling`` and ``settings.seed``. Differential tests pass the device
            decoder's own draw, so that both decoders can be compared under sampling.

    Returns:
        The :class:`~shield.result.GenerationResult`.

    Example:
        >>> result = reference_generate(model, [1, 2], judge=judge, eos_id=0, settings=ReferenceSettings())  # doctest: +SKIP
    """
    machine = Machine(judge, eos_id, settings, prefill, encode)
    return drive(machine, next_logits, prompt, stream=stream, sampler=sampler)


def drive(
    machine: Machine,
    next_logits: NextLogits,
    prompt: Sequence[int],
    *,
    stream: Callable[[str], None] | None = None,
    sampler: Sampler | None = None,
) -> GenerationResult:
    """Run one row's machine to the end, drawing from ``next_logits``: the one reference driver.

    :func:`reference_generate` and the transformers adapter (whose models may have several
    end-of-sequence ids) both run their machines through it.

    Args:
        machine: the row's transition system (judge, EOS ids, settings, prefill, encoder).
        next_logits: the logits after a token prefix (prompt + kept response).
        prompt: the prompt's token ids.
        stream: receives each piece of text as soon as it can no longer be rolled back.
        sampler: the draw (see :func:`reference_generate`); by default
            :func:`~shield.sampling.sample_token` keyed by the row's seed, position and attempt.

    Returns:
        The row's :class:`~shield.result.GenerationResult`.
    """
    started = time.perf_counter()
    settings = machine.settings
    current: Config | Finished = machine.initial()
    released = TextStream(stream) if stream is not None else None
    for _ in range(machine.fuel):  # every transition is a step, a forced token or a rewind
        if isinstance(current, Finished):
            break
        if released is not None:
            current = machine.release(current)
            released.update(machine.judge.detokenize(current.kept[: current.released]))
        action = machine.action(current)
        if action == "end":
            current = machine.end(current)
        elif isinstance(action, int):
            current = machine.read(current, action, forced=True)
        elif action.blocked.all():
            current = machine.stuck(current)
        else:
            logits = np.asarray(next_logits([*prompt, *current.kept]), dtype=np.float64)
            position, attempt = len(current.kept), current.attempt
            if sampler is not None:
                token = sampler(logits, action.blocked, position, attempt)
            else:
                token = sample_token(
                    logits,
                    action.blocked,
                    settings.sampling,
                    seed=settings.seed,
                    position=position,
                    attempt=attempt,
                )
            current = machine.read(current, token, forced=False)
    if not isinstance(current, Finished):  # unreachable by the termination theorem; fail closed
        failure = Failure(tokens=(machine.eos_ids[0],), start=0, rule="fuel")
        current = machine.exhausted(current, failure)
    if released is not None:
        released.close(current.text)
    config = current.config
    stats = GenerationStats.count(
        generated=config.steps,
        forced=config.forced,
        kept=len(current.tokens),
        ended_by_eos=current.reason == "eos",
        refused=current.reason == "refused",
        rollbacks=config.trace.rollbacks,
        max_rollback=config.trace.max_rollback,
        wall_seconds=time.perf_counter() - started,
    )
    return GenerationResult(
        text=current.text,
        finish_reason=current.reason,  # type: ignore[arg-type]
        tokens=current.tokens,
        stats=stats,
        events=config.events,
    )
