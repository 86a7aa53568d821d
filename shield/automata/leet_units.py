"""Leetspeak without model numbers and numbers: two rules on the digits that stand for letters.

Leetspeak lets digits stand for letters (``5`` for s, ``0`` for o), so, matched naively, the model
number ``A55`` spells ``ass`` (issue 15: "The Samsung Galaxy A55 has a good camera." was flagged),
and so do ``B00B``, ``SH1T`` and the numbers ``455`` and ``8008``. A *leet digit* is an ASCII digit
standing for a letter other than itself. The rules:

- when a match begins with capital letters (ASCII ``A-Z``), the letter right after them is not a
  leet digit (model numbers are capitals followed by digits: ``A55``, ``GTX1080``);
- a match made of leet digits only is a number, not a word (``455``, ``5318008``).

``a55``, ``@55``, ``45s``, ``sh1t``, ``Sh1t`` and ``4S4nch3z`` still spell words; ``A55``,
``B00B``, ``SH1T``, ``455`` and ``8008`` do not. Combining marks and gap characters between
letters neither start nor end a run.

The matcher keeps the rules as a context of each item (see :mod:`shield.automata.letters`); this
module builds the same language as a pattern AST for :func:`shield.automata.wordlist.words_pattern`
(reverse scans, full spans and the differential tests), tracking the same context through each
letter: START (no letter yet), CAPS (only capitals so far), NUMBER (only leet digits so far) and
FREE. Every letter set splits into its capitals ``U``, its leet digits ``D`` and the rest ``N``; a
letter (one character, or several with ``repeats``, each followed by any combining marks with
``diacritics``) is the union of its spellings from a start context to an end context, and a word
may end in any context but NUMBER.
"""

from __future__ import annotations

import string

from shield.automata.normalize import COMBINING_MARKS, letter_gap, letter_set
from shield.automata.syntax import Alt as _Alt
from shield.automata.syntax import CharSet, Concat, Node, Repeat, union_ranges

__all__ = ["leet_digits", "leet_words_pattern"]

_UPPER = frozenset(map(ord, string.ascii_uppercase))
_DIGITS = frozenset(map(ord, string.digits))
#: Contexts: no letter of the match read yet, only capitals, only leet digits, anything else.
_START, _CAPS, _NUMBER, _FREE = 0, 1, 2, 3


def leet_digits(letter: str, points: frozenset[int]) -> frozenset[int]:
    """The ASCII digits of ``points`` that stand for ``letter`` (a digit never stands for itself).

    Args:
        letter: a letter of a word.
        points: the code points that may stand for it.

    Returns:
        The leet digits among them.
    """
    return frozenset(cp for cp in points & _DIGITS if chr(cp) != letter)


def _chars(points: frozenset[int]) -> CharSet | None:
    return CharSet(union_ranges((cp, cp) for cp in points)) if points else None


def _alt(*nodes: Node | None) -> Node | None:
    kept = tuple(n for n in nodes if n is not None)
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else _Alt(kept)


def _cat(*nodes: Node | None) -> Node | None:
    if any(n is None for n in nodes):
        return None
    kept = tuple(n for n in nodes if n is not None)
    return kept[0] if len(kept) == 1 else Concat(kept)


def _star(node: Node | None) -> Node:
    return Concat(()) if node is None else Repeat(node, 0, None)


def _plus(node: Node | None) -> Node | None:
    return None if node is None else Repeat(node, 1, None)


class _Letter:
    """The spellings of one letter between contexts."""

    def __init__(self, letter: str, normalize: frozenset[str], case_insensitive: bool) -> None:
        chars = letter_set(letter, normalize, case_insensitive)
        points = frozenset(cp for lo, hi in chars.ranges for cp in range(lo, hi + 1))
        digits = leet_digits(letter, points)
        marks = Repeat(COMBINING_MARKS, 0, None) if "diacritics" in normalize else None

        def marked(part: frozenset[int]) -> Node | None:
            found = _chars(part)
            return found if found is None or marks is None else Concat((found, marks))

        self.upper = marked(points & _UPPER)  # a capital: CAPS stays CAPS
        self.rest = marked(points - _UPPER - digits)  # ends in FREE from anywhere
        self.digit = marked(digits)  # ends in FREE; not from CAPS
        self.any = marked(points)
        self.repeats = "repeats" in normalize

    def unit(self, start: int, end: int) -> Node | None:
        """The spellings from context ``start`` to context ``end`` (None when there are none)."""
        if end == _START or (start == _FREE and end != _FREE):
            return None
        if start == _FREE:
            return _plus(self.any) if self.repeats else self.any
        if end in (_CAPS, _NUMBER):
            same = self.upper if end == _CAPS else self.digit
            if start not in (_START, end):
                return None
            return _plus(same) if self.repeats else same
        # To FREE from START, CAPS or DIGITS: the first character that ends the run (after
        # capitals: not a leet digit; after leet digits: a capital or another letter), then any.
        if start == _NUMBER:
            leave = _alt(self.upper, self.rest)
            run = self.digit
        else:
            leave = self.rest
            run = self.upper
        if not self.repeats:
            return leave
        first = _cat(_star(run), leave)
        if start == _START:  # leading leet digits, then a capital or another letter
            first = _alt(first, _cat(_plus(self.digit), _alt(self.upper, self.rest)))
        return _cat(first, _star(self.any))


def leet_words_pattern(
    words: tuple[str, ...], normalize: frozenset[str], case_insensitive: bool
) -> Node:
    """The AST matching any of ``words`` under the normalisations and the capital-digit rule.

    Args:
        words: validated words.
        normalize: the normalisations (``leet`` among them).
        case_insensitive: fold case.

    Returns:
        The AST, without whole-word assertions (the caller adds them).
    """
    trie: dict = {}
    ends: set[int] = set()
    for word in words:
        node = trie
        for letter in word:
            node = node.setdefault(letter, [{}])[0]
        ends.add(id(node))
    letters: dict[str, _Letter] = {}
    gap = letter_gap(normalize)
    memo: dict[tuple[int, int], Node | None] = {}

    def letter_of(c: str) -> _Letter:
        if c not in letters:
            letters[c] = _Letter(c, normalize, case_insensitive)
        return letters[c]

    def below(node: dict, ctx: int) -> Node | None:
        key = (id(node), ctx)
        if key not in memo:
            branches = [
                _cat(letter_of(c).unit(ctx, end), continuation(child, end))
                for c, (child,) in node.items()
                for end in (_CAPS, _NUMBER, _FREE)
            ]
            memo[key] = _alt(*branches)
        return memo[key]

    def continuation(node: dict, ctx: int) -> Node | None:
        if not node:  # a leaf: the end of a word
            return Concat(()) if ctx != _NUMBER else None
        more = below(node, ctx)  # a gap keeps the context
        if gap is not None:
            more = _cat(gap, more)
        # A match of leet digits only is a number, not a word.
        done = id(node) in ends and ctx != _NUMBER
        return _alt(Concat(()), more) if done else more

    pattern = below(trie, _START)
    assert pattern is not None  # every word has a spelling: its own letters
    return pattern
