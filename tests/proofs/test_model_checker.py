"""The small-scope model checker: its instances reach every scenario, and then no theorem fails.

Each test first asserts that the exploration reached the scenarios it is about (a rewind, a
position retried twice, a stuck row, exhaustion, a refusal, a rollback into the prefill, a
classifier failure, a whole word confirmed by END, a violation plain decoding lets through, a clean
plain path), and only then that no property failed, so a check that never met its scenario cannot
pass. The planted-bug tests show that each check can fail: each plants one bug in the controller or
the reference machine (by monkeypatching) and asserts the checker names the broken theorem.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shield.controller as controller
from proofs.model_checker import (
    CONTAINS_B,
    POSSIBLE,
    SCENARIOS,
    VOCABULARY,
    Coverage,
    Instance,
    Report,
    check,
    contains_b,
    default_instances,
)
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.reference import Choose, Machine
from shield.rules import ClassifierRule, LiteralRule, MatchOptions, RegexRule, WordsRule

INSTANCES = {instance.name: instance for instance in default_instances()}


@functools.cache
def _report(name: str) -> Report:
    """Each default instance is explored once per test process."""
    return check(INSTANCES[name])


def _kinds(report: Report) -> set[str]:
    """The properties a report says failed (``termination``, ``progress``, ...)."""
    return {problem.split(":", 1)[0] for problem in report.problems}


@pytest.mark.parametrize("name", list(INSTANCES))
def test_instance_reaches_its_scenarios_and_has_no_counterexample(name: str) -> None:
    instance = INSTANCES[name]
    report = _report(name)
    missing = instance.expect - report.coverage.reached()
    assert not missing, f"{name} never reached {sorted(missing)}: its checks would prove nothing"
    assert report.finished > 0
    assert report.problems == ()


def test_every_strategy_reaches_every_scenario_it_can() -> None:
    """Per strategy, every scenario the strategy can reach is reached; those it cannot (a rewind
    under ``none``, a stuck row under ``reset``) are never seen."""
    totals: dict[str, Coverage] = {}
    for name, instance in INSTANCES.items():
        totals[instance.strategy] = (
            totals.get(instance.strategy, Coverage()) + _report(name).coverage
        )
    assert set(totals) == {"none", "mask", "reset", "backtrack"}
    for strategy, coverage in totals.items():
        for scenario in SCENARIOS:
            count = getattr(coverage, scenario)
            if scenario in POSSIBLE[strategy]:
                assert count > 0, f"{strategy} never reached {scenario}"
            else:
                assert count == 0, f"{strategy} reached {scenario}, which it cannot"
    assert all(_report(name).problems == () for name in INSTANCES)


def test_scorer_resolves_by_name() -> None:
    from shield.classifiers import score

    assert contains_b(["abc", "a c"]) == [1.0, 0.0]
    assert score(CONTAINS_B, ["b", "a"]) == [1.0, 0.0]


# -- random small instances ------------------------------------------------------------------------

RULE_POOL = (
    WordsRule(id="ab", words=("ab",)),
    WordsRule(id="ab-word", words=("ab",), match=MatchOptions(whole_word=True)),
    LiteralRule(id="aa", literal="aa"),
    RegexRule(id="b-run", pattern="bb+"),
    RegexRule(id="a-then-b", pattern="a[ ]?b"),
    ClassifierRule(
        id="no-b-pair", scorer=CONTAINS_B, threshold=0.5, scope="window", window_tokens=2
    ),
    ClassifierRule(id="no-b-sentence", scorer=CONTAINS_B, threshold=0.5),
)


def test_random_small_instances_have_no_counterexample() -> None:
    """Random small specs, policies, strategies, bounds and prefills; the examples together must
    reach every scenario before their silence counts."""
    totals: dict[str, Coverage] = {}

    @settings(derandomize=True, max_examples=max(150, settings().max_examples))
    @given(
        rules=st.lists(
            st.sampled_from(RULE_POOL), min_size=1, max_size=3, unique_by=lambda r: r.id
        ),
        policy=st.builds(
            BacktrackPolicy,
            checkpoint=st.sampled_from(["token", "word"]),
            max_rollback_tokens=st.integers(1, 3),
            max_retries=st.integers(1, 3),
            max_discarded_tokens=st.integers(1, 5),
            on_exhausted=st.sampled_from(["stop", "refuse"]),
            refusal=st.just("a"),
        ),
        strategy=st.sampled_from(["backtrack", "reset", "mask", "none"]),
        max_new=st.integers(0, 3),
        prefill=st.lists(st.integers(1, len(VOCABULARY) - 1), max_size=2),
        narrow=st.booleans(),
    )
    def explore_one(
        rules: list[Any],
        policy: BacktrackPolicy,
        strategy: str,
        max_new: int,
        prefill: list[int],
        narrow: bool,
    ) -> None:
        instance = Instance(
            name="random",
            rules=tuple(rules),
            policy=policy,
            strategy=strategy,
            max_new_tokens=max_new,
            prefill=tuple(prefill),
            narrow_windows=narrow,
        )
        report = check(instance)
        totals[strategy] = totals.get(strategy, Coverage()) + report.coverage
        assert report.finished > 0
        assert report.problems == ()

    explore_one()
    # Derandomized, so the examples (and these totals) are the same on every run; at least 150
    # of them, the fewest that reach a whole word confirmed by END. A stuck row
    # needs a position with every token banned, more retries than these policies allow: the
    # "stuck" instance covers it. Verdicts are synchronous here; the delayed ones have their own
    # random test below.
    rewinding = totals["backtrack"] + totals["reset"]
    for scenario in SCENARIOS:
        if scenario not in ("stuck", "plain_violations", "late_rollbacks"):
            assert getattr(rewinding, scenario) > 0, f"no random instance reached {scenario}"
    assert totals["backtrack"].retried_twice > 0
    assert (totals["none"] + totals["mask"]).plain_violations > 0


# -- planted bugs: every check can fail ------------------------------------------------------------

Plan = Callable[..., controller.Rewind | controller.Exhausted]


def _plant(monkeypatch: pytest.MonkeyPatch, change: Callable[[Any, Any, Any, Plan], Any]) -> None:
    """Replace the reference machine's ``plan_rewind`` by ``change(trace, failure, policy, plan)``
    where ``plan(policy)`` runs the real controller."""
    original = controller.plan_rewind

    def planted(trace, failure, policy, is_checkpoint, *, restart=False):  # type: ignore[no-untyped-def]
        def plan(with_policy: BacktrackPolicy) -> Any:
            return original(trace, failure, with_policy, is_checkpoint, restart=restart)

        return change(trace, failure, policy, plan)

    monkeypatch.setattr("shield.machine.plan_rewind", planted)


def test_progress_check_catches_bans_dropped_at_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug ``p <= target`` -> ``p < target``: earlier bans at the rewind target are dropped."""

    def drop_bans_at_target(trace: Any, failure: Any, policy: Any, plan: Plan) -> Any:
        result = plan(policy)
        if not isinstance(result, controller.Rewind):
            return result
        target = result.target
        bans = frozenset((p, t) for p, t in result.trace.bans if p < target)
        bans |= {(target, failure.tokens[target])}
        new_trace = replace(result.trace, bans=bans)
        return replace(result, trace=new_trace, banned=new_trace.banned_at(target))

    _plant(monkeypatch, drop_bans_at_target)
    report = check(INSTANCES["retries-backtrack"])
    assert report.coverage.retried_twice > 0  # the scenario: a position retried twice
    assert "progress" in _kinds(report)


