"""Word lists with case folding, whole words and every normalisation."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shield.automata.limits import CompileLimits
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
    differ = product([direct, reference], lambda acc: acc[0] != acc[1], max_states=100_000)
    assert not differ.accepting.any()
