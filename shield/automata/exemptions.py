"""Doubled letters of ordinary words: the dictionary reading of ``repeats``.

``repeats`` lets each letter of a forbidden word be repeated (``fuuuck``), so it also reads
ordinary words with a doubled letter as forbidden ones: ``good`` as ``god``, ``rapper`` as
``raper`` (issue 15: "The Samsung Galaxy A55 has a good camera." was flagged). A doubled letter
has two readings, the letter written twice and the letter repeated; the compiler keeps both and
checks the one as written against a dictionary (:mod:`shield.automata.english_doubles`, English
words with a doubled letter from ``wordfreq``). A word of the text is *exempt* when:

- it is a dictionary word and not a word of the list;
- it reads as a word of the list only by collapsing doubled letters (each of its runs of one
  letter is the list word's run, or two where the list word has one: ``goood`` and ``fuuuck`` are
  not exempt, so the repeats recall stays);
- read as written, it contains no word of the list (``faggots`` contains ``faggot``,
  ``goddamnit`` contains ``damn``: never exempt);
- no list word ends in a part that reads as it (a match across a separator that ends in the
  exempt word would otherwise be dropped with it; such a word stays flagged: fail closed).

The matcher (:mod:`shield.automata.letters`) then reports no whole word whose text is exactly an
exempt word (plain letters, in the rule's case). Exemptions apply to whole-word rules with
``repeats`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from itertools import groupby

from shield.automata.english_doubles import WORDS
from shield.rules import MatchOptions

__all__ = ["dictionary", "repeat_exemptions", "runs"]


def runs(word: str) -> tuple[str, tuple[int, ...]]:
    """The run-length encoding of a word: its letters with runs collapsed, and each run's length.

    Args:
        word: a word.

    Returns:
        ``("god", (1, 2, 1))`` for ``"good"``.
    """
    groups = [(letter, len(list(run))) for letter, run in groupby(word)]
    return "".join(g for g, _ in groups), tuple(n for _, n in groups)


@cache
def dictionary() -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """The dictionary words with their run-length encodings, read once.

    Returns:
        ``(word, letters, runs)`` per word.
    """
    return tuple((w, *runs(w)) for w in WORDS.split())


def _reads_as(counts: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """A text with run lengths ``counts`` reads as a word with ``target`` by collapsing doubles."""
    return all(c == t or (c == 2 and t == 1) for c, t in zip(counts, target, strict=True))


def repeat_exemptions(words: Sequence[str], match: MatchOptions) -> frozenset[str]:
    """The dictionary words that a rule would read as forbidden only by collapsing doubles.

    Args:
        words: the rule's words.
        match: its matching options; exemptions need ``repeats`` and ``whole_word``.

    Returns:
        The exempt words (lowercase; compared case-insensitively when the rule folds case), empty
        when the rule does not use ``repeats`` with whole words.
    """
    if "repeats" not in match.normalize or not match.whole_word:
        return frozenset()
    listed = {w.lower() if match.case_insensitive else w for w in words}
    by_letters: dict[str, list[tuple[int, ...]]] = {}
    suffixes: dict[str, list[tuple[int, ...]]] = {}  # the proper suffixes of list words
    for word in listed:
        letters, counts = runs(word)
        by_letters.setdefault(letters, []).append(counts)
        for j in range(1, len(word)):
            letters, counts = runs(word[j:])
            suffixes.setdefault(letters, []).append(counts)
    exempt: set[str] = set()
    for word, letters, counts in dictionary():
        targets = by_letters.get(letters)
        if word in listed or not targets or not any(_reads_as(counts, t) for t in targets):
            continue
        if any(w in word for w in listed):
            continue
        # A suffix with each letter repeated at will spells the word.
        if any(
            all(c >= t for c, t in zip(counts, s, strict=True)) for s in suffixes.get(letters, ())
        ):
            continue
        exempt.add(word)
    return frozenset(exempt)
