"""DFA minimisation by Moore's partition refinement, vectorised with numpy.

Each round gives every state the signature (its block, the blocks of its successors per class)
and splits blocks by signature. Signatures are hashed to one uint64 per state for speed; the
final partition is verified exactly (every member of a block has its representative's
signature) and recomputed exactly on the (astronomically unlikely) collision, so the result is
always the true coarsest stable partition.
"""

from __future__ import annotations

import numpy as np

from shield.automata.dfa import DFA

__all__ = ["coarsest_partition", "minimize", "minimize_with_map"]

_SEED = 0x5EED


def _hash_split(block: np.ndarray, columns: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """Block ids (0..m-1) of the hashed signatures (block, blocks of the successors per column).

    The hash is accumulated one column at a time: no ``[n, k]`` temporary (the tables of large
    word lists have 100k+ states and 100+ columns).
    """
    hashed = block.astype(np.uint64) * multipliers[0]
    for j in range(columns.shape[0]):
        hashed += block[columns[j]].astype(np.uint64) * multipliers[j + 1]
    _, inverse = np.unique(hashed, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def _stable(block: np.ndarray, table: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``block`` respects ``labels`` and every state has its representative's signature."""
    count = int(block.max()) + 1
    rep = np.zeros(count, dtype=np.int64)
    rep[block[::-1]] = np.arange(block.size)[::-1]
    same = rep[block]
    return bool(
        np.array_equal(labels, labels[same]) and np.array_equal(block[table], block[table[same]])
    )


def _exact(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Moore's refinement with exact signatures (the fallback after a hash collision)."""
    _, block = np.unique(labels, return_inverse=True)
    block = block.reshape(-1).astype(np.int64)
    count = int(block.max()) + 1
    for _ in range(table.shape[0] + 1):  # fuel: each productive round adds a block
        signature = np.concatenate([block[:, None], block[table]], axis=1)
        _, new_block = np.unique(signature, axis=0, return_inverse=True)
        block = new_block.reshape(-1).astype(np.int64)
        new_count = int(block.max()) + 1
        if new_count == count:
            break
        count = new_count
    return block


def coarsest_partition(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The coarsest partition of states that respects ``labels`` and is stable under ``table``.

    Rounds split by hashed signatures; a collision can only merge states, never split
    equivalent ones, so the result is checked once, exactly, for stability (a stable partition
    that respects the labels and is no finer than the true one is the true one), and recomputed
    with exact signatures if the check fails.

    Args:
        table: int [n_states, n_symbols] transitions (any symbol alphabet).
        labels: int [n_states] initial partition (states with different labels are never merged).

    Returns:
        int64 [n_states] block ids 0..m-1; states in one block are equivalent.
    """
    n, k = table.shape
    table = table.astype(np.int64)
    labels = np.asarray(labels, np.int64)
    columns = np.ascontiguousarray(table.T)
    rng = np.random.default_rng(_SEED)
    multipliers = rng.integers(1, 2**63, size=k + 1, dtype=np.uint64) | np.uint64(1)
    _, block = np.unique(labels, return_inverse=True)
    block = block.reshape(-1).astype(np.int64)
    count = int(block.max()) + 1
    for _ in range(n + 1):  # fuel: each productive round adds a block, so at most n rounds
        new_block = _hash_split(block, columns, multipliers)
        new_count = int(new_block.max()) + 1
        block = new_block
        if new_count == count:
            break
        count = new_count
    if not _stable(block, table, labels):  # a hash collision merged states: go exact
        block = _exact(table, labels)
    return block


def minimize_with_map(dfa: DFA, labels: np.ndarray | None = None) -> tuple[DFA, np.ndarray]:
    """The minimal DFA and the map from old states to new ones.

    Args:
        dfa: an automaton whose states are all reachable (as :func:`~shield.automata.dfa.crawl` builds).
        labels: optional int [n_states] initial partition (states with different labels are never
            merged); defaults to ``dfa.accepting``.

    Returns:
        The minimal DFA (initial state 0, states numbered in breadth-first order) and int32
        [n_states] mapping each old state to its new state.
    """
    n = dfa.n_states
    table = dfa.transitions.astype(np.int64)
    start = dfa.accepting.astype(np.int64) if labels is None else np.asarray(labels, np.int64)
    block = coarsest_partition(table, start)
    count = int(block.max()) + 1
    # Renumber blocks breadth first from the initial state, for stable, readable numbering.
    rep = np.zeros(count, dtype=np.int64)
    rep[block[::-1]] = np.arange(n)[::-1]  # some member of each block
    quotient = block[table[rep]]  # [count, k]
    order = np.full(count, -1, dtype=np.int64)
    queue: list[int] = []
    head = 0
    # Roots: the initial block first, then (for states kept as extra roots) any block not yet seen.
    for root in [int(block[dfa.initial]), *range(count)]:
        if order[root] >= 0:
            continue
        order[root] = len(queue)
        queue.append(root)
        while head < len(queue):  # breadth first; each block is queued once
            for nxt in quotient[queue[head]].tolist():
                if order[nxt] < 0:
                    order[nxt] = len(queue)
                    queue.append(nxt)
            head += 1
    new_of_block = order
    perm = np.array(queue, dtype=np.int64)  # new id -> block
    transitions = new_of_block[quotient[perm]]
    accepting = dfa.accepting[rep[perm]]
    mapping = new_of_block[block].astype(np.int32)
    # Merge classes whose columns became equal.
    _, first, column_class = np.unique(
        transitions.T, axis=0, return_index=True, return_inverse=True
    )
    column_class = column_class.reshape(-1)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    keep = np.sort(first)
    classes = rank[column_class][dfa.classes]
    return DFA(transitions[:, keep], classes, 0, accepting), mapping


def minimize(dfa: DFA) -> DFA:
    """The minimal DFA accepting after the same inputs (states merged by acceptance behaviour).

    Args:
        dfa: an automaton whose states are all reachable.

    Returns:
        The minimal equivalent DFA.
    """
    return minimize_with_map(dfa)[0]
