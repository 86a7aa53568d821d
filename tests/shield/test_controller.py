"""The backtracking controller: bounds, budget and progress, as properties over random failures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shield.controller import Exhausted, Failure, Rewind, RowTrace, plan_rewind
from shield.policy import BacktrackPolicy

policies = st.builds(
    BacktrackPolicy,
    checkpoint=st.sampled_from(["token", "word", "sentence"]),
    max_rollback_tokens=st.integers(1, 12),
    max_retries=st.integers(1, 4),
    max_discarded_tokens=st.integers(1, 80),
)


@st.composite
def failures(draw: st.DrawFn) -> Failure:
    tokens = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=30)))
    start = draw(st.integers(0, len(tokens) - 1))
    return Failure(tokens=tokens, start=start, rule="r")


checkpoint_sets = st.frozensets(st.integers(0, 30))


def test_doc_example() -> None:
    plan = plan_rewind(
        RowTrace(), Failure(tokens=(5, 6, 7), start=1, rule="r"), BacktrackPolicy(), lambda p: True
    )
    assert isinstance(plan, Rewind)
    assert (plan.target, plan.banned, plan.discarded) == (1, frozenset({6}), 2)


def test_prefers_latest_checkpoint_before_match() -> None:
    failure = Failure(tokens=(1, 2, 3, 4, 5, 6), start=4, rule="r")
    plan = plan_rewind(RowTrace(), failure, BacktrackPolicy(), lambda p: p in {0, 2})
    assert isinstance(plan, Rewind)
    assert plan.target == 2


def test_falls_back_to_earlier_checkpoint_after_max_retries() -> None:
    policy = BacktrackPolicy(max_retries=2)
    failure = Failure(tokens=(1, 2, 3, 4, 5, 6), start=4, rule="r")
    trace = RowTrace()
    targets = []
    for _ in range(4):
        plan = plan_rewind(trace, failure, policy, lambda p: p in {0, 2})
        assert isinstance(plan, Rewind)
        trace = plan.trace
        targets.append(plan.target)
        failure = Failure(tokens=(1, 2, 9, 9, 9, 9), start=4, rule="r")
    assert targets[:2] == [2, 2]
    assert targets[2] < 2


def test_budget_exhaustion_names_both_numbers() -> None:
    policy = BacktrackPolicy(max_discarded_tokens=3)
    plan = plan_rewind(
        RowTrace(), Failure(tokens=(1, 2, 3, 4, 5), start=0, rule="bad"), policy, lambda p: True
    )
    assert isinstance(plan, Exhausted)
    assert "5" in plan.reason and "3" in plan.reason and "bad" in plan.reason


def test_failure_rejects_bad_start() -> None:
    with pytest.raises(ValueError, match="failure start"):
        Failure(tokens=(1, 2), start=2, rule="r")
    with pytest.raises(ValueError, match="at least one token"):
        Failure(tokens=(), start=0, rule="r")


@given(policies, failures(), checkpoint_sets)
def test_rewind_within_bound(
    policy: BacktrackPolicy, failure: Failure, checkpoints: frozenset[int]
) -> None:
    plan = plan_rewind(RowTrace(), failure, policy, lambda p: p in checkpoints or p == 0)
    if isinstance(plan, Rewind):
        end = len(failure.tokens)
        assert 0 <= plan.target < end
        assert plan.discarded == end - plan.target <= policy.max_rollback_tokens
        assert plan.trace.discarded <= policy.max_discarded_tokens
        assert failure.tokens[plan.target] in plan.banned


@given(policies, failures(), checkpoint_sets, st.data())
def test_rewind_prefers_checkpoints_at_or_before_match(
    policy: BacktrackPolicy, failure: Failure, checkpoints: frozenset[int], data: st.DataObject
) -> None:
    end = len(failure.tokens)
    low = max(0, end - policy.max_rollback_tokens)
    high = min(failure.start, end - 1)
    if low <= high:  # make sure at least one checkpoint is eligible
        checkpoints = checkpoints | {data.draw(st.integers(low, high), label="eligible")}
    eligible = [p for p in checkpoints if low <= p <= high]
    plan = plan_rewind(RowTrace(), failure, policy, lambda p: p in checkpoints)
    assert (
        isinstance(plan, Rewind)
        or end - (max(eligible) if eligible else low) > policy.max_discarded_tokens
    )
    if isinstance(plan, Rewind) and eligible:
        assert plan.target == max(eligible)


@given(policies, failures())
def test_restart_goes_to_zero_and_keeps_no_bans(policy: BacktrackPolicy, failure: Failure) -> None:
    plan = plan_rewind(RowTrace(), failure, policy, lambda p: True, restart=True)
    if isinstance(plan, Rewind):
        assert plan.target == 0 and not plan.banned
    else:
        assert len(failure.tokens) > policy.max_discarded_tokens


@given(policies, st.data())
def test_failed_continuations_never_repeat(policy: BacktrackPolicy, data: st.DataObject) -> None:
    """Drive the controller with an adversarial token source; no failed prefix is ever re-entered."""
    vocab = data.draw(st.integers(2, 4), label="vocab")
    kept: list[int] = []
    trace = RowTrace()
    forbidden_prefixes: list[tuple[int, ...]] = []
    for _ in range(200):  # fuel: far more than the discard budget allows
        allowed = [t for t in range(vocab) if t not in trace.banned_at(len(kept))]
        if allowed:
            kept.append(data.draw(st.sampled_from(allowed)))
            for prefix in forbidden_prefixes:
                assert tuple(kept[: len(prefix)]) != prefix, "a failed continuation was repeated"
            if not data.draw(st.booleans(), label="fails"):
                continue
            failure_tokens = tuple(kept)
        elif kept:
            failure_tokens = tuple(kept)  # every token banned: a failure at this position
        else:
            break
        start = data.draw(st.integers(0, len(failure_tokens) - 1), label="start")
        failure = Failure(tokens=failure_tokens, start=start, rule="r")
        plan = plan_rewind(trace, failure, policy, lambda p: p % 3 == 0)
        if isinstance(plan, Exhausted):
            break
        forbidden_prefixes.append(failure_tokens[: plan.target + 1])
        kept = kept[: plan.target]
        trace = plan.trace
        assert trace.discarded <= policy.max_discarded_tokens
        assert all(n <= policy.max_retries for _, n in trace.retries)
