"""Leetspeak without model numbers: no leet digit right after a match's leading capitals.

Leetspeak lets digits stand for letters (``5`` for s, ``0`` for o), so, matched naively, the model
number ``A55`` spells ``ass`` (issue 15: "The Samsung Galaxy A55 has a good camera." was flagged),
and so do ``B00B`` or ``SH1T``. A model number is capitals followed by digits, so the rule is:
when a match begins with capital letters (ASCII ``A-Z``), the next letter after them is not a
*leet digit* (an ASCII digit standing for a letter other than itself). ``a55``, ``@55``, ``455``,
``sh1t``, ``Sh1t`` and ``4S4nch3z`` still spell words; ``A55``, ``B00B``, ``SH1T`` and ``GTX1080``
do not. Combining marks and gap characters between letters neither start nor end the run.

The matcher keeps the rule as a bit of each item ("every letter so far is a capital", see
:mod:`shield.automata.letters`); this module builds the same language as a pattern AST for
:func:`shield.automata.wordlist.words_pattern` (reverse scans, full spans and the differential
tests), tracking the same context through each letter: START (no letter yet), CAPS (only
capitals so far) and FREE. Every letter set splits into its capitals ``U``, its leet digits ``D``
and the rest ``N``; a letter (one character, or several with ``repeats``, each followed by any
combining marks with ``diacritics``) is the union of its spellings from a start context to an end
context.
"""

from __future__ import annotations

import string

from shield.automata.normalize import COMBINING_MARKS, letter_gap, letter_set
from shield.automata.syntax import Alt as _Alt
from shield.automata.syntax import CharSet, Concat, Node, Repeat, union_ranges

__all__ = ["leet_digits", "leet_words_pattern"]

_UPPER = frozenset(map(ord, string.ascii_uppercase))
_DIGITS = frozenset(map(ord, string.digits))
#: Contexts: no letter of the match read yet, only capitals read, anything else.
_START, _CAPS, _FREE = 0, 1, 2


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
        if start == _FREE:
            if end != _FREE:
                return None
            return _plus(self.any) if self.repeats else self.any
        if end == _CAPS:
            return _plus(self.upper) if self.repeats else self.upper
        if end == _START:
            return None
        # From START or CAPS to FREE: leading capitals, then a letter that ends the run (a leet
        # digit only when no capital came first: from START), then anything.
        leave = _alt(self.rest, self.digit) if start == _START else self.rest
        if not self.repeats:
            return leave
        after_caps = _cat(_plus(self.upper), self.rest)
        return _cat(_alt(leave, after_caps), _star(self.any))


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
                for end in (_CAPS, _FREE)
            ]
            memo[key] = _alt(*branches)
        return memo[key]

    def continuation(node: dict, ctx: int) -> Node | None:
        if not node:
            return Concat(())
        more = below(node, ctx)  # a gap keeps the context
        if gap is not None:
            more = _cat(gap, more)
        return _alt(Concat(()), more) if id(node) in ends else more

    pattern = below(trie, _START)
    assert pattern is not None  # every word has a spelling: its own letters
    return pattern
