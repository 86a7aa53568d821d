"""The pattern AST that regexes, literals and word lists all lower to, over Unicode code points.

Nodes are frozen values. Character sets hold sorted, disjoint, non-adjacent code point ranges.
Assertions (``^``, ``$``, ``\\b``, ``\\B`` and the whole-word edges) are one node kind: a set of
allowed (previous symbol kind, next symbol kind) pairs, encoded as a 9-bit mask; bit
``3 * prev + next`` is set when the pair is allowed, with prev in :data:`PREV_BEGIN`,
:data:`PREV_WORD`, :data:`PREV_OTHER` and next in ``alphabet.KIND_END/KIND_WORD/KIND_OTHER``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shield.automata.alphabet import KIND_END, KIND_OTHER, KIND_WORD

__all__ = [
    "ANY_MASK",
    "MAX_CODE_POINT",
    "PREV_BEGIN",
    "PREV_OTHER",
    "PREV_WORD",
    "Alt",
    "Assert",
    "CharSet",
    "Concat",
    "Node",
    "Repeat",
    "assertion_mask",
    "charset",
    "empty",
    "negate",
    "union_ranges",
]

MAX_CODE_POINT = 0x10FFFF

#: Kinds of the previous symbol: start of text, a word byte, any other byte.
PREV_BEGIN = 0
PREV_WORD = 1
PREV_OTHER = 2

#: The mask that allows every (prev, next) pair: a no-op assertion.
ANY_MASK = (1 << 9) - 1

Range = tuple[int, int]


def union_ranges(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sort and merge code point ranges.

    Args:
        ranges: inclusive (lo, hi) pairs.

    Returns:
        Sorted, disjoint, non-adjacent ranges covering the same code points.

    Raises:
        ValueError: a range is empty or outside 0..0x10FFFF.
    """
    items = sorted(ranges)
    merged: list[list[int]] = []
    for lo, hi in items:
        if not 0 <= lo <= hi <= MAX_CODE_POINT:
            raise ValueError(
                f"code point range must satisfy 0 <= lo <= hi <= 0x10FFFF; got {lo}..{hi}"
            )
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def negate(ranges: tuple[Range, ...]) -> tuple[Range, ...]:
    """The complement of normalised ranges within 0..0x10FFFF.

    Args:
        ranges: output of :func:`union_ranges`.

    Returns:
        The complement, normalised.
    """
    out: list[Range] = []
    start = 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    return tuple(out)


def assertion_mask(prev: Iterable[int], next_: Iterable[int]) -> int:
    """The mask allowing every pair of the given previous and next kinds.

    Args:
        prev: allowed previous kinds (``PREV_*``).
        next_: allowed next kinds (``alphabet.KIND_*``).

    Returns:
        A 9-bit mask.
    """
    next_kinds = tuple(next_)
    mask = 0
    for p in prev:
        for n in next_kinds:
            mask |= 1 << (3 * p + n)
    return mask


@dataclass(frozen=True)
class CharSet:
    """One code point out of ``ranges`` (normalised; may be empty, then it never matches)."""

    ranges: tuple[Range, ...]


@dataclass(frozen=True)
class Concat:
    """The items one after another; no items is the empty string."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    """Any one of the items; at least one item."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    """``item`` repeated ``low`` to ``high`` times (``high`` None: unbounded)."""

    item: Node
    low: int
    high: int | None


@dataclass(frozen=True)
class Assert:
    """A zero-width condition on the previous and the next symbol (see the module docstring)."""

    mask: int


Node = CharSet | Concat | Alt | Repeat | Assert


def charset(chars: str) -> CharSet:
    """A character set of the given characters.

    Args:
        chars: the characters.

    Returns:
        The set.
    """
    return CharSet(union_ranges((ord(c), ord(c)) for c in chars))


def empty() -> Concat:
    """The empty string.

    Returns:
        ``Concat(())``.
    """
    return Concat(())


#: Masks of the anchors, built once.
START_MASK = assertion_mask([PREV_BEGIN], [KIND_END, KIND_WORD, KIND_OTHER])
END_MASK = assertion_mask([PREV_BEGIN, PREV_WORD, PREV_OTHER], [KIND_END])
BOUNDARY_MASK = assertion_mask([PREV_WORD], [KIND_END, KIND_OTHER]) | assertion_mask(
    [PREV_BEGIN, PREV_OTHER], [KIND_WORD]
)
NOT_BOUNDARY_MASK = ANY_MASK & ~BOUNDARY_MASK
NOT_AFTER_WORD_MASK = assertion_mask([PREV_BEGIN, PREV_OTHER], [KIND_END, KIND_WORD, KIND_OTHER])
NOT_BEFORE_WORD_MASK = assertion_mask([PREV_BEGIN, PREV_WORD, PREV_OTHER], [KIND_END, KIND_OTHER])

__all__ += [
    "BOUNDARY_MASK",
    "END_MASK",
    "NOT_AFTER_WORD_MASK",
    "NOT_BEFORE_WORD_MASK",
    "NOT_BOUNDARY_MASK",
    "START_MASK",
]
