"""Laws of the trie level grouping (:func:`decoders.trie_walk.group_levels`), against brute force.

The walk itself is checked against the host's rows in ``test_device_tables.py``, under both
extreme groupings; here the grouping's own promise: the groups cover the levels in order, fit the
padding bound unless every level is its own group, and no grouping with fewer groups fits.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from decoders.trie_walk import group_levels

widths = st.lists(st.integers(1, 40), max_size=7)
paddings = st.sampled_from((0.0, 0.1, 0.25, 0.5, 1.0, 3.0))


def cost(widths: list[int], groups: list[tuple[int, int]]) -> int:
    """Steps of a grouping: each group padded to its widest level and the level before it."""
    before = [1, *widths]
    return sum((j - i) * max(before[i : j + 1]) for i, j in groups)


def groupings(count: int) -> list[list[tuple[int, int]]]:
    """Every way to cut ``count`` levels into consecutive groups."""
    found = []
    for cuts in itertools.product((False, True), repeat=max(count - 1, 0)):
        starts = [0] + [k + 1 for k, cut in enumerate(cuts) if cut]
        found.append(list(itertools.pairwise([*starts, count])))
    return found if count else [[]]


@given(widths=widths, padding=paddings)
def test_groups_cover_the_levels_in_order(widths: list[int], padding: float) -> None:
    groups = group_levels(widths, padding)
    starts, stops = [i for i, _ in groups], [j for _, j in groups]
    assert starts == [0, *stops[:-1]][: len(groups)]
    assert (stops[-1] if groups else 0) == len(widths)
    assert all(i < j for i, j in groups)


@given(widths=widths, padding=paddings)
def test_the_fewest_groups_within_the_bound(widths: list[int], padding: float) -> None:
    groups = group_levels(widths, padding)
    budget = (1.0 + padding) * sum(widths)
    fitting = [g for g in groupings(len(widths)) if cost(widths, g) <= budget]
    if fitting:
        assert cost(widths, groups) <= budget
        assert len(groups) == min(len(g) for g in fitting)
    else:  # nothing fits (the root's padding alone can exceed it): one group per level
        assert len(groups) == len(widths)


def test_no_padding_groups_only_levels_that_need_none() -> None:
    """Padding 0: levels of equal width share a group (the root before them pads nothing)."""
    assert group_levels([4, 4, 4], 0.0) == [(0, 3)]
    assert group_levels([4, 5, 4], 0.0) == [(0, 1), (1, 2), (2, 3)]
    assert group_levels([1, 2, 4, 8], 0.0) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert group_levels([], 0.5) == []
