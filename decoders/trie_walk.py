"""Walk a whole vocabulary from a batch of automaton states, one byte-trie level at a time.

``mask`` and ``backtrack``'s repair need, at a step, which of the ``V`` tokens would make the
shield violate from each row's state. Reading every token's bytes costs ``V x L`` automaton steps
(``L`` the longest token: 49,152 x 81 on SmolLM2). The tokens' byte *trie* reads a shared prefix
once: one step per trie node (99,531 on SmolLM2), level by level, each level's states gathered
from its parents' (the host's row walk in :mod:`shield.lifting` does the same in numpy).

On a device a level's width must be static. Unrolling all 81 levels compiles for seconds (about
0.2 s a level on a CPU); one loop over levels padded to the widest (15,208 nodes) does 12x the
work. So consecutive levels are grouped into a few loops, each padded to its own widest level,
choosing the fewest groups whose padding adds at most :data:`TRIE_PADDING` of the trie's nodes
(:func:`group_levels`, an exact dynamic programme). SmolLM2: 6 loops, +45 % steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from decoders.pytree import pytree_dataclass
from shield.vocabulary import Trie

__all__ = ["TRIE_PADDING", "TrieLoops", "group_levels", "trie_loops", "walk_vocabulary"]

Array = jax.Array

#: The padding the grouped loops may add, as a share of the trie's nodes; fewer groups compile
#: faster, so the fewest groups within this bound are taken.
TRIE_PADDING = 0.5


@pytree_dataclass(kw_only=True)
class TrieLoops:
    """A vocabulary's byte trie as padded level groups, ready for :func:`walk_vocabulary`."""

    parent: tuple[Array, ...]  # per group [D, P] int32: a node's parent in the previous level
    byte: tuple[Array, ...]  # per group [D, P] int32: the byte read from the parent
    token_place: Array  # [V] int32: each token's column in the walk's verdicts (0: the root)


def group_levels(widths: Sequence[int], padding: float) -> list[tuple[int, int]]:
    """Cut trie levels into the fewest consecutive groups whose padding stays within a bound.

    A group of levels ``[i, j)`` is padded to its widest level and to the level before it (whose
    states its first level gathers), so it costs ``(j - i) * max(widths[i - 1 : j])`` steps; the
    root (width 1) precedes level 0. Exact: for each number of groups, the least steps (dynamic
    programming over the cut points), stopping at the first count within the bound.

    Args:
        widths: the node count of each level, from depth 1 down.
        padding: the steps that padding may add, as a share of the nodes (``sum(widths)``).

    Returns:
        The groups as ``(start, stop)`` level ranges, covering every level in order; one group
        per level when no coarser grouping fits the bound.
    """
    count = len(widths)
    if count == 0:
        return []
    before = [1, *widths]  # before[k] is the width of the level that precedes level k
    budget = (1.0 + padding) * sum(widths)
    inf = float("inf")
    # least[j]: the fewest steps covering levels [0, j) with the groups counted so far.
    least: list[float] = [0.0] + [inf] * count
    cuts: list[list[int]] = []
    for _ in range(count):  # fuel: at most one group per level
        nxt: list[float] = [inf] * (count + 1)
        cut = [0] * (count + 1)
        for j in range(1, count + 1):
            widest = before[j]
            for i in range(j - 1, -1, -1):  # the group [i, j), widening to the left
                widest = max(widest, before[i])
                cost = least[i] + (j - i) * widest
                if cost < nxt[j]:
                    nxt[j], cut[j] = cost, i
        least = nxt
        cuts.append(cut)
        if least[count] <= budget:
            break
    groups, j = [], count
    for cut in reversed(cuts):
        groups.append((cut[j], j))
        j = cut[j]
    return groups[::-1]


def trie_loops(trie: Trie, vocab_size: int, padding: float = TRIE_PADDING) -> TrieLoops:
    """The padded level groups of a vocabulary's byte trie, on the device.

    Args:
        trie: ``(parent, byte, level bounds, node of token)`` from :func:`shield.vocabulary.build_trie`.
        vocab_size: V, the model's logits; ids past the trie's tokens map to the root.
        padding: see :data:`TRIE_PADDING`.

    Returns:
        The :class:`TrieLoops`.
    """
    parent, byte, levels, token_node = trie
    starts = [0] + [lo for lo, _ in levels]  # the first node of each level, the root's first
    place = np.zeros(parent.shape[0], dtype=np.int64)  # each node's verdict column
    parents, bytes_, column = [], [], 1
    for first, stop in group_levels([hi - lo for lo, hi in levels], padding):
        width = max([1] + [hi - lo for lo, hi in levels[max(first - 1, 0) : stop]])
        group_parent = np.zeros((stop - first, width), dtype=np.int32)  # padding: 0, never read
        group_byte = np.zeros((stop - first, width), dtype=np.int32)
        for depth, (lo, hi) in enumerate(levels[first:stop]):
            group_parent[depth, : hi - lo] = parent[lo:hi] - starts[first + depth]
            group_byte[depth, : hi - lo] = byte[lo:hi]
            place[lo:hi] = column + depth * width + np.arange(hi - lo)
        parents.append(jax.device_put(group_parent))
        bytes_.append(jax.device_put(group_byte))
        column += (stop - first) * width
    token_place = np.zeros(vocab_size, dtype=np.int32)
    count = min(vocab_size, int(token_node.shape[0]))
    token_place[:count] = place[token_node[:count]]
    return TrieLoops(
        parent=tuple(parents), byte=tuple(bytes_), token_place=jax.device_put(token_place)
    )


def walk_vocabulary(
    loops: TrieLoops,
    states: Array,
    step: Callable[[Array, Array], Array],
    verdict: Callable[[Array], Array],
) -> Array:
    """A verdict per row and token: ``verdict`` of the state each token's bytes lead to.

    Args:
        loops: the vocabulary's trie (:func:`trie_loops`).
        states: ``[B, S]`` automaton states (any trailing state shape).
        step: ``(states [B, P, S], bytes [P, 1]) -> [B, P, S]``, one byte from every state.
        verdict: ``[B, P, S] -> [B, P]``.

    Returns:
        ``[B, V]``, the verdict after each token (the root's, from ``states``, for empty ones).
    """
    batch = states.shape[0]
    level = states[:, None]  # [B, 1, S]: the root
    verdicts = [verdict(level)]
    for parent, byte in zip(loops.parent, loops.byte, strict=True):
        depth, width = parent.shape
        have = level.shape[1]  # the previous level, padded to this group's width
        level = (
            level[:, :width]
            if have >= width
            else jnp.pad(level, ((0, 0), (0, width - have)) + ((0, 0),) * (level.ndim - 2))
        )

        def body(d: Array, carry: tuple[Array, Array]) -> tuple[Array, Array]:
            level, seen = carry
            level = step(level[:, parent[d]], byte[d, :, None])  # noqa: B023
            return level, seen.at[:, d].set(verdict(level))

        seen = jnp.zeros((batch, depth, width), dtype=verdicts[0].dtype)
        level, seen = jax.lax.fori_loop(0, depth, body, (level, seen))
        verdicts.append(seen.reshape(batch, depth * width))
    return jnp.concatenate(verdicts, axis=1)[:, loops.token_place]
