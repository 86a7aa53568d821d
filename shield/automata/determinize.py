"""Subset construction: byte NFA → *matcher* DFA with match detection and restart states.

A matcher reads text (bytes, then END) and enters an accepting state right after it *detects*
a match: either the last byte of a match was read and no assertion waits for the next symbol, or
the symbol that a pending end assertion (``$``, ``\\b``, whole word) needed was read. After a
detection the matcher restarts: it behaves as if no match had begun, so consecutive detections
belong to non-overlapping matches (the next match starts after the detecting symbol).

A meta-state is a set of (NFA state, allowed-next-kinds) items plus, when the pattern has
assertions that look back, the kind of the previous symbol. Meta-states are indexed with a dict
through :func:`shield.automata.dfa.crawl`. The restart set is shared by every meta-state, so its moves
are computed once per (previous kind, class) and each meta-state only pays for its own items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shield.automata.alphabet import (
    KIND_END,
    KIND_OTHER,
    KIND_WORD,
    WORD_BYTES,
    refine,
    symbol_kinds,
)
from shield.automata.dfa import DFA, crawl
from shield.automata.limits import CompileLimits
from shield.automata.nfa import NFA
from shield.automata.syntax import PREV_BEGIN, PREV_OTHER, PREV_WORD

__all__ = ["Matcher", "determinize"]

_ALL_NEXT = 0b111  # bits KIND_END, KIND_WORD, KIND_OTHER
_PREV_AFTER = {KIND_WORD: PREV_WORD, KIND_OTHER: PREV_OTHER}

Item = int  # nfa_state * 8 + next-kinds mask
# ("S", items beyond the restart set, prev) | ("D", ∅, prev) | ("E" or "ED", ∅, 0)
Key = tuple[str, frozenset[Item], int]


@dataclass(frozen=True, eq=False)
class Matcher:
    """A matcher DFA and its restart states.

    Attributes:
        dfa: accepting states are "a match was just detected" states (not absorbing).
        restart: int [3], the state of a fresh matcher whose previous symbol had kind
            ``PREV_BEGIN``, ``PREV_WORD`` or ``PREV_OTHER``.
    """

    dfa: DFA
    restart: tuple[int, int, int]


class _Subsets:
    """The successor function of the subset construction."""

    def __init__(self, nfa: NFA) -> None:
        self.nfa = nfa
        grouped: dict[tuple[int, int], list[int]] = {}
        for q, edges in enumerate(nfa.byte_edges):
            for lo, hi, target in edges:
                grouped.setdefault((q, target), []).extend(range(lo, hi + 1))
        sets: list[list[int]] = list(grouped.values())
        if nfa.has_asserts:
            sets.append(np.flatnonzero(WORD_BYTES[:256]).tolist())
        self.classes = refine(sets)
        self.n_classes = int(self.classes.max()) + 1
        kinds = symbol_kinds()
        self.class_kind = [
            int(kinds[int(np.flatnonzero(self.classes == c)[0])]) for c in range(self.n_classes)
        ]
        self.moves: list[dict[int, list[int]]] = []
        for edges in nfa.byte_edges:
            table: dict[int, list[int]] = {}
            for lo, hi, target in edges:
                for c in sorted(set(self.classes[lo : hi + 1].tolist())):
                    table.setdefault(c, []).append(target)
            self.moves.append(table)
        self.uses_prev = any(
            (mask >> (3 * PREV_WORD)) & 7 != (mask >> (3 * PREV_OTHER)) & 7
            or (mask >> (3 * PREV_BEGIN)) & 7 != (mask >> (3 * PREV_OTHER)) & 7
            for edges in nfa.asserts
            for mask, _ in edges
        )
        self.restart = {
            p: self.closure([(nfa.start, _ALL_NEXT)], p)
            for p in (PREV_BEGIN, PREV_WORD, PREV_OTHER)
        }
        self.base_rows: dict[int, list[Key]] = {}

    def prev(self, p: int) -> int:
        return p if self.uses_prev else PREV_OTHER

    def closure(self, seeds: list[tuple[int, int]], prev: int) -> tuple[frozenset[Item], bool]:
        """Items reachable by epsilon/assertion edges, and whether a match completes here."""
        nfa = self.nfa
        seen: set[Item] = set()
        stack = [q * 8 + m for q, m in seeds]
        keep: list[Item] = []
        detected = False
        while stack:  # each (state, mask) pair is pushed at most once: at most 8 * n_states
            item = stack.pop()
            if item in seen:
                continue
            seen.add(item)
            q, m = divmod(item, 8)
            if q == nfa.final:
                if m == _ALL_NEXT:
                    detected = True
                else:
                    keep.append(item)
                continue
            if nfa.byte_edges[q]:
                keep.append(item)
            stack.extend(t * 8 + m for t in nfa.epsilon[q])
            for mask, t in nfa.asserts[q]:
                allowed = m & (mask >> (3 * prev)) & 7
                if allowed:
                    stack.append(t * 8 + allowed)
        return frozenset(keep), detected

    def key(self, items: frozenset[Item], detected: bool, prev: int) -> Key:
        prev = self.prev(prev)
        if detected:
            return ("D", frozenset(), prev)
        return ("S", items - self.restart[prev][0], prev)

    def step(self, items: frozenset[Item], prev: int, c: int) -> Key:
        """The key after reading class ``c`` from the item set ``items``."""
        kind = self.class_kind[c]
        bit = 1 << kind
        final = self.nfa.final
        pending = any(i // 8 == final and i & bit for i in items)
        if kind == KIND_END:
            return ("ED", frozenset(), 0) if pending else ("E", frozenset(), 0)
        new_prev = _PREV_AFTER[kind]
        if pending:
            return self.key(frozenset(), True, new_prev)
        seeds = [(t, _ALL_NEXT) for i in items if i & bit for t in self.moves[i // 8].get(c, ())]
        closed, detected = self.closure(seeds, new_prev)
        _, restart_detected = self.restart[self.prev(new_prev)]
        return self.key(closed, detected or restart_detected, new_prev)

    def successors(self, key: Key) -> list[Key]:
        tag, items, prev = key
        if tag in ("E", "ED"):
            return [("E", frozenset(), 0)] * self.n_classes
        base_items = self.restart[prev][0]
        if prev not in self.base_rows:
            self.base_rows[prev] = [self.step(base_items, prev, c) for c in range(self.n_classes)]
        own = items  # keys hold only the items beyond the shared restart set
        if tag == "D" or not own:
            return self.base_rows[prev]
        items = own | base_items
        row = list(self.base_rows[prev])
        touched = {c for i in own for c in self.moves[i // 8]}
        if any(i // 8 == self.nfa.final for i in own):
            touched = set(range(self.n_classes))
        for c in touched:
            row[c] = self.step(items, prev, c)
        return row


def determinize(nfa: NFA, limits: CompileLimits, *, what: str) -> Matcher:
    """The matcher DFA of a byte NFA (see the module docstring).

    Args:
        nfa: the pattern NFA.
        limits: ``max_dfa_states`` applies.
        what: names the rule in error messages.

    Returns:
        The matcher with its restart states.

    Raises:
        CompileError: the DFA would exceed ``limits.max_dfa_states`` or the construction
            ``limits.max_rule_seconds``.
        ValueError: the NFA's assertions read characters (``nfa.word_chars``), not bytes.
    """
    if nfa.word_chars:
        raise ValueError(
            "determinize reads bytes: its assertions cannot see non-ASCII word characters; "
            "build the NFA without word_chars (word lists use shield.automata.wordlist.words_matcher)"
        )
    subsets = _Subsets(nfa)
    keys = {
        p: subsets.key(*subsets.restart[subsets.prev(p)], p)
        for p in (PREV_BEGIN, PREV_WORD, PREV_OTHER)
    }
    initial = keys[PREV_BEGIN]
    dfa, states = crawl(
        initial,
        subsets.classes,
        subsets.successors,
        lambda k: k[0] in ("D", "ED"),
        max_states=limits.max_dfa_states,
        what=what,
        extra_roots=[keys[PREV_WORD], keys[PREV_OTHER]],
        max_seconds=limits.max_rule_seconds,
    )
    index = {k: i for i, k in enumerate(states)}
    restart = tuple(
        index[keys[p]] if p != PREV_BEGIN else 0 for p in (PREV_BEGIN, PREV_WORD, PREV_OTHER)
    )
    return Matcher(dfa=dfa, restart=(restart[0], restart[1], restart[2]))
