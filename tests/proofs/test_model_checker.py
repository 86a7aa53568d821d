"""The small-scope model checker finds no counterexample to the theorems on its default grid."""

from __future__ import annotations

import pytest

from proofs.model_checker import check, default_instances


@pytest.mark.parametrize("index", range(len(default_instances())))
def test_instance_has_no_counterexample(index: int) -> None:
    instance = default_instances()[index]
    report = check(instance)
    assert report.problems == ()
    assert report.finished > 0


def test_checker_finds_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker is not vacuous: a controller that forgets its bans loops, and it says so."""
    import shield.controller as backtrack
    from shield.reference import Machine

    original = backtrack.plan_rewind

    def forgetful(trace, failure, policy, is_checkpoint, *, restart=False):  # type: ignore[no-untyped-def]
        plan = original(trace, failure, policy, is_checkpoint, restart=restart)
        if isinstance(plan, backtrack.Rewind):
            from dataclasses import replace

            return replace(
                plan, banned=frozenset(), trace=replace(plan.trace, bans=frozenset(), discarded=0)
            )
        return plan

    monkeypatch.setattr("shield.reference.plan_rewind", forgetful)
    assert Machine is not None
    report = check(default_instances()[0], max_nodes=5_000)
    assert report.problems, "a controller without bans or budget must be caught"
