"""The reference decoder's transitions: the four strategies as a transition system of one row.

This is the executable specification of shielded decoding. A :class:`Machine` is a pure transition
system over the frozen values of :mod:`shield.machine_state`: a :class:`~shield.machine_state.Config`
per decoding state, an :meth:`Machine.action` saying what the decoder must do next (read a forced
prefill token, choose a token among the allowed ones, or check the end of the text), and
transitions that return the next configuration or a :class:`~shield.machine_state.Finished` result.
:func:`shield.reference.reference_generate` drives it with a model; ``proofs/model_checker.py``
drives it with *every* possible token at every choice; the JAX decoder's host loop
(``decoders/host_events.py``) replays the device's events as its transitions.

Semantics, per response position ``p`` (see ``proofs/`` for the theorems):

- the token is forced from the prefill while ``p < len(prefill)`` and the row has not rewound;
  otherwise it is drawn from the logits with the bans at ``p`` removed, and (strategy ``mask``, or
  ``backtrack`` while repairing a failed segment) with every token that would make an automaton
  rule fire removed; the random key is derived from ``(seed, p, attempt)``;
- ``backtrack``/``reset``: the monitor reads the token's bytes; a violation, an unsafe classifier
  window, or a failed end-of-text check is a :class:`~shield.controller.Failure`, handed to
  :func:`~shield.controller.plan_rewind`; on exhaustion the row stops at its last accepted state
  (``budget``) or returns the refusal (``refused``);
- an unsafe classifier window fails from where its text became unsafe (:meth:`Machine.narrow`:
  the first checkpoint-cut prefix of the window that the classifier scores unsafe), so a rewind
  takes back the offending words, not the whole window;
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

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from shield.checkpoints import is_checkpoint
from shield.controller import Exhausted, Failure, plan_rewind
from shield.judge import Judge, Window, token_index
from shield.machine_state import Choose, Config, Finished, ReferenceSettings
from shield.result import REWINDING_STRATEGIES, Event

__all__ = ["Machine"]


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
        return Config(states=(self.judge.initial(),), limit=self.limit)

    def action(self, config: Config) -> Literal["end"] | int | Choose:
        """What comes next: ``"end"`` (the response is full), a forced token id, or a :class:`Choose`."""
        position = len(config.kept)
        if position >= config.limit:
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

    def narrow(self, failure: Failure) -> Failure:
        """Move a classifier failure's start to where its window's text became unsafe.

        The window is ``failure.tokens[failure.start:]`` (without a final EOS). Its prefixes cut
        at the policy's checkpoints are scored in one batch; the failure starts at the checkpoint
        that begins the last piece of the first prefix scored unsafe (the whole window when no
        shorter prefix is). Everything before that checkpoint scored safe, so a rewind keeps it
        and regenerates only the words that tipped the score; the finished window is judged again
        when it closes. Automaton failures, other strategies and ``narrow_windows = False`` are
        returned unchanged. The start only moves later, within the window: rewinds stay within
        ``R`` and every theorem of ``proofs/`` holds as for the window's start.

        Args:
            failure: the failure, as the judge or :meth:`late_failure` built it.

        Returns:
            The same failure with ``start`` at the offending piece.

        Raises:
            ClassifierError: the scorer failed (fail closed).
        """
        rule = next((r for r in self.judge.classifier_rules if r.id == failure.rule), None)
        if rule is None or not self.settings.narrow_windows or self.settings.strategy == "reset":
            return failure
        tokens = failure.tokens
        end = len(tokens) - 1 if tokens[-1] in self.eos_ids else len(tokens)
        pieces = self.judge.token_bytes_of(tokens[:end])
        cuts = [
            p
            for p in range(failure.start + 1, end)  # bounded by the window's length
            if is_checkpoint(pieces, p, self.policy.checkpoint)
        ]
        windows = [
            Window(
                rule=rule,
                start=failure.start,
                end=p,
                text=self.judge.detokenize(tokens[failure.start : p]),
            )
            for p in cuts
        ]
        self.judge.prefetch(windows)
        previous = failure.start
        for window in windows:  # the first unsafe prefix; its last piece starts at ``previous``
            if self.judge.unsafe([window]) is not None:
                break
            previous = window.end
        return replace(failure, start=min(previous, len(tokens) - 1))

    def fail(self, config: Config, failure: Failure) -> Config | Finished:
        """Plan and apply a rewind for ``failure``, or stop when the budget is spent."""
        failure = self.narrow(failure)
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
            limit=min(config.limit, plan.target + self.settings.max_new_tokens),
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
