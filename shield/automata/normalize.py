"""Normalisations compiled into automata as alternative spellings of each letter.

Nothing here rewrites text: each function says which code points may *stand for* a letter of a
forbidden word, or what may appear *between* letters. :mod:`shield.automata.wordlist` and
:mod:`shield.compile` turn these into character sets and repetitions of the pattern AST.

- ``nfkc``: every code point whose NFKC normal form is the letter (full-width ``ｆ``,
  mathematical ``𝐟``, circled and squared ``ⓕ 🄵``, super/subscripts, modifier letters, Roman
  numerals ``ⅰ``), computed from Python's ``unicodedata`` (:data:`UNIDATA_VERSION`).
- ``confusables``: the look-alikes that Unicode's confusables data (UTS #39 ``confusables.txt``)
  gives an ASCII letter or digit: Cyrillic ``с``, Greek ``ο``, Armenian ``ո``, Cherokee,
  mathematical and letterlike symbols; generated into :mod:`shield.automata.confusables_data`
  by ``scripts/generate_confusables.py``, never written by hand.
- ``leet``: digits and symbols used for letters (``4 @`` for a, ``3`` for e, ``1 ! |`` for i, ...).
- ``diacritics``: precomposed letters whose canonical decomposition is the letter plus marks
  (``unicodedata``), and combining marks (U+0300..U+036F) after a letter.
- ``zero_width``: U+200B, U+200C, U+200D, U+2060, U+FEFF and U+00AD anywhere between letters.
- ``repeats``: a letter may be repeated (``fuuuck``).
- ``separators``: one of ``. - _ *`` or space between two letters (``f.u.c.k``).

:func:`word_code_points` says which non-ASCII characters whole-word matching counts as letters.
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache

from shield.automata.confusables_data import LOOKALIKES
from shield.automata.syntax import CharSet, Concat, Node, Repeat, charset, union_ranges
from shield.automata.unicode import fold_code_point

__all__ = [
    "COMBINING_MARKS",
    "CONFUSABLES",
    "LEET",
    "SEPARATORS",
    "UNIDATA_VERSION",
    "ZERO_WIDTH",
    "letter_gap",
    "letter_set",
    "letter_unit",
    "word_code_points",
]

#: Look-alikes of ASCII letters and digits, generated from Unicode's confusables data
#: (:mod:`shield.automata.confusables_data`, UTS #39 ``confusables.txt`` 13.0.0).
CONFUSABLES: dict[str, str] = LOOKALIKES

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

#: Python's Unicode database version: the NFKC and accented-letter tables are computed from it.
UNIDATA_VERSION = unicodedata.unidata_version
#: Every code point below this one is scanned for decompositions (planes 0 to 2).
_DECOMPOSABLE_LIMIT = 0x30000
#: The characters whose stand-ins make a word character (see :func:`word_code_points`).
_WORD_LETTERS = string.ascii_letters + string.digits


@cache
def _decomposable() -> tuple[int, ...]:
    """Code points that have a decomposition mapping (canonical or compatibility), built once."""
    return tuple(
        cp for cp in range(0x80, _DECOMPOSABLE_LIMIT) if unicodedata.decomposition(chr(cp))
    )


@cache
def _compatibility_forms() -> dict[str, frozenset[int]]:
    """Character → code points whose NFKC form is that single character (built once)."""
    table: dict[str, set[int]] = {}
    for cp in _decomposable():
        normal = unicodedata.normalize("NFKC", chr(cp))
        if len(normal) == 1 and normal != chr(cp):
            table.setdefault(normal, set()).add(cp)
    return {k: frozenset(v) for k, v in table.items()}


@cache
def _accented_forms() -> dict[str, frozenset[int]]:
    """Letter → precomposed letters whose canonical decomposition is it plus marks (built once)."""
    table: dict[str, set[int]] = {}
    for cp in _decomposable():
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
            # A stand-in's case variants stand for the letter too, but never another ASCII
            # letter: LATIN SMALL LETTER LONG S looks like f and folds with s, so without this
            # "suck" would spell "fuck".
            points |= {c for c in fold_code_point(cp) if c >= 128 or c in bases}
    return CharSet(union_ranges((cp, cp) for cp in points))


@cache
def word_code_points() -> frozenset[int]:
    """The non-ASCII code points that count as word characters for whole-word matching.

    A code point is a word character when it may stand for an ASCII letter or digit under the
    Unicode normalisations (``nfkc``, ``confusables``, ``diacritics``) with case folding: ``ρ``
    (a look-alike of ``p``), ``𝐟`` and ``é`` are word characters, so ``cockρit`` is one word,
    as ``cockpit`` is. Every rule uses the same set, whatever its own normalisations, so that
    the rules agree on where a word ends. Other non-ASCII characters (``中``, ``—``, emoji) stay
    non-word characters: a forbidden word next to one of them is still a whole word (fail closed).
    Leetspeak symbols (``@ $ ! | +``) are not word characters.

    Returns:
        The code points (all >= 128).
    """
    unicode_only = frozenset({"nfkc", "confusables", "diacritics"})
    points: set[int] = set()
    for letter in _WORD_LETTERS:
        chars = letter_set(letter, unicode_only, case_insensitive=True)
        points.update(cp for lo, hi in chars.ranges for cp in range(lo, hi + 1) if cp >= 128)
    return frozenset(points)


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
