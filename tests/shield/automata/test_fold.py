"""Folded span searches find the same matches as the pattern itself (shield.automata.fold).

Differential: the leftmost-longest matches of a word-list pattern in a text equal those of the
folded pattern in the folded text, mapped back to the text's offsets; the folded pattern's NFA is
the smaller one.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shield.automata.fold import fold_classes, fold_node
from shield.automata.limits import CompileLimits
from shield.automata.nfa import build_nfa
from shield.automata.normaliser import visible_bytes
from shield.automata.normalize import word_code_points
from shield.automata.wordlist import words_pattern
from shield.rules import NORMALIZATIONS, MatchOptions
from shield.spans import leftmost_longest

LIMITS = CompileLimits()
#: Letters, their stand-ins (leet, look-alikes, full-width, accented), separators, word and
#: non-word characters outside every set, and a multi-byte character cut in half.
PIECES = [
    *"abilosABILOS4@!1|05$",
    "\u0430",
    "\u043e",
    "\u0456",
    "\u04cf",
    "\uff41",
    "\U0001d41b",
    "\u00e1",
    "\u00f6",
    "\u03d0",
    "\u00e9",
    *".-_* ",
    "x",
    "\u4e2d",
    "\n",
]


@settings(max_examples=80, deadline=None)
@given(
    words=st.lists(st.text(alphabet="abilos", min_size=1, max_size=4), min_size=1, max_size=4),
    norms=st.frozensets(st.sampled_from(sorted(NORMALIZATIONS - {"zero_width", "diacritics"}))),
    case=st.booleans(),
    whole=st.booleans(),
    pieces=st.lists(st.sampled_from(PIECES), max_size=14),
    cut=st.booleans(),
)
def test_folded_search_finds_the_same_matches(
    words: list[str],
    norms: frozenset[str],
    case: bool,
    whole: bool,
    pieces: list[str],
    cut: bool,
) -> None:
    match = MatchOptions(case_insensitive=case, whole_word=whole, normalize=norms)
    unique = tuple(dict.fromkeys(words))
    node = words_pattern(unique, match)
    chars = word_code_points() if whole else frozenset()
    data = "".join(pieces).encode() + ("\u4e2d".encode()[:2] if cut else b"")
    fold = fold_classes(node, chars)
    folded = build_nfa(fold_node(node, fold), LIMITS, word_chars=chars)
    seen = visible_bytes(data, frozenset(), fold)
    expected = leftmost_longest(build_nfa(node, LIMITS, word_chars=chars), data)
    assert [seen.span(s) for s in leftmost_longest(folded, seen.data)] == expected


def test_folding_shrinks_a_look_alike_pattern() -> None:
    match = MatchOptions(
        case_insensitive=True, whole_word=True, normalize=frozenset({"confusables", "nfkc"})
    )
    node = words_pattern(("ass", "bitch", "shit"), match)
    chars = word_code_points()
    fold = fold_classes(node, chars)
    # The scenario: look-alikes fold onto one representative per class.
    assert fold[0x0430] == fold[0xFF41] and fold[0x0430] < 128  # Cyrillic and full-width a
    big = build_nfa(node, LIMITS, word_chars=chars).n_states
    small = build_nfa(fold_node(node, fold), LIMITS, word_chars=chars).n_states
    assert small * 5 < big
