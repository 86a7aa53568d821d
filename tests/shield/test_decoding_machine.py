"""The reference decoder as a state machine: an adversary picks every token; the theorems of
``proofs/`` are invariants, checked after every transition.

The adversary picks tokens that make a rule fire (so rows fail, retry and run out of budget) or
any allowed token, and EOS rarely (so the row is running for most of the steps); a finished row is
restarted. Specs mix automaton rules, a whole word that END confirms and classifier rules; rows may
start with a forced prefill. :func:`test_decoding_machine` runs the machine and then asserts the
scenarios happened and that few steps were spent on a finished row. (A stuck row, every token
banned at a position, needs more retries than there are tokens here; the model checker's
``stuck`` instance reaches it.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import shield
from proofs.model_checker import CONTAINS_B
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.reference import Choose, Config, Finished, Machine, ReferenceSettings
from shield.rules import ClassifierRule, MatchOptions, RegexRule, WordsRule
from tests.shield.test_reference import EOS, VOCAB, encode, policies

RULE_POOL = (
    WordsRule(id="bad-word", words=("abc", "cab")),
    WordsRule(id="ba-word", words=("ba",), match=MatchOptions(whole_word=True)),
    RegexRule(id="b-run", pattern="b{3,}"),
    RegexRule(id="ca-dot", pattern="ca[.]"),
    ClassifierRule(id="no-b-sentence", scorer=CONTAINS_B, threshold=0.5),
    ClassifierRule(
        id="no-b-window", scorer=CONTAINS_B, threshold=0.5, scope="window", window_tokens=3
    ),
)
CLASSIFIER_IDS = frozenset(r.id for r in RULE_POOL if isinstance(r, ClassifierRule))

rule_sets = st.lists(st.sampled_from(RULE_POOL), min_size=1, max_size=3, unique_by=lambda r: r.id)
#: EOS one time in twenty (sampled_from picks an index uniformly).
rarely = st.sampled_from((False,) * 19 + (True,))


def _config(current: Config | Finished) -> Config:
    return current.config if isinstance(current, Finished) else current


def _observed(config: Config) -> tuple[dict[int, int], int]:
    """Retries per position and tokens discarded, read off the rollback events (not the trace)."""
    retries: dict[int, int] = {}
    discarded = 0
    for event in config.events:
        if event.kind == "rollback":
            retries = {p: n for p, n in retries.items() if p <= event.to_token}
            retries[event.to_token] = retries.get(event.to_token, 0) + 1
            discarded += event.from_token - event.to_token
    return retries, discarded


class DecodingMachine(RuleBasedStateMachine):
    """Model-based test: an adversary picks every token; the theorems are invariants."""

    #: Counts over every run of the machine (read by :func:`test_decoding_machine`).
    totals: ClassVar[Counter[str]] = Counter()

    @initialize(
        rules=rule_sets,
        policy=policies,
        strategy=st.sampled_from(["backtrack", "reset"]),
        max_new=st.integers(1, 10),
        prefill=st.lists(st.integers(1, len(VOCAB) - 1), max_size=4),
    )
    def setup(
        self,
        rules: list[Any],
        policy: BacktrackPolicy,
        strategy: str,
        max_new: int,
        prefill: list[int],
    ) -> None:
        self.compiled = shield.compile(
            SimpleNamespace(name="toy", rules=tuple(rules), policy=policy)
        )
        self.judge = Judge(self.compiled, self.compiled.lift(VOCAB))
        self.policy = policy
        self.strategy = strategy
        self.max_new = max_new
        self.prefill = tuple(prefill)
        self.machine = Machine(
            self.judge,
            EOS,
            ReferenceSettings(strategy=strategy, max_new_tokens=max_new),
            self.prefill,
            encode=encode,
        )
        self._start()

    def _start(self) -> None:
        self.current: Config | Finished = self.machine.initial()
        self.failed: list[tuple[int, ...]] = []  # failed prefixes, read off the rewinds
        self.transitions = 0
        self.retried_twice = False

    # -- the adversary ----------------------------------------------------------------------------

    @precondition(lambda self: isinstance(self.current, Config))
    @rule(choice=st.integers(0, 255), end_now=rarely)
    def any_token(self, choice: int, end_now: bool) -> None:
        """A model's token: EOS when ``end_now`` (rarely) or when nothing else is allowed."""
        self._advance(lambda allowed: self._pick(allowed, choice, end_now))

    @precondition(lambda self: isinstance(self.current, Config))
    @rule(choice=st.integers(0, 255))
    def attack(self, choice: int) -> None:
        """An adversarial model: a token that makes an automaton rule fire, when one is allowed
        (EOS when END would confirm a whole word)."""

        def violating(allowed: list[int]) -> int:
            assert isinstance(self.current, Config)
            firing = ~self.judge.allowed(self.current.states[-1], (EOS,))
            candidates = [t for t in allowed if firing[t]]
            return (
                candidates[choice % len(candidates)]
                if candidates
                else self._pick(allowed, choice, False)
            )

        self._advance(violating)

    @precondition(lambda self: isinstance(self.current, Finished))
    @rule()
    def restart(self) -> None:
        """A finished row starts again (a step spent on a finished row, counted)."""
        self.totals["finished_steps"] += 1
        self._start()

    @staticmethod
    def _pick(allowed: list[int], choice: int, end_now: bool) -> int:
        text = [t for t in allowed if t != EOS]
        if EOS in allowed and (end_now or not text):
            return EOS
        return text[choice % len(text)]

    def _advance(self, pick: Callable[[list[int]], int]) -> None:
        """Take the machine's next transition (choosing with ``pick`` when it must choose) and
        check the properties of the transition itself."""
        before = self.current
        assert isinstance(before, Config)
        action = self.machine.action(before)
        kind = "read"
        if action == "end":
            kind, continuation = "end", before.kept
            after = self.machine.end(before)
        elif isinstance(action, int):
            continuation = (*before.kept, action)
            after = self.machine.read(before, action, forced=True)
        else:
            assert isinstance(action, Choose)
            allowed = [t for t in range(len(VOCAB)) if not action.blocked[t]]
            if not allowed:
                kind, continuation = "stuck", before.kept
                after = self.machine.stuck(before)
            else:
                token = pick(allowed)
                continuation = (*before.kept, token)
                after = self.machine.read(before, token, forced=False)
        self.current = after
        self.transitions += 1
        self.totals["steps"] += 1
        self._count(before, after, kind, continuation)
        # Termination: the measure (budget left, room left) decreases on every transition between
        # configurations, and a run takes no more transitions than the reference loop's fuel.
        if isinstance(after, Config):
            assert self._measure(after) < self._measure(before)
        assert self.transitions <= self.machine.fuel
        # Progress: no continuation extends a failed prefix (failed prefixes come from the
        # rewinds themselves, not from the controller's bans).
        if self.strategy == "backtrack":
            for prefix in self.failed:
                assert continuation[: len(prefix)] != prefix, f"{continuation} repeats {prefix}"
        if isinstance(after, Config) and after.attempt > before.attempt:
            target = len(after.kept)
            # Bounded rollback: the rewind keeps a prefix of the failed continuation.
            assert after.kept == continuation[:target]
            if self.strategy == "backtrack":
                assert len(continuation) - target <= self.policy.max_rollback_tokens
                self.failed.append(continuation[: target + 1])
            else:
                assert target == 0

    def _measure(self, config: Config) -> tuple[int, int]:
        _, discarded = _observed(config)
        limit = len(self.prefill) + self.max_new
        return self.policy.max_discarded_tokens - discarded, limit - len(config.kept)

    def _count(
        self, before: Config, after: Config | Finished, kind: str, continuation: tuple[int, ...]
    ) -> None:
        totals = self.totals
        totals["stuck"] += kind == "stuck"
        if isinstance(after, Finished):
            totals[f"finished_{after.reason}"] += 1
        events = _config(after).events
        if len(events) == len(before.events):
            return
        event = events[-1]
        if isinstance(after, Config) and after.attempt > before.attempt:
            totals["rewinds"] += 1
            totals["prefill_rollbacks"] += len(after.kept) < len(self.prefill)
        totals["classifier_failures"] += event.rule in CLASSIFIER_IDS
        at_end = kind == "end" or continuation[-1:] == (EOS,)
        totals["end_confirmed"] += at_end and event.rule not in CLASSIFIER_IDS
        retries, _ = _observed(_config(after))
        if not self.retried_twice and retries and max(retries.values()) >= 2:
            self.retried_twice = True
            totals["retried_twice"] += 1

    # -- the theorems -----------------------------------------------------------------------------

    @invariant()
    def kept_text_never_violates(self) -> None:
        """Soundness: the kept text has no match and every closed window in it was judged safe; a
        finished text passes the spec as a finished text; a refusal only after exhaustion."""
        if not hasattr(self, "machine"):
            return
        if isinstance(self.current, Finished):
            if self.current.reason == "refused":
                assert self.current.text == self.policy.refusal
                assert any(e.kind == "exhausted" for e in self.current.config.events)
            else:
                assert self.compiled.scan(self.current.text) == []
                assert self.judge.report(self.current.tokens) == []
            return
        kept = self.current.kept
        data = b"".join(VOCAB[t] for t in kept)
        assert self.compiled.first_violation(data, final=False) is None
        # The stored monitor states are those of re-reading the kept text (a rewind restores
        # the state of its target, which every later verdict starts from).
        state = self.judge.initial()
        for index, token in enumerate(kept):
            assert self.current.states[index] == state
            state, _ = self.judge.feed(state, token, kept[:index])
        assert self.current.states[-1] == state
        for end in range(1, len(kept) + 1):
            assert self.judge.unsafe(self.judge.closed_windows(kept[:end])) is None

    @invariant()
    def bounds_hold(self) -> None:
        """Termination and bounded rollback: tokens produced, discards and retries within bounds."""
        if not hasattr(self, "machine"):
            return
        config = _config(self.current)
        budget = self.policy.max_discarded_tokens
        retries, discarded = _observed(config)
        assert config.steps + config.forced <= len(self.prefill) + self.max_new + budget
        # The model writes at most N kept tokens, also after a rollback into the prefill.
        assert config.steps <= self.max_new + budget
        assert len(config.kept) <= config.limit <= len(self.prefill) + self.max_new
        assert discarded == config.trace.discarded <= budget
        for event in config.events:
            if event.kind == "rollback":
                assert 0 <= event.to_token < event.from_token
                if self.strategy == "backtrack":
                    assert event.from_token - event.to_token <= self.policy.max_rollback_tokens
        if self.strategy == "backtrack":
            assert config.trace.max_rollback <= self.policy.max_rollback_tokens
            assert all(count <= self.policy.max_retries for count in retries.values())

    @invariant()
    def failed_continuations_never_repeat(self) -> None:
        """Progress: the kept text never extends a failed prefix."""
        if not hasattr(self, "machine") or self.strategy != "backtrack":
            return
        kept = _config(self.current).kept
        for prefix in self.failed:
            assert kept[: len(prefix)] != prefix


def test_decoding_machine() -> None:
    """Run the machine; then the scenarios must have happened, and the row must have been running
    for most steps (a step on a finished row only restarts it)."""
    DecodingMachine.totals.clear()
    run_state_machine_as_test(
        DecodingMachine, settings=settings(stateful_step_count=50, deadline=None)
    )
    totals = DecodingMachine.totals
    assert totals["steps"] > 0
    finished_share = totals["finished_steps"] / (totals["steps"] + totals["finished_steps"])
    assert finished_share < 0.3, f"{finished_share:.0%} of the steps were on a finished row"
    for scenario in (
        "rewinds",
        "retried_twice",
        "prefill_rollbacks",
        "classifier_failures",
        "end_confirmed",
        "finished_budget",
        "finished_refused",
        "finished_eos",
        "finished_length",
    ):
        assert totals[scenario] > 0, f"the machine never reached {scenario}: {dict(totals)}"