def test_retry_bound_catches_ignored_max_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    _plant(
        monkeypatch,
        lambda trace, failure, policy, plan: plan(replace(policy, max_retries=10**6)),
    )
    report = check(INSTANCES["retries-backtrack"])
    assert report.coverage.retried_twice > 0
    assert "progress" in _kinds(report)


def test_termination_measure_catches_an_uncharged_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    def free_rewinds(trace: Any, failure: Any, policy: Any, plan: Plan) -> Any:
        result = plan(policy)
        if isinstance(result, controller.Rewind):
            return replace(result, trace=replace(result.trace, discarded=trace.discarded))
        return result

    _plant(monkeypatch, free_rewinds)
    report = check(INSTANCES["stuck-backtrack"])
    assert report.coverage.rewinds > 0
    assert any("measure" in problem for problem in report.problems)
    # reset has no bans to stop it: its runs get longer than the reference loop's fuel.
    report = check(INSTANCES["stuck-reset"])
    assert report.coverage.rewinds > 0
    assert any("a run takes more than" in problem for problem in report.problems)


def test_state_graph_catches_a_controller_that_forgets_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without bans, retry counts or a budget, a row can fail the same way for ever: the graph of
    decoder states has a cycle (the configuration graph cannot: its step counters only grow)."""

    def forgetful(trace: Any, failure: Any, policy: Any, plan: Plan) -> Any:
        result = plan(policy)
        if isinstance(result, controller.Rewind):
            blank = replace(result.trace, bans=frozenset(), retries=(), discarded=0)
            return replace(result, banned=frozenset(), trace=blank)
        return result

    _plant(monkeypatch, forgetful)
    report = check(INSTANCES["stuck-backtrack"], max_nodes=500)
    assert report.coverage.rewinds > 0
    assert any("states have a cycle" in problem for problem in report.problems)


def test_bounded_rollback_catches_unbounded_rewinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug ``lo = max(0, end - R)`` -> ``lo = 0``."""
    _plant(
        monkeypatch,
        lambda trace, failure, policy, plan: plan(replace(policy, max_rollback_tokens=10**6)),
    )
    report = check(INSTANCES["stuck-backtrack"])
    assert report.coverage.rewinds > 0
    assert "bounded rollback" in _kinds(report)


