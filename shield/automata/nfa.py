"""Thompson construction: pattern AST → byte-level NFA with epsilon and assertion edges.

Character sets become small byte automata through their UTF-8 byte-range sequences (sequences
sharing a prefix share states). Assertions become edges labelled with their 9-bit mask (see
:mod:`shield.automata.syntax`). The NFA has one start and one final state. Its size is estimated before
construction so that a huge counted repetition fails fast with :class:`CompileError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shield.automata.limits import CompileLimits
from shield.automata.syntax import Alt, Assert, CharSet, Concat, Node, Repeat
from shield.automata.unicode import utf8_sequences
from shield.errors import CompileError

__all__ = ["NFA", "build_nfa", "estimate_states"]

ByteEdge = tuple[int, int, int]  # (low byte, high byte, target)


@dataclass(frozen=True, eq=False)
class NFA:
    """A Thompson NFA over bytes.

    Attributes:
        start: the start state.
        final: the single final state (it has no outgoing edges).
        byte_edges: per state, (low byte, high byte, target) edges.
        epsilon: per state, targets of epsilon edges.
        asserts: per state, (mask, target) assertion edges.
        word_chars: non-ASCII code points that assertions count as word characters (word
            lists' whole words, see :mod:`shield.automata.boundaries`); empty: ASCII bytes only.
            The subset construction (:mod:`shield.automata.determinize`) reads bytes only and
            refuses an NFA with word characters.
    """

    start: int
    final: int
    byte_edges: tuple[tuple[ByteEdge, ...], ...]
    epsilon: tuple[tuple[int, ...], ...]
    asserts: tuple[tuple[tuple[int, int], ...], ...]
    word_chars: frozenset[int] = frozenset()

    @property
    def n_states(self) -> int:
        """Number of states."""
        return len(self.epsilon)

    @property
    def has_asserts(self) -> bool:
        """Whether any assertion edge exists."""
        return any(self.asserts)


def estimate_states(node: Node, limits: CompileLimits) -> int:
    """An upper bound on the NFA states :func:`build_nfa` creates for ``node``.

    Args:
        node: the pattern.
        limits: for the repetition bound.

    Returns:
        The bound.

    Raises:
        CompileError: a counted repetition exceeds ``limits.max_repeat``.
    """
    stack: list[tuple[Node, int]] = [(node, 1)]
    total = 0
    while stack:  # iterative: terminates because every pushed node is a strict sub-node
        item, times = stack.pop()
        if isinstance(item, CharSet):
            total += times * (1 + 4 * len(item.ranges) + 8)
        elif isinstance(item, Assert):
            total += times
        elif isinstance(item, Concat | Alt):
            total += times * 2
            stack.extend((child, times) for child in item.items)
        else:
            bound = item.high if item.high is not None else item.low + 1
            if bound > limits.max_repeat:
                raise CompileError(
                    f"counted repetition {{{item.low},{item.high}}} exceeds max_repeat={limits.max_repeat}; "
                    "use a smaller bound or raise CompileLimits.max_repeat"
                )
            total += times * (bound + 2)
            stack.append((item.item, times * max(bound, 1)))
        if total > 4 * limits.max_nfa_states:
            break
    return total


class _Builder:
    def __init__(self, limits: CompileLimits) -> None:
        self.byte_edges: list[list[ByteEdge]] = []
        self.epsilon: list[list[int]] = []
        self.asserts: list[list[tuple[int, int]]] = []
        self.limit = limits.max_nfa_states

    def new(self) -> int:
        if len(self.epsilon) >= self.limit:
            raise CompileError(
                f"the pattern needs more than max_nfa_states={self.limit} NFA states; "
                "use smaller counted repetitions or fewer words, or raise CompileLimits.max_nfa_states"
            )
        self.byte_edges.append([])
        self.epsilon.append([])
        self.asserts.append([])
        return len(self.epsilon) - 1

    def build(self, node: Node, src: int) -> int:
        """Add ``node`` starting at ``src``; returns the state where it ends."""
        if isinstance(node, CharSet):
            return self.charset(node, src)
        if isinstance(node, Assert):
            dst = self.new()
            self.asserts[src].append((node.mask, dst))
            return dst
        if isinstance(node, Concat):
            for item in node.items:
                src = self.build(item, src)
            return src
        if isinstance(node, Alt):
            dst = self.new()
            for item in node.items:
                branch = self.new()
                self.epsilon[src].append(branch)
                self.epsilon[self.build(item, branch)].append(dst)
            return dst
        return self.repeat(node, src)

    def repeat(self, node: Repeat, src: int) -> int:
        for _ in range(node.low):
            src = self.build(node.item, src)
        if node.high is None:
            loop = self.new()
            self.epsilon[src].append(loop)
            self.epsilon[self.build(node.item, loop)].append(loop)
            return loop
        dst = self.new()
        for _ in range(node.high - node.low):
            self.epsilon[src].append(dst)
            src = self.build(node.item, src)
        self.epsilon[src].append(dst)
        return dst

    def charset(self, node: CharSet, src: int) -> int:
        dst = self.new()
        prefixes: dict[tuple[tuple[int, int], ...], int] = {(): src}
        for lo, hi in node.ranges:
            for seq in utf8_sequences(lo, hi):
                state = src
                for i, (b_lo, b_hi) in enumerate(seq[:-1]):
                    key = seq[: i + 1]
                    nxt = prefixes.get(key)
                    if nxt is None:
                        nxt = prefixes[key] = self.new()
                        self.byte_edges[state].append((b_lo, b_hi, nxt))
                    state = nxt
                self.byte_edges[state].append((seq[-1][0], seq[-1][1], dst))
        return dst


def build_nfa(
    node: Node, limits: CompileLimits, *, word_chars: frozenset[int] = frozenset()
) -> NFA:
    """Thompson NFA of a pattern.

    Args:
        node: the pattern AST.
        limits: ``max_nfa_states`` and ``max_repeat`` apply.
        word_chars: non-ASCII word characters for its assertions (see :class:`NFA`).

    Returns:
        The NFA.

    Raises:
        CompileError: a limit would be exceeded (checked before construction where possible).
    """
    estimate = estimate_states(node, limits)
    if estimate > 4 * limits.max_nfa_states:
        raise CompileError(
            f"the pattern would need about {estimate} NFA states, over max_nfa_states="
            f"{limits.max_nfa_states}; use smaller counted repetitions or raise the limit"
        )
    builder = _Builder(limits)
    start = builder.new()
    end = builder.build(node, start)
    final = builder.new()  # a fresh final state, so that it has no outgoing edges
    builder.epsilon[end].append(final)
    return NFA(
        start=start,
        final=final,
        byte_edges=tuple(tuple(e) for e in builder.byte_edges),
        epsilon=tuple(tuple(e) for e in builder.epsilon),
        asserts=tuple(tuple(e) for e in builder.asserts),
        word_chars=word_chars,
    )
