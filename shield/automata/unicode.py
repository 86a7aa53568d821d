"""Unicode helpers for the compilers: UTF-8 byte ranges of code point ranges, and case folding.

``utf8_sequences`` splits a code point range into sequences of byte ranges, so that a character
class over code points becomes a small byte automaton (the classic utf8-ranges construction).
Surrogates (U+D800..U+DFFF) are not encodable in UTF-8 and are left out.

Case folding is *simple* folding: two code points are equivalent when one is the single-character
lower or upper case of the other, closed transitively (so ``k``, ``K`` and KELVIN SIGN are one
class). Multi-character foldings such as ``ß`` → ``ss`` are not applied.
"""

from __future__ import annotations

import bisect
from functools import cache

__all__ = ["fold_code_point", "fold_ranges", "utf8_sequences"]

Range = tuple[int, int]
ByteRanges = tuple[Range, ...]

_LENGTH_BOUNDS = ((0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF))
_SURROGATES = (0xD800, 0xDFFF)
#: Cased letters stop below this code point (Adlam is the last cased script, at U+1E900).
_CASED_LIMIT = 0x1F000


def utf8_sequences(lo: int, hi: int) -> list[ByteRanges]:
    """Byte-range sequences whose union is the UTF-8 encodings of code points lo..hi.

    Args:
        lo: first code point.
        hi: last code point (inclusive).

    Returns:
        A list of sequences; each is a tuple of (low byte, high byte) ranges, one per byte.

    Raises:
        ValueError: the range is empty or outside 0..0x10FFFF.
    """
    if not 0 <= lo <= hi <= 0x10FFFF:
        raise ValueError(f"code point range must satisfy 0 <= lo <= hi <= 0x10FFFF; got {lo}..{hi}")
    out: list[ByteRanges] = []
    pieces: list[Range] = []
    for s_lo, s_hi in ((lo, min(hi, _SURROGATES[0] - 1)), (max(lo, _SURROGATES[1] + 1), hi)):
        if s_lo <= s_hi:
            pieces.append((s_lo, s_hi))
    for p_lo, p_hi in pieces:
        for b_lo, b_hi in _LENGTH_BOUNDS:
            a, b = max(p_lo, b_lo), min(p_hi, b_hi)
            if a <= b:
                _split_same_length(a, b, out)
    return out


def _split_same_length(lo: int, hi: int, out: list[ByteRanges]) -> None:
    """Append the sequences for lo..hi, two code points of the same UTF-8 length."""
    stack = [(lo, hi)]
    while stack:  # each split halves along a 6-bit boundary: at most 4 levels deep
        a, b = stack.pop()
        n = len(chr(a).encode("utf-8"))
        for i in range(1, n):
            m = (1 << (6 * i)) - 1
            if (a & ~m) != (b & ~m):
                if a & m:
                    stack.append(((a | m) + 1, b))
                    stack.append((a, a | m))
                    break
                if (b & m) != m:
                    stack.append((b & ~m, b))
                    stack.append((a, (b & ~m) - 1))
                    break
        else:
            ea, eb = chr(a).encode("utf-8"), chr(b).encode("utf-8")
            out.append(tuple(zip(ea, eb, strict=True)))


@cache
def _fold_table() -> tuple[tuple[int, ...], dict[int, frozenset[int]]]:
    """All cased code points (sorted) and their simple-fold classes, built once per process."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        parent[x] = root
        return root

    for cp in range(_CASED_LIMIT):
        ch = chr(cp)
        for other in (ch.lower(), ch.upper()):
            if len(other) == 1 and other != ch:
                ra, rb = find(cp), find(ord(other))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, set[int]] = {}
    for cp in list(parent):
        groups.setdefault(find(cp), set()).add(cp)
    classes = {cp: frozenset(members) for members in groups.values() for cp in members}
    return tuple(sorted(classes)), classes


def fold_code_point(cp: int) -> frozenset[int]:
    """The simple case-fold class of one code point.

    Args:
        cp: a code point.

    Returns:
        Every code point equivalent to ``cp`` (including ``cp``).
    """
    return _fold_table()[1].get(cp, frozenset((cp,)))


def fold_ranges(ranges: tuple[Range, ...]) -> list[Range]:
    """Ranges closed under simple case folding.

    Args:
        ranges: normalised code point ranges.

    Returns:
        The input ranges plus single-code-point ranges for every case variant of a member.
    """
    cased, classes = _fold_table()
    extra: list[Range] = list(ranges)
    for lo, hi in ranges:
        start = bisect.bisect_left(cased, lo)
        stop = bisect.bisect_right(cased, hi)
        for cp in cased[start:stop]:
            extra.extend((other, other) for other in classes[cp])
    return extra
