"""The backtracking controller: where to rewind after a violation, and when to give up.

This module is the decision procedure shared by every decoder (the JAX decoder and the pure-Python
reference decoder): pure functions over a frozen :class:`RowTrace`. It never sees a model; it sees
the failed continuation (token ids), where the violating match or classifier window started, and
which positions are checkpoints.

Rewind choice, for a failed continuation ``F = tokens[:end]`` whose violation starts in token
``start``, with ``R = max_rollback_tokens`` and ``lo = max(0, end - R)``:

1. the latest *checkpoint* ``p`` in ``[lo, min(start, end - 1)]`` with fewer than ``max_retries``
   failed attempts;
2. else the latest *position* in that range with retries left (a token-granularity fallback);
3. else the latest position in ``[lo, end - 1]`` with retries left (the match started more than R
   tokens back: regenerate as much of it as the bound allows; the prefix is still clean because a
   violation is reported as soon as its match completes);
4. else, or when the discard budget would be exceeded, the row is *exhausted*.

Progress: the first token of every failed continuation is banned at its rewind target for as long
as the prefix before the target is unchanged (bans and retry counts at later positions are dropped
when a rewind moves before them, because their prefix is gone). So a retry never repeats a failed
continuation, also under greedy decoding (see ``proofs/progress.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from shield.policy import BacktrackPolicy

__all__ = ["Exhausted", "Failure", "Rewind", "RowTrace", "plan_rewind"]


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A continuation the shield rejected.

    Attributes:
        tokens: the failed response ``F``: the kept tokens followed by the rejected ones (for an
            automaton rule, the token that completed the match; for a classifier window, nothing
            beyond the window). ``len(tokens)`` is ``end``.
        start: index of the token that holds the first byte of the violating match or window;
            ``0 <= start < len(tokens)``.
        rule: the id of the violated rule.
    """

    tokens: tuple[int, ...]
    start: int
    rule: str

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("a failure needs at least one token (the one that violated); got none")
        if not 0 <= self.start < len(self.tokens):
            raise ValueError(
                f"failure start must index a token of the failed continuation (0..{len(self.tokens) - 1}); "
                f"got {self.start}"
            )


@dataclass(frozen=True, kw_only=True)
class RowTrace:
    """What one row has spent and what it must never repeat.

    Attributes:
        bans: ``(position, token)`` pairs: ``token`` may not be generated at ``position`` while the
            prefix before ``position`` stays as it is.
        retries: ``(position, count)`` pairs: failed attempts from that position.
        discarded: tokens discarded so far (the discard budget counts these).
        rollbacks: rewinds so far.
        max_rollback: the largest number of tokens one rewind discarded.
    """

    bans: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    retries: tuple[tuple[int, int], ...] = ()
    discarded: int = 0
    rollbacks: int = 0
    max_rollback: int = 0

    def retries_at(self, position: int) -> int:
        """Failed attempts from ``position`` so far."""
        return dict(self.retries).get(position, 0)

    def banned_at(self, position: int) -> frozenset[int]:
        """Tokens banned at ``position``."""
        return frozenset(token for where, token in self.bans if where == position)


@dataclass(frozen=True, kw_only=True)
class Rewind:
    """Go back to ``target`` (keep ``tokens[:target]``) and regenerate, never producing ``banned`` there."""

    target: int
    banned: frozenset[int]
    discarded: int
    trace: RowTrace


@dataclass(frozen=True, kw_only=True)
class Exhausted:
    """No rewind is allowed: the retries or the discard budget are spent."""

    reason: str
    trace: RowTrace


def _candidates(
    failure: Failure, policy: BacktrackPolicy, is_checkpoint: Callable[[int], bool]
) -> list[int]:
    end = len(failure.tokens)
    low = max(0, end - policy.max_rollback_tokens)
    high = min(failure.start, end - 1)
    before_match = list(
        range(high, low - 1, -1)
    )  # latest first; empty when the match began before lo
    tiers: list[Sequence[int]] = [
        [p for p in before_match if is_checkpoint(p)],
        before_match,
        list(range(end - 1, low - 1, -1)),
    ]
    ordered: list[int] = []
    for tier in tiers:
        ordered.extend(p for p in tier if p not in ordered)
    return ordered


def plan_rewind(
    trace: RowTrace,
    failure: Failure,
    policy: BacktrackPolicy,
    is_checkpoint: Callable[[int], bool],
    *,
    restart: bool = False,
) -> Rewind | Exhausted:
    """Decide where a row rewinds after ``failure``.

    Args:
        trace: the row's bookkeeping so far.
        failure: the rejected continuation.
        policy: the bounds (``max_rollback_tokens``, ``max_retries``, ``max_discarded_tokens``).
        is_checkpoint: whether a position of ``failure.tokens`` is a checkpoint at the policy's
            granularity (see :func:`shield.checkpoints.is_checkpoint`).
        restart: the ``reset`` strategy: always go back to position 0, with no rollback bound, no
            retry limit and no bans (only the discard budget limits it).

    Returns:
        A :class:`Rewind` with the updated trace, or :class:`Exhausted` when no rewind is allowed.

    Example:
        >>> policy = BacktrackPolicy(max_rollback_tokens=8)
        >>> plan = plan_rewind(RowTrace(), Failure(tokens=(5, 6, 7), start=1, rule="r"), policy, lambda p: True)
        >>> plan.target, sorted(plan.banned)
        (1, [6])
    """
    end = len(failure.tokens)
    if restart:
        target = 0
    else:
        open_positions = [
            p
            for p in _candidates(failure, policy, is_checkpoint)
            if trace.retries_at(p) < policy.max_retries
        ]
        if not open_positions:
            return Exhausted(
                reason=(
                    f"every position within {policy.max_rollback_tokens} tokens of the violation of rule "
                    f"{failure.rule!r} has used its {policy.max_retries} retries"
                ),
                trace=trace,
            )
        target = open_positions[0]
    discarded = end - target
    if trace.discarded + discarded > policy.max_discarded_tokens:
        return Exhausted(
            reason=(
                f"rewinding for rule {failure.rule!r} would discard {discarded} more tokens, beyond the budget "
                f"of {policy.max_discarded_tokens} (already discarded {trace.discarded})"
            ),
            trace=trace,
        )
    if restart:
        bans: frozenset[tuple[int, int]] = frozenset()
        retries: tuple[tuple[int, int], ...] = ()
    else:
        # Bans and retry counts beyond the target belong to a prefix that is being discarded.
        bans = frozenset((p, t) for p, t in trace.bans if p <= target) | {
            (target, failure.tokens[target])
        }
        counts = {p: n for p, n in trace.retries if p < target}
        counts[target] = trace.retries_at(target) + 1
        retries = tuple(sorted(counts.items()))
    new_trace = replace(
        trace,
        bans=bans,
        retries=retries,
        discarded=trace.discarded + discarded,
        rollbacks=trace.rollbacks + 1,
        max_rollback=max(trace.max_rollback, discarded),
    )
    return Rewind(
        target=target, banned=new_trace.banned_at(target), discarded=discarded, trace=new_trace
    )
