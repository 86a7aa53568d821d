"""Normalisations compiled into automata as alternative spellings of each letter.

Nothing here rewrites text: each function says which code points may *stand for* a letter of a
forbidden word, or what may appear *between* letters. :mod:`shield.automata.wordlist` and
:mod:`shield.compile` turn these into character sets and repetitions of the pattern AST.

- ``nfkc``: compatibility forms whose NFKC normal form is the letter (full-width ``ｆ``,
  mathematical ``𝐟``, circled ``ⓕ``, super/subscripts).
- ``confusables``: a curated table of Cyrillic, Greek and Armenian look-alikes of Latin letters.
- ``leet``: digits and symbols used for letters (``4 @`` for a, ``3`` for e, ``1 ! |`` for i, ...).
- ``diacritics``: precomposed accented letters whose base is the letter, and combining marks
  (U+0300..U+036F) after a letter.
- ``zero_width``: U+200B, U+200C, U+200D, U+2060, U+FEFF and U+00AD anywhere between letters.
- ``repeats``: a letter may be repeated (``fuuuck``).
- ``separators``: one of ``. - _ *`` or space between two letters (``f.u.c.k``).
"""

from __future__ import annotations

import unicodedata
from functools import cache

from shield.automata.syntax import CharSet, Concat, Node, Repeat, charset, union_ranges
from shield.automata.unicode import fold_code_point

__all__ = [
    "COMBINING_MARKS",
    "CONFUSABLES",
    "LEET",
    "SEPARATORS",
    "ZERO_WIDTH",
    "letter_gap",
    "letter_set",
    "letter_unit",
]

#: Look-alikes of lowercase and uppercase Latin letters (Cyrillic, Greek, Armenian).
CONFUSABLES: dict[str, str] = {
    "a": "\u0430\u03b1",
    "b": "\u044c",
    "c": "\u0441\u03f2",
    "d": "\u0501",
    "e": "\u0435\u0454",
    "g": "\u0581",
    "h": "\u04bb\u0570",
    "i": "\u0456\u03b9",
    "j": "\u0458\u03f3",
    "k": "\u03ba\u043a",
    "l": "\u04cf",
    "m": "\u043c",
    "n": "\u0578\u03b7",
    "o": "\u043e\u03bf\u0585",
    "p": "\u0440\u03c1",
    "q": "\u051b\u0566",
    "r": "\u0433",
    "s": "\u0455",
    "t": "\u0442",
    "u": "\u057d\u03c5",
    "v": "\u03bd\u0475",
    "w": "\u051d\u0461",
    "x": "\u0445\u03c7",
    "y": "\u0443\u03b3",
    "A": "\u0410\u0391",
    "B": "\u0412\u0392",
    "C": "\u0421\u03f9",
    "E": "\u0415\u0395",
    "H": "\u041d\u0397",
    "I": "\u0406\u0399",
    "J": "\u0408",
    "K": "\u041a\u039a",
    "M": "\u041c\u039c",
    "N": "\u039d",
    "O": "\u041e\u039f",
    "P": "\u0420\u03a1",
    "S": "\u0405",
    "T": "\u0422\u03a4",
    "X": "\u0425\u03a7",
    "Y": "\u04ae\u03a5",
    "Z": "\u0396",
}

#: Leetspeak stand-ins of lowercase letters (used for both cases).
LEET: dict[str, str] = {
    "a": "4@",
    "b": "8",
    "e": "3",
    "g": "9",
    "i": "1!|",
    "l": "1|",
    "o": "0",
    "s": "5$",
    "t": "7+",
    "z": "2",
}

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
SEPARATORS = ".-_* "
COMBINING_MARKS = CharSet(((0x0300, 0x036F),))

_NFKC_BLOCKS = (
    (0x00AA, 0x00BA),
    (0x1D2C, 0x1D6A),
    (0x2070, 0x209F),
    (0x2100, 0x214F),
    (0x2460, 0x24FF),
    (0xFF01, 0xFF5E),
    (0x1D400, 0x1D7FF),
)
_DIACRITIC_BLOCKS = ((0x00C0, 0x024F), (0x1E00, 0x1EFF))


@cache
def _compatibility_forms() -> dict[str, frozenset[int]]:
    """Letter → code points whose NFKC form is that single letter (built once)."""
    table: dict[str, set[int]] = {}
    for lo, hi in _NFKC_BLOCKS:
        for cp in range(lo, hi + 1):
            normal = unicodedata.normalize("NFKC", chr(cp))
            if len(normal) == 1 and normal != chr(cp):
                table.setdefault(normal, set()).add(cp)
    return {k: frozenset(v) for k, v in table.items()}


@cache
def _accented_forms() -> dict[str, frozenset[int]]:
    """Letter → precomposed letters whose canonical decomposition starts with it (built once)."""
    table: dict[str, set[int]] = {}
    for lo, hi in _DIACRITIC_BLOCKS:
        for cp in range(lo, hi + 1):
            decomposed = unicodedata.normalize("NFD", chr(cp))
            if len(decomposed) > 1 and all(unicodedata.combining(c) for c in decomposed[1:]):
                table.setdefault(decomposed[0], set()).add(cp)
    return {k: frozenset(v) for k, v in table.items()}


def letter_set(letter: str, normalize: frozenset[str], case_insensitive: bool) -> CharSet:
    """Every code point that may stand for ``letter``.

    Args:
        letter: one character of a forbidden word.
        normalize: a subset of :data:`shield.rules.NORMALIZATIONS`.
        case_insensitive: fold case (simple Unicode folding).

    Returns:
        The character set (it contains ``letter``).
    """
    bases = {ord(letter)}
    if case_insensitive:
        bases |= fold_code_point(ord(letter))
    points = set(bases)
    for base in list(bases):
        ch = chr(base)
        if "nfkc" in normalize:
            points |= _compatibility_forms().get(ch, frozenset())
        if "confusables" in normalize:
            points |= {ord(c) for c in CONFUSABLES.get(ch, "")}
        if "diacritics" in normalize:
            points |= _accented_forms().get(ch, frozenset())
        if "leet" in normalize:
            points |= {ord(c) for c in LEET.get(ch.lower(), "")}
    if case_insensitive:
        for cp in list(points):
            points |= fold_code_point(cp)
    return CharSet(union_ranges((cp, cp) for cp in points))


def letter_unit(letter: str, normalize: frozenset[str], case_insensitive: bool) -> Node:
    """The pattern of one letter: its set, then combining marks, repeated when asked.

    Args:
        letter: one character of a forbidden word.
        normalize: the normalisations.
        case_insensitive: fold case.

    Returns:
        The letter's pattern.
    """
    unit: Node = letter_set(letter, normalize, case_insensitive)
    if "diacritics" in normalize:
        unit = Concat((unit, Repeat(COMBINING_MARKS, 0, None)))
    if "repeats" in normalize:
        unit = Repeat(unit, 1, None)
    return unit


def letter_gap(normalize: frozenset[str]) -> Node | None:
    """What may appear between two letters, or None when nothing may.

    Args:
        normalize: the normalisations.

    Returns:
        The gap pattern (it matches the empty string), or None.
    """
    parts: list[Node] = []
    zero_width = Repeat(charset(ZERO_WIDTH), 0, None) if "zero_width" in normalize else None
    if zero_width is not None:
        parts.append(zero_width)
    if "separators" in normalize:
        parts.append(Repeat(charset(SEPARATORS), 0, 1))
        if zero_width is not None:
            parts.append(zero_width)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Concat(tuple(parts))
