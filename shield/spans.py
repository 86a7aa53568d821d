"""Full match spans: the leftmost-longest matches of a pattern in a whole text.

The decoder detects a violation at the earliest byte where some match is complete (see
:mod:`shield.automata.reverse`); a scan of a finished text reports whole matches instead, the way
``re`` and ``grep`` do, so that redacting a reported span removes the whole secret.

Definitions, for a pattern NFA over the bytes ``T`` of a whole text (END after it):

- a **match** is a pair ``(s, e)`` such that the NFA reads ``T[s:e]`` from its start state to its
  final state with every assertion (``^ $ \\b \\B``, whole word) true of the actual neighbouring
  symbols (the byte before ``s``, or the start of the text; the byte at ``e``, or END; for word
  lists' whole words, the characters there: see :mod:`shield.automata.boundaries`);
- the **leftmost-longest** match at or after ``p``: ``s`` is the least start ``>= p`` of any match,
  ``e`` the greatest end of a match that starts at ``s``;
- the matches of a pattern from ``p`` are the leftmost-longest match at or after ``p``, then those
  at or after its end (after an empty match, its end plus one).

The start is the one ``re.search`` finds (a backtracking search tries every start in order); the
end is the POSIX choice, the longest, where ``re`` takes the first alternative that succeeds (for
``a|ab`` on ``ab``, ``re`` says ``a``, this module ``ab``). The tests compare both with ``re``.

Both searches simulate the NFA forward over the real bytes, in time linear in the text times the
NFA's live states: the start search runs one thread per NFA state tagged with the least start that
reaches it (two threads in one state at one position have the same future, so the lesser start
wins), the end search runs the threads of one start until none is left.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from shield.automata.alphabet import END
from shield.automata.boundaries import next_kind, prev_kind
from shield.automata.compiler import CompiledRule, pattern_matcher
from shield.automata.dfa import DFA
from shield.automata.exemptions import repeat_exemptions
from shield.automata.limits import DEFAULT_LIMITS
from shield.automata.nfa import NFA
from shield.rules import AfterRule, AtMostRule, LiteralRule, Pattern, WordsRule

__all__ = ["leftmost_longest", "rule_spans"]


def leftmost_longest(nfa: NFA, data: bytes, lower: int = 0) -> list[tuple[int, int]]:
    """Every leftmost-longest match of ``nfa`` in ``data`` that starts at or after ``lower``.

    Args:
        nfa: the pattern's Thompson NFA.
        data: the whole text's bytes (END follows them).
        lower: the earliest start allowed (context before it still decides assertions).

    Returns:
        ``(start, end)`` byte offsets, in order and not overlapping (see the module docstring).

    Example:
        >>> from shield.automata.limits import DEFAULT_LIMITS
        >>> from shield.automata.nfa import build_nfa
        >>> from shield.automata.regex import parse_regex
        >>> leftmost_longest(build_nfa(parse_regex("a+|b"), DEFAULT_LIMITS), b"xaaab")
        [(1, 4), (4, 5)]
    """
    spans: list[tuple[int, int]] = []
    position = lower
    for _ in range(len(data) + 2):  # fuel: every round moves ``position`` forward by at least one
        if position > len(data):
            break
        start = _leftmost_start(nfa, data, position)
        if start is None:
            break
        end = _longest_end(nfa, data, start)
        spans.append((start, end))
        position = end if end > start else start + 1
    return spans


def _leftmost_start(nfa: NFA, data: bytes, lower: int) -> int | None:
    """The least start ``>= lower`` of a match, or None."""
    seeds = _seeds(nfa)
    threads: dict[int, int] = {}  # NFA state -> least start that reaches it here
    best: int | None = None
    for position in range(lower, len(data) + 1):  # fuel: one round per position
        context = (
            prev_kind(data, position, nfa.word_chars),
            next_kind(data, position, nfa.word_chars),
        )
        if not threads and best is None:  # the common case: only a fresh start is alive
            if nfa.final in seeds.closure(context, data, position):
                return position  # an empty match here, and no earlier start has any
            if position == len(data):
                break
            threads = dict.fromkeys(seeds.moves(context, data[position], data, position), position)
            continue
        closed = _closure(nfa, sorted(threads.items(), key=lambda item: item[1]), data, position)
        if best is None:  # a match may start here; its tag is the greatest so far
            for q in seeds.closure(context, data, position):
                closed.setdefault(q, position)
        reached = closed.get(nfa.final)
        if reached is not None and (best is None or reached < best):
            best = reached
        if best is not None:
            closed = {q: tag for q, tag in closed.items() if tag < best}
            if not closed:
                return best
        if position == len(data):
            break
        byte = data[position]
        threads = _step(nfa, {q: t for q, t in closed.items() if t < position}, byte)
        if best is None:
            for q in seeds.moves(context, byte, data, position):
                threads.setdefault(q, position)
    return best


class _Seeds:
    """The start state's closure and byte moves, per context, tabled on first use per NFA.

    Seeding a thread at every position is the scan's inner loop, and a word list's start closure
    has hundreds of states. The closure depends only on the kinds around the position (the
    assertion masks read nothing else), its moves on those kinds and the byte read.
    """

    def __init__(self, nfa: NFA) -> None:
        self._nfa = nfa
        self._closures: dict[tuple[int, int], tuple[int, ...]] = {}
        self._moves: dict[tuple[int, int, int], tuple[int, ...]] = {}

    def closure(self, context: tuple[int, int], data: bytes, position: int) -> tuple[int, ...]:
        """The start closure at ``position`` of ``data``, whose kinds are ``context``."""
        found = self._closures.get(context)
        if found is None:
            closed = _closure(self._nfa, [(self._nfa.start, position)], data, position)
            found = self._closures[context] = tuple(closed)
        return found

    def moves(
        self, context: tuple[int, int], byte: int, data: bytes, position: int
    ) -> tuple[int, ...]:
        """The states the start closure reaches by reading ``byte`` at ``position``."""
        key = (*context, byte)
        found = self._moves.get(key)
        if found is None:
            edges = self._nfa.byte_edges
            closed = self.closure(context, data, position)
            targets = (t for q in closed for lo, hi, t in edges[q] if lo <= byte <= hi)
            found = self._moves[key] = tuple(dict.fromkeys(targets))
        return found


@functools.lru_cache(maxsize=64)
def _seeds(nfa: NFA) -> _Seeds:
    return _Seeds(nfa)


def _longest_end(nfa: NFA, data: bytes, start: int) -> int:
    """The greatest end of a match that starts at ``start`` (one is known to exist)."""
    end = start
    threads = {nfa.start: start}
    for position in range(start, len(data) + 1):  # fuel: one round per position
        closed = _closure(nfa, list(threads.items()), data, position)
        if nfa.final in closed:
            end = position
        if position == len(data) or not closed:
            break
        threads = _step(nfa, closed, data[position])
        if not threads:
            break
    return end


def _closure(
    nfa: NFA, seeds: Iterable[tuple[int, int]], data: bytes, position: int
) -> dict[int, int]:
    """States reachable by epsilon and (true) assertion edges at ``position``, with their tags.

    Seeds come in increasing tag order and each is closed before the next, so every state keeps
    the least tag that reaches it.
    """
    prev = prev_kind(data, position, nfa.word_chars)
    kind = next_kind(data, position, nfa.word_chars)
    closed: dict[int, int] = {}
    for seed, tag in seeds:
        if seed in closed:
            continue
        closed[seed] = tag
        stack = [seed]
        while stack:  # each state is pushed once per closure
            q = stack.pop()
            targets = list(nfa.epsilon[q])
            targets += [t for mask, t in nfa.asserts[q] if (mask >> (3 * prev + kind)) & 1]
            for t in targets:
                if t not in closed:
                    closed[t] = tag
                    stack.append(t)
    return closed


def _step(nfa: NFA, closed: dict[int, int], byte: int) -> dict[int, int]:
    """The threads after reading ``byte``, each state with the least tag that reaches it."""
    out: dict[int, int] = {}
    for q, tag in sorted(closed.items(), key=lambda item: item[1]):
        for lo, hi, t in nfa.byte_edges[q]:
            if lo <= byte <= hi and t not in out:
                out[t] = tag
    return out


def rule_spans(rule: CompiledRule, data: bytes) -> list[tuple[int, int]]:
    """The spans a scan reports for one compiled rule in a whole text (byte offsets).

    Which matches count is the rule's automaton's decision (nothing when it never detects;
    for ``after`` and ``at_most`` rules the matches from where the rule starts to count); their
    spans are the leftmost-longest matches of the rule's pattern. A staged rule reads the text
    without its invisible characters, so its spans are searched there and mapped back (the
    invisible characters inside a match belong to it). Exempt words are dropped.

    Args:
        rule: a compiled rule.
        data: the whole text's bytes (END follows them).

    Returns:
        ``(start, end)`` byte offsets, in order and not overlapping.
    """
    if rule.kind == "max_length":
        limit = rule.rule.max_bytes  # type: ignore[union-attr]
        return [(limit, len(data))] if len(data) > limit else []
    if not _fires(rule, data):
        return []  # the automaton decides whether the rule is violated at all
    assert rule.scanner is not None  # every rule but max_length has a pattern
    # A staged rule reads the text without its invisible characters: its spans are searched
    # there, folded (shield.automata.fold), and mapped back (invisible characters inside a
    # match belong to it).
    seen = rule.visible(data)
    spans = leftmost_longest(rule.scanner.nfa, seen.data, _counts_from(rule, data))
    exempt, fold = _exemptions(_violating_pattern(rule.rule))
    if exempt:
        # The matcher never counts an exempt word (shield.automata.exemptions); the pattern
        # that spans are searched with cannot say so, so its spans of exempt words are dropped.
        spans = [
            (s, e)
            for s, e in spans
            if (seen.data[s:e].lower() if fold else seen.data[s:e]) not in exempt
        ]
    return [seen.span(span) for span in spans]


def _violating_pattern(rule: Any) -> Any:
    """The part of a rule whose matches are the violations (the forbidden pattern)."""
    if isinstance(rule, AfterRule):
        return rule.forbid
    return rule.pattern if isinstance(rule, AtMostRule) else rule


@functools.lru_cache(maxsize=64)
def _exemptions(pattern: Any) -> tuple[frozenset[bytes], bool]:
    """The exempt words of a word-list pattern as bytes, and whether they compare case-folded."""
    if not isinstance(pattern, WordsRule | LiteralRule):
        return frozenset(), False
    words = (pattern.literal,) if isinstance(pattern, LiteralRule) else pattern.words
    exempt = repeat_exemptions(tuple(dict.fromkeys(words)), pattern.match)
    return frozenset(w.encode() for w in exempt), pattern.match.case_insensitive


def _counts_from(rule: CompiledRule, data: bytes) -> int:
    """The byte offset from which the matches of ``rule`` are violations.

    An after rule counts the matches that start after the symbol that detected its trigger; an
    at-most rule those after the symbol that detected its last allowed match (matches counted as
    the automaton counts them, each detected at its earliest byte); other rules every match.
    """
    source = rule.rule
    if isinstance(source, AfterRule):
        found = _detections(_matcher(source.trigger), data, 1)
        return found[0] + 1 if found else len(data) + 1
    if isinstance(source, AtMostRule) and source.count > 0:
        found = _detections(_matcher(source.pattern), data, source.count)
        return found[-1] + 1 if len(found) == source.count else len(data) + 1
    return 0


@functools.lru_cache(maxsize=64)
def _matcher(pattern: Pattern) -> DFA:
    """The matcher of a rule's part (the same automaton the rule was built from)."""
    return pattern_matcher(pattern, DEFAULT_LIMITS)


def _fires(rule: CompiledRule, data: bytes) -> bool:
    """Whether the rule's automaton detects anything in ``data`` (END read after it)."""
    if rule.composed is not None:
        composed = rule.composed
        return composed.violating(composed.walk(composed.initial, data, final=True))
    assert rule.matcher is not None  # a compiled rule holds one of the two forms
    return bool(_detections(rule.matcher, data, 1))


def _detections(matcher: DFA, data: bytes, limit: int) -> list[int]:
    """The symbol offsets (``len(data)`` for END) of the first ``limit`` detections of ``matcher``."""
    table, classes = matcher.transitions, matcher.classes
    accepting = matcher.accepting
    state, found = matcher.initial, []
    for index, symbol in enumerate([*data, END]):  # fuel: one round per symbol
        state = int(table[state, classes[symbol]])
        if accepting[state]:
            found.append(index)
            if len(found) == limit:
                break
    return found
