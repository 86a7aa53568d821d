"""Exact match starts by a reverse scan of the pattern NFA.

When a matcher detects a match while reading symbol ``i`` (byte ``text[i]``, or END when
``i == len(text)``), the detected matches are (a) matches ``[s, i + 1)`` that end with byte ``i``
and need no look-ahead, and (b) matches ``[s, i)`` whose end assertion was confirmed by symbol
``i``. The *violating match* is the one with the leftmost start among them (ties: the longer,
i.e. (a)). The scan walks the NFA's edges backwards from the final state, evaluating assertions
against the actual neighbouring symbols (:mod:`shield.automata.boundaries`), so it costs time
linear in the match length. A word list's whole word can be confirmed on a later byte of the
non-word character that follows it (see :mod:`shield.automata.expand`); (b) then ends the match
at the start of that character.
"""

from __future__ import annotations

from dataclasses import dataclass

from shield.automata.boundaries import char_start, next_kind, prev_kind
from shield.automata.nfa import NFA

__all__ = ["ReverseScanner"]

_ALL_NEXT = 0b111


@dataclass(frozen=True, eq=False)
class ReverseScanner:
    """Reversed adjacency of one pattern NFA.

    Attributes:
        nfa: the pattern NFA.
    """

    nfa: NFA

    def __post_init__(self) -> None:
        n = self.nfa.n_states
        rev_eps: list[list[int]] = [[] for _ in range(n)]
        rev_assert: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        rev_bytes: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
        for q in range(n):
            for t in self.nfa.epsilon[q]:
                rev_eps[t].append(q)
            for mask, t in self.nfa.asserts[q]:
                rev_assert[t].append((mask, q))
            for lo, hi, t in self.nfa.byte_edges[q]:
                rev_bytes[t].append((lo, hi, q))
        object.__setattr__(self, "_eps", rev_eps)
        object.__setattr__(self, "_assert", rev_assert)
        object.__setattr__(self, "_bytes", rev_bytes)

    def _kind(self, text: bytes, pos: int) -> int:
        return next_kind(text, pos, self.nfa.word_chars)

    def _prev(self, text: bytes, pos: int) -> int:
        return prev_kind(text, pos, self.nfa.word_chars)

    def _closure(self, states: set[int], prev: int, next_bits: int) -> set[int]:
        """Backward closure at one position: ``next_bits`` are the kinds the next symbol may have."""
        eps: list[list[int]] = self._eps  # type: ignore[attr-defined]
        asserts: list[list[tuple[int, int]]] = self._assert  # type: ignore[attr-defined]
        seen = set(states)
        stack = list(states)
        while stack:  # each state is pushed at most once
            t = stack.pop()
            for q in eps[t]:
                if q not in seen:
                    seen.add(q)
                    stack.append(q)
            for mask, q in asserts[t]:
                allowed = (mask >> (3 * prev)) & 7
                if allowed & next_bits == next_bits and q not in seen:
                    seen.add(q)
                    stack.append(q)
        return seen

    def match_span(self, text: bytes, index: int, lower: int = 0) -> tuple[int, int] | None:
        """The violating match detected while reading symbol ``index``.

        Args:
            text: the bytes read so far (at least ``index`` of them; byte ``index`` when it is a byte).
            index: the detecting symbol: a byte offset, or ``len(text)`` for END.
            lower: matches must start at or after this offset.

        Returns:
            ``(start, end)`` byte offsets of the match, or None when no match was detected there.
        """
        nfa = self.nfa
        rev_bytes: list[list[tuple[int, int, int]]] = self._bytes  # type: ignore[attr-defined]
        best: tuple[int, int] | None = None
        ends = []
        if index < len(text):
            ends.append((index + 1, _ALL_NEXT))  # (a): next symbol unknown, must not matter
        # (b): confirmed by the character at ``index`` (or END); with word characters a
        # whole word is confirmed on a later byte of the non-word character that ends it.
        confirm = char_start(text, index) if self.nfa.word_chars else index
        ends.append((confirm, 1 << self._kind(text, confirm)))
        for end, next_bits in ends:
            if end < lower:
                continue
            current = self._closure({nfa.final}, self._prev(text, end), next_bits)
            pos = end
            while current:  # fuel: pos decreases every round and stops at ``lower``
                if nfa.start in current and (best is None or pos < best[0]):
                    best = (pos, end)
                if pos <= lower:
                    break
                byte = text[pos - 1]
                stepped = {q for t in current for lo, hi, q in rev_bytes[t] if lo <= byte <= hi}
                pos -= 1
                current = self._closure(stepped, self._prev(text, pos), 1 << self._kind(text, pos))
        return best
