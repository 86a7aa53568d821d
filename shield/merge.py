"""Merging small components of the implicit product into one automaton.

The monitor keeps one automaton per rule (an implicit product), so a spec of many small regexes
walks many small tables per token. Where the reachable product of two components stays small, one
table does the same work: :func:`merge_components` greedily merges the smallest components while
their product stays within ``MERGE_STATE_LIMIT`` states.

A merged component only has to answer "does some rule violate?": which rule, and where its match
starts, is computed exactly by ``Shield.first_violation`` from the text. So every product state in
which some part violates is collapsed into one absorbing violating state, which keeps the product
small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MERGE_STATE_LIMIT", "Component", "merge_components", "product"]

#: The largest merged component (states); a product that would be larger is not formed.
MERGE_STATE_LIMIT = 16384


@dataclass(frozen=True)
class Component:
    """One automaton of the implicit product: a total table over bytes and END."""

    rule_ids: tuple[str, ...]
    table: np.ndarray  # int32 [S, 257]
    violating: np.ndarray  # bool [S]
    initial: int


def product(a: Component, b: Component, limit: int = MERGE_STATE_LIMIT) -> Component | None:
    """The reachable product of ``a`` and ``b`` with violations collapsed, or None past ``limit``.

    Args:
        a: a component.
        b: another component.
        limit: the most states the product may have.

    Returns:
        The merged component (state 0 is the violating sink), or None when more than ``limit``
        states are reachable.
    """
    symbols = a.table.shape[1]
    width = b.table.shape[0]
    index: dict[int, int] = {-1: 0}  # pair code -> state; -1 is the violating sink
    pairs: list[tuple[int, int]] = [(-1, -1)]

    def code(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        bad = a.violating[x] | b.violating[y]
        return np.where(bad, -1, x.astype(np.int64) * width + y)

    start = int(code(np.array([a.initial]), np.array([b.initial]))[0])
    if start == -1:
        return None
    index[start] = 1
    pairs.append((a.initial, b.initial))
    rows: list[np.ndarray] = [np.zeros(symbols, dtype=np.int64)]  # the sink loops on itself
    cursor = 1
    while cursor < len(pairs):  # each reachable pair is expanded once; bounded by `limit`
        x, y = pairs[cursor]
        codes = code(a.table[x], b.table[y])  # [257]
        row = np.empty(symbols, dtype=np.int64)
        for value in np.unique(codes).tolist():
            if value not in index:
                if len(pairs) >= limit:
                    return None
                index[value] = len(pairs)
                pairs.append((value // width, value % width))
            row[codes == value] = index[value]
        rows.append(row)
        cursor += 1
    table = np.stack(rows).astype(np.int32)
    violating = np.zeros(len(pairs), dtype=bool)
    violating[0] = True
    return Component(rule_ids=a.rule_ids + b.rule_ids, table=table, violating=violating, initial=1)


def merge_components(
    components: list[Component], limit: int = MERGE_STATE_LIMIT
) -> list[Component]:
    """Merge the smallest components pairwise while the product stays within ``limit`` states.

    Args:
        components: the components, in rule order.
        limit: the most states of a merged component.

    Returns:
        Components with the same "some rule violates" language, usually fewer.
    """
    pending = sorted(components, key=lambda c: c.table.shape[0])
    done: list[Component] = []
    while pending:  # every round removes one component from `pending` or merges two into one
        smallest = pending.pop(0)
        merged = None
        for i, other in enumerate(pending):
            if smallest.table.shape[0] * other.table.shape[0] > 64 * limit:
                break  # sorted by size: every later product is at least as large
            merged = product(smallest, other, limit)
            if merged is not None:
                pending.pop(i)
                pending.append(merged)
                pending.sort(key=lambda c: c.table.shape[0])
                break
        if merged is None:
            done.append(smallest)
    return done