def test_soundness_catches_unjudged_classifier_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Judge, "closed_window_failure", lambda self, tokens: None)
    report = check(INSTANCES["classifier-backtrack"])
    assert report.coverage.classifier_failures > 0  # the END check still sees the classifier
    assert "soundness" in _kinds(report)


def test_transparency_catches_a_mask_that_blocks_clean_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mask that blocks every token but EOS is still a subgraph of plain decoding, but it does
    not reproduce the clean plain paths."""

    def nothing_allowed(self: Judge, state: Any, eos_ids: Any) -> np.ndarray:
        allowed = np.zeros(len(self.token_bytes), dtype=bool)
        allowed[list(eos_ids)] = True
        return allowed

    monkeypatch.setattr(Judge, "allowed", nothing_allowed)
    report = check(INSTANCES["prefill-mask"])
    assert report.coverage.clean_paths > 0
    assert "transparency" in _kinds(report)


def test_soundness_catches_an_unchecked_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that skips the END check returns whole words that END confirms."""
    monkeypatch.setattr(Judge, "end_failure", lambda self, kept, state, extra: None)
    report = check(INSTANCES["refuse-backtrack"])
    assert report.coverage.rewinds > 0
    assert "soundness" in _kinds(report)


def test_transparency_catches_a_backtrack_that_masks_before_any_rewind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Masking before the first rewind changes what a sampler draws, though every clean plain
    path is still a path: the check on the logit processing before a rewind catches it."""
    original = Machine.action

    def always_masks(self: Machine, config: Any) -> Any:
        action = original(self, config)
        if isinstance(action, Choose) and config.attempt == 0:
            violating = ~self.judge.allowed(config.states[-1], self.eos_ids)
            if not (violating | action.blocked).all():
                return Choose(blocked=action.blocked | violating)
        return action

    monkeypatch.setattr(Machine, "action", always_masks)
    report = check(INSTANCES["prefill-backtrack"])
    assert report.coverage.clean_paths > 0
    assert any("blocked a token" in problem for problem in report.problems)


def test_random_delayed_verdicts_have_no_counterexample() -> None:
    """Random small specs with a classifier rule, verdicts 1 or 2 tokens late: every delivery
    schedule is explored, and the examples together read past an unsafe window and roll back."""
    totals = Coverage()

    @settings(derandomize=True, max_examples=max(40, settings().max_examples // 2))
    @given(
        rules=st.lists(
            st.sampled_from(RULE_POOL), min_size=1, max_size=2, unique_by=lambda r: r.id
        ).filter(lambda rules: any(isinstance(r, ClassifierRule) for r in rules)),
        policy=st.builds(
            BacktrackPolicy,
            checkpoint=st.sampled_from(["token", "word"]),
            max_rollback_tokens=st.integers(1, 3),
            max_retries=st.integers(1, 2),
            max_discarded_tokens=st.integers(1, 4),
            on_exhausted=st.sampled_from(["stop", "refuse"]),
            refusal=st.just("a"),
        ),
        strategy=st.sampled_from(["backtrack", "reset"]),
        max_new=st.integers(1, 3),
        delay=st.integers(1, 2),
    )
    def explore_one(
        rules: list[Any], policy: BacktrackPolicy, strategy: str, max_new: int, delay: int
    ) -> None:
        nonlocal totals
        instance = Instance(
            name="random-delayed",
            rules=tuple(rules),
            policy=policy,
            strategy=strategy,
            max_new_tokens=max_new,
            verdict_delay=delay,
        )
        report = check(instance)
        totals = totals + report.coverage
        assert report.finished > 0
        assert report.problems == ()

    explore_one()
    assert totals.late_rollbacks > 0 and totals.classifier_failures > 0


def test_delayed_verdicts_are_checked_on_every_delivery_schedule() -> None:
    """The late-verdict instance reads past unsafe windows before their verdicts and rolls back
    for them; every schedule within the delay is a path, and every theorem holds on it."""
    report = _report("late-verdicts-backtrack")
    assert report.coverage.late_rollbacks > 0 and report.coverage.classifier_failures > 0
    assert report.problems == ()
    instance = INSTANCES["late-verdicts-backtrack"]
    bound = len(instance.prefill) + instance.max_new_tokens
    bound += (instance.verdict_delay + 1) * instance.policy.max_discarded_tokens
    assert 0 < report.most_tokens <= bound


def test_soundness_catches_a_verdict_never_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that finishes without waiting for the pending verdicts."""
    monkeypatch.setattr(Machine, "settle", lambda self, config, everything: config)
    report = check(INSTANCES["late-verdicts-backtrack"])
    assert report.coverage.classifier_failures > 0  # early deliveries still roll back
    assert "soundness" in _kinds(report)


def test_soundness_catches_an_unsafe_verdict_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that drops an unsafe verdict instead of rolling back."""

    def drop(self: Machine, config: Any) -> Any:
        return replace(config, pending=config.pending[1:])

    monkeypatch.setattr(Machine, "verdict", drop)
    report = check(INSTANCES["late-verdicts-backtrack"])
    assert report.finished > 0
    assert "soundness" in _kinds(report)


def test_checker_catches_a_late_rewind_planned_from_the_cursor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A late verdict planned as a failure of the whole kept text (not of the text up to the
    window's end): with R counted from the cursor, the rewind may stop inside the unsafe window
    and keep part of it."""

    def from_cursor(self: Machine, config: Any, window: Any) -> Any:
        failure = controller.Failure(
            tokens=config.kept, start=min(window.start, len(config.kept) - 1), rule=window.rule.id
        )
        return self.fail(replace(config, pending=()), failure)

    monkeypatch.setattr(Machine, "late_failure", from_cursor)
    report = check(INSTANCES["late-verdicts-backtrack"])
    assert report.coverage.rewinds > 0
    assert "soundness" in _kinds(report)
