"""Patterns with assertions as byte languages without them: the walk over symbol kinds.

llguidance regexes have no ``\\b``, ``^``, ``$`` nor look-around, but an assertion of ours only
looks at the *kind* of the symbol before and after it (start of text, word byte, other byte; end of
text, word byte, other byte; see :mod:`shield.automata.syntax`). So a pattern is walked with a
small state: the kind of the previous symbol (tracked only where an assertion that depends on it
can still be reached) and the set of kinds the next symbol may have (what a passed assertion
still waits for). A character consumes a code point of an allowed kind; an assertion narrows the
set; the walk records, for each state, the term matching the text read so far.

:func:`detections` gives, for a text that starts after a symbol of a given kind (``PREV_BEGIN``
at the start of the text, or the kind of the byte that detected a previous match, after which our
matchers restart), the texts that end right after a match, by what the match still waits for.
Every rule is built from three languages derived from them (:class:`Detections`):

- ``at_byte``: texts whose last byte *detects* a match: the match's last byte when nothing is
  pending, or the byte after it that a pending end assertion accepts;
- ``at_end``: texts after which END detects a match (a pending assertion that accepts END);
- ``contained``: texts that hold a detected match anywhere.

This is exactly when the matcher DFA of :mod:`shield.automata.determinize` detects. Regexes read
byte kinds; a word list's whole words read character kinds (:class:`~shield.export.terms.
Boundaries`), for which only ``contained`` is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from shield.automata.alphabet import KIND_END, KIND_OTHER, KIND_WORD
from shield.automata.syntax import (
    PREV_BEGIN,
    PREV_OTHER,
    PREV_WORD,
    Alt,
    Assert,
    CharSet,
    Concat,
    Node,
    Repeat,
)
from shield.export import terms
from shield.export.regex_text import Facts, charset_text, regex_text, split_word
from shield.export.terms import Boundaries, Term

__all__ = ["MAX_UNROLL", "Detections", "NotExpressible", "detections"]

#: Most copies of a repeated group that holds assertions the walk spells out (``(\\bab){3,9}``).
MAX_UNROLL = 64

#: The previous kind is not tracked (no assertion that depends on it can be reached).
UNTRACKED = 3
_ALL = (1 << KIND_END) | (1 << KIND_WORD) | (1 << KIND_OTHER)
_PREV_OF = {KIND_WORD: PREV_WORD, KIND_OTHER: PREV_OTHER}

State = tuple[int, int]  # (previous kind or UNTRACKED, allowed next kinds as a bit set)
States = dict[State, Term]


class NotExpressible(ValueError):
    """A rule the export cannot write as a grammar; the message says why (and any bound)."""


@dataclass(frozen=True)
class Detections:
    """Where a pattern's matches end, from one restart kind.

    Attributes:
        ends: per set of next kinds still allowed (a bit set over ``KIND_END``, ``KIND_WORD``,
            ``KIND_OTHER``; all three when nothing is pending), the texts that end right after
            a match with that set pending.
        bounds: the boundary terms the pattern's assertions read.
    """

    ends: dict[int, Term]
    bounds: Boundaries

    def at_byte(self) -> Term | None:
        """Texts whose last byte detects a match (byte kinds only).

        Raises:
            NotExpressible: the pattern reads character kinds, whose detecting byte lies inside
                the next character.
        """
        if self.bounds.by_characters:
            raise NotExpressible(
                "its whole words are judged by characters (a look-alike letter continues a"
                " word), and which byte of the next character detects the match decides where"
                " the next match may start; the export does not model that byte"
            )
        found: list[Term | None] = []
        for allowed, term in self.ends.items():
            if allowed == _ALL:
                found.append(term)
                continue
            if allowed & (1 << KIND_WORD):
                found.append(terms.seq(term, self.bounds.word))
            if allowed & (1 << KIND_OTHER):
                found.append(terms.seq(term, self.bounds.one_other))
        return terms.alt(found)

    def at_end(self) -> Term | None:
        """Texts after which END detects a match (a pending assertion accepts the end)."""
        return terms.alt(
            term
            for allowed, term in self.ends.items()
            if allowed != _ALL and allowed & (1 << KIND_END)
        )

    def contained(self) -> Term | None:
        """Texts that hold a detected match anywhere (what a forbid rule rejects)."""
        found: list[Term | None] = []
        for allowed, term in self.ends.items():
            if allowed == _ALL:
                found.append(terms.seq(term, terms.ANY))
                continue
            if allowed & (1 << KIND_WORD):
                found.append(terms.seq(term, self.bounds.starts_word))
            if allowed & (1 << KIND_OTHER):
                found.append(terms.seq(term, self.bounds.starts_other))
            if allowed & (1 << KIND_END):
                found.append(term)
        return terms.alt(found)


def detections(node: Node, restart: int, facts: Facts, bounds: Boundaries) -> Detections:
    """Where the matches of a pattern end, for a text that starts after a ``restart`` symbol.

    Args:
        node: the pattern AST.
        restart: ``PREV_BEGIN``, ``PREV_WORD`` or ``PREV_OTHER``.
        facts: the memoised facts of ``node``'s AST.
        bounds: the boundary terms its assertions read.

    Returns:
        The texts ending right after a match, by the next kinds still allowed.

    Raises:
        NotExpressible: a repeated group with assertions needs more than :data:`MAX_UNROLL`
            copies.
    """
    walker = _Walker(facts, bounds)
    if facts.reaches_prev_assert(node):
        ends = {PREV_WORD: bounds.ends_word, PREV_OTHER: bounds.ends_other}
        entry: States = {}
        for prev in (PREV_BEGIN, PREV_WORD, PREV_OTHER):
            term = terms.alt([terms.EMPTY if prev == restart else None, ends.get(prev)])
            if term is not None:
                entry[(prev, _ALL)] = term
    else:
        entry = {(UNTRACKED, _ALL): terms.ANY}
    final = walker.walk(node, entry, live_after=False)
    collect: dict[int, list[Term | None]] = {}
    for (_, allowed), term in final.items():
        collect.setdefault(allowed, []).append(term)
    ends_by: dict[int, Term] = {}
    for allowed, parts in collect.items():
        joined = terms.alt(parts)
        if joined is not None:
            ends_by[allowed] = joined
    return Detections(ends_by, bounds)


def _row(mask: int, prev: int) -> int:
    """The next kinds an assertion allows after a ``prev`` symbol (any row when untracked)."""
    return (mask >> (3 * (PREV_OTHER if prev == UNTRACKED else prev))) & 7


class _Collect:
    """Terms gathered per state, joined into one alternation per state at the end."""

    def __init__(self) -> None:
        self.parts: dict[State, list[Term | None]] = {}

    def add(self, state: State, term: Term | None) -> None:
        if term is not None:
            self.parts.setdefault(state, []).append(term)

    def states(self) -> States:
        out: States = {}
        for state, parts in self.parts.items():
            joined = terms.alt(parts)
            if joined is not None:
                out[state] = joined
        return out


class _Walker:
    """The walk of one AST over (previous kind, allowed next kinds) states."""

    def __init__(self, facts: Facts, bounds: Boundaries) -> None:
        self.facts = facts
        self.bounds = bounds
        self._regex: dict[int, Term | None] = {}

    def regex(self, node: Node) -> Term | None:
        """The literal of an assertion-free node (one shared term per node)."""
        if id(node) not in self._regex:
            text = regex_text(node)
            self._regex[id(node)] = None if text is None else terms.literal(text)
        return self._regex[id(node)]

    def walk(self, node: Node, states: States, *, live_after: bool) -> States:
        """The states after ``node`` from ``states``; ``live_after``: the previous kind matters next."""
        if isinstance(node, CharSet):
            out = self._charset(node, states, live_after)
        elif isinstance(node, Assert):
            collect = _Collect()
            for (prev, allowed), term in states.items():
                narrowed = allowed & _row(node.mask, prev)
                if narrowed:
                    collect.add((prev, narrowed), term)
            out = collect.states()
        elif not self.facts.has_assert(node):
            out = self._plain(node, states, live_after)
        elif isinstance(node, Concat):
            out = self._concat(node.items, states, live_after)
        elif isinstance(node, Alt):
            collect = _Collect()
            for item in node.items:
                for state, term in self.walk(item, states, live_after=live_after).items():
                    collect.add(state, term)
            out = collect.states()
        else:
            assert isinstance(node, Repeat)
            out = self._repeat(node, states, live_after)
        return self._forget(out, live_after)

    @staticmethod
    def _forget(states: States, live_after: bool) -> States:
        """Merge states that differ only in a previous kind nothing will look at."""
        if live_after or all(prev == UNTRACKED for prev, _ in states):
            return states
        collect = _Collect()
        for (_, allowed), term in states.items():
            collect.add((UNTRACKED, allowed), term)
        return collect.states()

    def _charset(self, node: CharSet, states: States, live_after: bool) -> States:
        word, other = split_word(node, self.bounds.word_ranges)
        parts = {KIND_WORD: word, KIND_OTHER: other}
        collect = _Collect()
        for (_, allowed), term in states.items():
            kinds = [k for k in (KIND_WORD, KIND_OTHER) if allowed & (1 << k)]
            if live_after:
                for kind in kinds:
                    text = charset_text(parts[kind].ranges)
                    if text is not None:
                        collect.add((_PREV_OF[kind], _ALL), terms.seq(term, terms.literal(text)))
                continue
            if len(kinds) == 2:
                chars = self.regex(node)
            else:
                text = charset_text(parts[kinds[0]].ranges) if kinds else None
                chars = None if text is None else terms.literal(text)
            collect.add((UNTRACKED, _ALL), terms.seq(term, chars))
        return collect.states()

    def _plain(self, node: Node, states: States, live_after: bool) -> States:
        """An assertion-free node: one literal, restricted at its edges only where it matters."""
        body = self.regex(node)
        collect = _Collect()
        empty = self.facts.nullable(node)
        for state, term in states.items():
            allowed = state[1]
            if not live_after and allowed == _ALL:
                # Nothing before or after the literal depends on its edges: it is used whole, its
                # own empty match included.
                collect.add((UNTRACKED, _ALL), terms.seq(term, body))
                continue
            if empty:
                collect.add(state, term)
            some = terms.both(body, terms.NONEMPTY) if empty else body
            if not allowed & (1 << KIND_WORD):
                some = terms.both(some, self.bounds.starts_other)
            elif not allowed & (1 << KIND_OTHER):
                some = terms.both(some, self.bounds.starts_word)
            if not allowed & ((1 << KIND_WORD) | (1 << KIND_OTHER)):
                continue
            if live_after:
                collect.add(
                    (PREV_WORD, _ALL), terms.seq(term, terms.both(some, self.bounds.ends_word))
                )
                collect.add(
                    (PREV_OTHER, _ALL), terms.seq(term, terms.both(some, self.bounds.ends_other))
                )
            else:
                collect.add((UNTRACKED, _ALL), terms.seq(term, some))
        return collect.states()

    def _concat(self, items: tuple[Node, ...], states: States, live_after: bool) -> States:
        live = [live_after] * len(items)  # live[i]: the previous kind matters after item i
        following = live_after
        for i in range(len(items) - 1, -1, -1):
            live[i] = following
            item = items[i]
            following = self.facts.reaches_prev_assert(item) or (
                self.facts.nullable(item) and following
            )
        for item, live_i in zip(items, live, strict=True):
            states = self.walk(item, states, live_after=live_i)
            if not states:
                break
        return states

    def _repeat(self, node: Repeat, states: States, live_after: bool) -> States:
        loop_live = live_after or self.facts.reaches_prev_assert(node.item)
        copies = node.low + (0 if node.high is None else node.high - node.low)
        if copies > MAX_UNROLL:
            raise NotExpressible(
                f"a repeated group with assertions needs {copies} copies, over MAX_UNROLL="
                f"{MAX_UNROLL}; lower the repetition count or move the assertion out of the group"
            )
        for _ in range(node.low):
            states = self.walk(node.item, states, live_after=loop_live)
        if node.high is None:
            return self._star(node.item, states, loop_live)
        for _ in range(node.high - node.low):
            collect = _Collect()
            for state, term in [
                *states.items(),
                *self.walk(node.item, states, live_after=loop_live).items(),
            ]:
                collect.add(state, term)
            states = collect.states()
        return states

    def _star(self, item: Node, entry: States, live: bool) -> States:
        """``item*`` from ``entry``: Kleene's construction over the few states the loop visits."""
        order: list[State] = list(entry)
        edges: dict[State, States] = {}
        index = 0
        while index < len(order):  # at most 4 * 8 states: each is appended once
            state = order[index]
            index += 1
            edges[state] = self.walk(item, {state: terms.EMPTY}, live_after=live)
            order.extend(s for s in edges[state] if s not in order)
        n = len(order)
        paths: list[list[Term | None]] = [
            [edges[a].get(b) for b in order] for a in order
        ]  # paths[i][j]: from order[i] to order[j] through states < k
        for k in range(n):  # Kleene: allow order[k] as an intermediate state
            loop = terms.repeat(paths[k][k], 0, None)
            into, out_of = [row[k] for row in paths], list(paths[k])
            for i in range(n):
                if into[i] is None:
                    continue
                for j in range(n):
                    through = terms.seq(into[i], loop, out_of[j])
                    paths[i][j] = terms.alt([paths[i][j], through])
        collect = _Collect()
        for i, start in enumerate(order):
            if start not in entry:
                continue
            collect.add(start, entry[start])
            for j, end in enumerate(order):
                collect.add(end, terms.seq(entry[start], paths[i][j]))
        return collect.states()
