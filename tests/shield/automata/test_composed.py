"""Normalisation as its own stage: the normaliser composed at run time with the letter automaton.

Differential: the composed automaton detects exactly where today's expanded byte DFA
(:func:`shield.automata.wordlist.words_matcher`) detects on the same text without its invisible
characters (zero-width characters with ``zero_width``, combining marks with ``diacritics``, which
the normaliser drops: the deliberate difference, tested on its own below).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shield.automata.alphabet import END
from shield.automata.composed import Composed
from shield.automata.dfa import DFA
from shield.automata.limits import CompileLimits
from shield.automata.normaliser import strip_invisible
from shield.automata.wordlist import invisible_points, words_composed, words_matcher
from shield.rules import NORMALIZATIONS, MatchOptions

LIMITS = CompileLimits()
CORPUS = Path(__file__).resolve().parents[2] / "robustness" / "evasion_corpus.jsonl"

#: Pieces random texts are made of: the words' letters, their leet, look-alike, full-width and
#: accented stand-ins, separators, zero-width characters, combining marks and other characters;
#: characters that share lead bytes with stand-ins but stand for nothing (``ϐ``) leave a partial
#: character in the normaliser, as malformed text does.
PIECES = [
    *"abilosABILOS",
    *"4@!1|05$",
    "\u0430",  # Cyrillic a
    "\u043e",  # Cyrillic o
    "\u0456",  # Cyrillic i
    "\u04cf",  # Cyrillic palochka (l)
    "\uff41",  # full-width a
    "\U0001d41b",  # mathematical bold b
    "\u00e1",  # a with acute
    "\u00f6",  # o with diaeresis
    "\u03d0",  # Greek beta symbol (no stand-in)
    "\u13a0",  # Cherokee A
    "\u200b",
    "\u00ad",
    "\u0301",
    "\u0308",
    *".-_* ",
    "x",
    "\u4e2d",
    "\n",
]


def _detections(dfa: DFA, data: bytes) -> list[int]:
    state, found = dfa.initial, []
    for index, symbol in enumerate([*data, END]):
        state = dfa.step(state, symbol)
        if dfa.accepting[state]:
            found.append(index)
    return found


def _pair(words: tuple[str, ...], match: MatchOptions) -> tuple[Composed, DFA, Composed]:
    composed = words_composed(words, match, LIMITS, what="test", absorb=False)
    forbid = words_composed(words, match, LIMITS, what="test", absorb=True)
    return composed, words_matcher(words, match, LIMITS, what="test").dfa, forbid


@st.composite
def _cases(draw: st.DrawFn) -> tuple[tuple[str, ...], MatchOptions, str]:
    words = tuple(
        dict.fromkeys(
            draw(
                st.lists(st.text(alphabet="abilos", min_size=1, max_size=4), min_size=1, max_size=4)
            )
        )
    )
    normalize = frozenset(draw(st.sets(st.sampled_from(sorted(NORMALIZATIONS)))))
    match = MatchOptions(
        case_insensitive=draw(st.booleans()),
        whole_word=draw(st.booleans()),
        normalize=normalize,
    )
    text = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=24)))
    return words, match, text


@settings(deadline=None)
@given(_cases())
def test_composed_detects_where_the_expanded_automaton_detects(
    case: tuple[tuple[str, ...], MatchOptions, str],
) -> None:
    words, match, text = case
    composed, expanded, forbid = _pair(words, match)
    invisible = invisible_points(match)
    visible = strip_invisible(text, invisible)
    expected = _detections(expanded, visible.encode())
    found = composed.detections(text.encode())
    if visible == text:  # same bytes: the same detections at the same offsets
        assert found == expected
    else:  # the invisible characters emit nothing: the same detections, shifted
        assert len(found) == len(expected)
    violated = forbid.violating(forbid.walk(forbid.initial, text.encode(), final=True))
    assert violated == bool(expected)


ALL = MatchOptions(case_insensitive=True, whole_word=True, normalize=frozenset(NORMALIZATIONS))


@pytest.fixture(scope="module")
def core() -> tuple[Composed, DFA, Composed]:
    from tests.robustness.evasion_unicode import core_words

    return _pair(tuple(dict.fromkeys(core_words())), ALL)


def test_unicode_evasion_corpus_same_verdicts(core: tuple[Composed, DFA, Composed]) -> None:
    from tests.robustness.evasion_unicode import NEUTRAL, all_spellings, core_words

    composed, expanded, _ = core
    spellings = all_spellings(core_words())
    assert len(spellings) > 1000  # the scenario: the whole corpus, both classes
    caught = 0
    for spelling in spellings:
        for text in (spelling.text, f"you {spelling.text}!", spelling.text.replace("a", NEUTRAL)):
            data = text.encode()
            expected = _detections(expanded, data)
            assert composed.detections(data) == expected, text
            caught += bool(expected)
    assert caught > 0


def test_leet_separator_repeat_corpus_same_verdicts(core: tuple[Composed, DFA, Composed]) -> None:
    composed, expanded, _ = core
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    kinds = {row["transformation"] for row in rows}
    assert {"leet", "separators", "repeats", "zero_width", "diacritics"} <= kinds
    for row in rows:
        text = row["text"]
        visible = strip_invisible(text, invisible_points(ALL))
        expected = _detections(expanded, visible.encode())
        found = composed.detections(text.encode())
        assert len(found) == len(expected), text
        if visible == text:
            assert found == expected, text


@pytest.mark.parametrize(
    ("text", "today", "staged"),
    [
        # A zero-width character is invisible: it no longer ends a word (the text displays as
        # one word, "xfuck"), and it no longer stops a repeat.
        ("x\u200bfuck", True, False),
        ("fu\u200buuck", False, True),
        # A combining mark belongs to the letter before it (NFC "café" is one word too).
        ("cafe\u0301fuck", True, False),
        ("cafe\u0301 fuck", True, True),
    ],
)
def test_invisible_characters_are_dropped_deliberately(
    core: tuple[Composed, DFA, Composed], text: str, today: bool, staged: bool
) -> None:
    composed, expanded, forbid = core
    data = text.encode()
    assert bool(_detections(expanded, data)) is today  # the scenario: today's reading
    assert bool(composed.detections(data)) is staged
    assert forbid.violating(forbid.walk(forbid.initial, data, final=True)) is staged


def test_composed_is_smaller_than_the_expansion(core: tuple[Composed, DFA, Composed]) -> None:
    composed, expanded, _ = core
    assert composed.n_norm < 1000
    assert composed.n_letters * 10 < expanded.n_states
    assert composed.table_cells() * 10 < expanded.n_states * expanded.n_classes


def test_step_many_agrees_with_step(core: tuple[Composed, DFA, Composed]) -> None:
    import numpy as np

    _, _, forbid = core
    data = "what a \u0455h1t, f.u.c.k \uff46\uff55\uff43\uff4b \u0430ss".encode()
    states = np.array([forbid.initial])
    state = forbid.initial
    for symbol in data:
        states = forbid.step_many(states, np.array([symbol]))
        state, _ = forbid.step(state, symbol)
        assert int(states[0]) == state
    assert forbid.violating(state)
