"""Word lists with case folding, whole words and every normalisation."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shield.automata.dfa import DFA
from shield.automata.limits import CompileLimits
from shield.automata.syntax import union_ranges
from shield.automata.wordlist import check_words
from shield.errors import CompileError, SpecSyntaxError
from shield.rules import WordsRule
from tests.shield.helpers import words_shield

ALL = frozenset(
    {"nfkc", "confusables", "leet", "zero_width", "diacritics", "repeats", "separators"}
)


@pytest.fixture(scope="module")
def guard():  # type: ignore[no-untyped-def]
    return words_shield(
        ("fuck", "shit", "ass"), case_insensitive=True, whole_word=True, normalize=ALL
    )


@pytest.mark.parametrize(
    "text",
    [
        "FuCk",
        "f*u*c*k",
        "f u c k",
        "f\u057dck",
        "fuuuck",
        "f\u200buck",
        "\uff46\uff55\uff43\uff4b",
        "sh1t",
        "@ss",
        "f\u00fcck",
        "fu\u0308ck",
        "what the fuck.",
    ],
)
def test_obfuscations_are_caught(guard, text: str) -> None:  # type: ignore[no-untyped-def]
    assert guard.first_violation(text.encode(), final=True) is not None


@pytest.mark.parametrize(
    "text", ["class", "assess", "Scunthorpe", "passage", "shitake_x", "bass guitar"]
)
def test_clean_words_pass(guard, text: str) -> None:  # type: ignore[no-untyped-def]
    assert guard.first_violation(text.encode(), final=True) is None


@given(st.text(alphabet="asbx .", max_size=14))
@settings(max_examples=60)
def test_plain_words_agree_with_re(text: str) -> None:
    words = ("ass", "bass", "sa")
    for ww in (False, True):
        guard = words_shield(words, whole_word=ww)
        body = "|".join(map(re.escape, words))
        pattern = rf"(?<!\w)(?:{body})(?!\w)" if ww else body
        assert (guard.first_violation(text.encode(), final=True) is not None) == bool(
            re.search(pattern, text, re.ASCII)
        )


def test_scan_span_equals_the_word(guard) -> None:  # type: ignore[no-untyped-def]
    found = guard.scan("oh f.u.c.k and SHIT!")
    assert [(v.match, v.start, v.end) for v in found] == [("f.u.c.k", 3, 10), ("SHIT", 15, 19)]


def test_word_list_validation() -> None:
    # An empty list or word is refused when the rule is constructed; the limits when compiled.
    with pytest.raises(SpecSyntaxError, match="word list is empty"):
        WordsRule(id="w", words=())
    with pytest.raises(SpecSyntaxError, match="empty word"):
        WordsRule(id="w", words=("a", ""))
    with pytest.raises(CompileError, match="max_words"):
        check_words(("a", "b", "c"), CompileLimits(max_words=2), what="rule w")
    assert check_words(("a", "b", "a"), CompileLimits(), what="rule w") == ("a", "b")


_NORMS = sorted(ALL)


@given(
    st.lists(st.text(alphabet="abis1 \u0430", min_size=1, max_size=4), min_size=1, max_size=5),
    st.sets(st.sampled_from(_NORMS), max_size=3),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_direct_matcher_equals_subset_construction(words, norms, ci, ww) -> None:  # type: ignore[no-untyped-def]
    from shield.automata.determinize import determinize
    from shield.automata.dfa import product
    from shield.automata.nfa import build_nfa
    from shield.automata.wordlist import words_matcher, words_pattern
    from shield.rules import MatchOptions

    match = MatchOptions(case_insensitive=ci, whole_word=ww, normalize=frozenset(norms))
    limits = CompileLimits()
    unique = tuple(dict.fromkeys(words))
    direct = words_matcher(unique, match, limits, what="w").dfa
    reference = determinize(build_nfa(words_pattern(unique, match), limits), limits, what="w").dfa
    if ww:
        # Byte-level assertions cannot see that a look-alike letter continues a word: the two
        # agree on ASCII text (test_whole_words_agree_with_re_beyond_ascii covers the rest).
        direct, reference = _ascii_only(direct), _ascii_only(reference)
    differ = product([direct, reference], lambda acc: acc[0] != acc[1], max_states=100_000)
    assert differ.n_states > 1  # the scenario: the product explored the automata
    assert not differ.accepting.any()


def _ascii_only(dfa: DFA) -> DFA:
    """``dfa`` with every byte >= 128 leading to a non-accepting sink."""
    n, k = dfa.transitions.shape
    table = np.vstack([np.hstack([dfa.transitions, np.full((n, 1), n)]), np.full((1, k + 1), n)])
    classes = dfa.classes.copy()
    classes[128:256] = k
    return DFA(table, classes, dfa.initial, np.append(dfa.accepting, False))


def _class(points: Iterable[int]) -> str:
    """A ``re`` character class of code points."""
    ranges = union_ranges((cp, cp) for cp in points)
    return "[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges) + "]"


def _python_words(words: tuple[str, ...], norm: frozenset[str], ci: bool) -> re.Pattern[str]:
    """The whole-word language of ``words`` as a ``re`` pattern with Unicode word characters."""
    from shield.automata.normalize import SEPARATORS, ZERO_WIDTH, letter_set, word_code_points

    def unit(letter: str) -> str:
        points = {cp for lo, hi in letter_set(letter, norm, ci).ranges for cp in range(lo, hi + 1)}
        marks = "[\\u0300-\\u036f]*" if "diacritics" in norm else ""
        # No capitals and no leet digit of a, b, s in the text: leetspeak's capital and number
        # rules never apply here (the subset-construction test covers them).
        one = f"(?:{_class(points)}{marks})"
        return f"{one}+" if "repeats" in norm else one

    zw = f"{_class(map(ord, ZERO_WIDTH))}*" if "zero_width" in norm else ""
    gap = f"{zw}(?:{_class(map(ord, SEPARATORS))}{zw})?" if "separators" in norm else zw
    body = "|".join(gap.join(unit(c) for c in w) for w in words)
    word = _class(
        [*map(ord, "_"), *range(48, 58), *range(65, 91), *range(97, 123), *word_code_points()]
    )
    return re.compile(f"(?<!{word})(?:{body})(?!{word})")


#: Letters of the words, their look-alikes (``а`` Cyrillic, ``ɑ``, ``ｂ``), a look-alike of no
#: letter of the words (``ρ``), a neutral letter (``中``), separators, marks, an accented letter.
_UNICODE_TEXT = "abs1 .а\u0251\uff42\u03c1\u4e2d\u200b\u0301\u00e1@"


@given(
    st.lists(st.text(alphabet="abs1", min_size=1, max_size=3), min_size=1, max_size=3),
    st.sets(st.sampled_from(_NORMS), max_size=3),
    st.booleans(),
    st.text(alphabet=_UNICODE_TEXT, max_size=10),
)
@settings(max_examples=40, deadline=None)
def test_whole_words_agree_with_re_beyond_ascii(words, norms, ci, text) -> None:  # type: ignore[no-untyped-def]
    unique = tuple(dict.fromkeys(words))
    norm = frozenset(norms)
    guard = words_shield(unique, case_insensitive=ci, whole_word=True, normalize=norm)
    expected = _python_words(unique, norm, ci).search(text)
    found = guard.first_violation(text.encode(), final=True)
    assert (found is not None) == (expected is not None), (text, expected)


def test_lookalike_letters_continue_a_word(guard) -> None:  # type: ignore[no-untyped-def]
    # The scenario: each inner word is caught on its own, and next to a neutral letter.
    for word in ("ass", "\uff41ss", "shit"):
        assert guard.first_violation(word.encode(), final=True) is not None
        assert guard.first_violation(f"{word}\u4e2d".encode(), final=True) is not None
    # A look-alike letter (of a letter of no word: b, p) continues the word, as b and p do.
    for text in ("\uff42ass", "b\uff41ss", "ass\u03c1", "\U0001d41bass", "sh\u0456t\u0440"):
        assert guard.first_violation(text.encode(), final=True) is None, text
    found = guard.scan("bass \u4e2dass\u2014 \u0440ass ass")
    assert [(v.match, v.start, v.end) for v in found] == [("ass", 6, 9), ("ass", 16, 19)]


def test_a_whole_word_before_a_non_word_character_is_detected_at_its_last_byte(guard) -> None:  # type: ignore[no-untyped-def]
    # U+2014 EM DASH (3 bytes) starts with the same byte as look-alikes (U+2170 ⅰ): the word is
    # confirmed on the last byte of the dash, and its span is the word alone.
    data = "ass\u2014".encode()
    assert data[3] == "\u2170".encode()[0]
    found = guard.first_violation(data, final=False)
    assert found is not None and (found.start, found.end) == (0, 3)
    assert guard.first_violation(data[:4], final=False) is None  # still undecided after 1 byte
    # Malformed UTF-8 after the word: detected too, at the byte that breaks the character.
    for tail in (b"\xe2", b"\xe2 ", b"\xe2a", b"\xe2\x80"):
        assert guard.first_violation(b"ass" + tail, final=True) is not None, tail


@pytest.fixture(scope="module")
def leet_guard():  # type: ignore[no-untyped-def]
    return words_shield(
        ("ass", "shit", "boob", "bsz", "sex"),
        case_insensitive=True,
        whole_word=True,
        normalize=frozenset({"leet", "repeats"}),
    )


def test_samsung_galaxy_a55_is_not_leetspeak_for_ass(leet_guard) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: "The Samsung Galaxy A55 has a good camera." was flagged (A55 read as ass)."""
    # The scenario: leetspeak is on and the same letters in other shapes are caught.
    for text in ("a55", "@55", "45s", "4S5", "a$$", "sh1t", "Sh1t", "b00b", "ass", "ASS", "aS5"):
        assert leet_guard.first_violation(text.encode(), final=True) is not None, text
    for text in (
        "The Samsung Galaxy A55 has a good camera.",
        "A55 B52 B00B SH1T A5S B5Z S3X AA55",
        "Room 455, flight 8008, 5318008 and 7175.",
    ):
        assert leet_guard.first_violation(text.encode(), final=True) is None, text


@given(st.from_regex(r"[A-Z]{0,3}[0-9]{1,7}", fullmatch=True))
@settings(max_examples=60)
def test_model_numbers_and_numbers_never_spell_a_word(model: str) -> None:
    guard = words_shield(
        ("ass", "boob", "sis", "tit", "gag", "bob", "zoo", "lol"),
        case_insensitive=True,
        whole_word=True,
        normalize=frozenset({"leet", "repeats"}),
    )
    assert guard.first_violation(f"model {model} ok".encode(), final=True) is None
