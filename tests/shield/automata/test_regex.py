"""The regex subset: differential tests against Python ``re`` and parser error contracts."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shield.automata.regex import parse_regex
from shield.errors import ShieldError, SpecSyntaxError, UnsupportedSpecError
from tests.shield.helpers import python_pattern, regex_shield

PATTERNS = [
    "abc",
    "a+b",
    "(a|b)*abb",
    "x{2,3}y",
    "[^a]b",
    r"\bcat\b",
    "^ab",
    "ab$",
    "a.c",
    r"\d{3}-\d{2}",
    "(?:ab|ba){2}",
    "[a-c]+?c",
    r"\w+@\w+\.com",
    "ca?t|dog",
    r"\Bat",
    "é+",
    "[à-ÿ]x",
]
ALPHABET = "abcxyt@.-0123 \néàÿ"


@pytest.mark.parametrize("pattern", PATTERNS)
@given(text=st.text(alphabet=ALPHABET, max_size=12))
@settings(max_examples=40)
def test_agrees_with_python_re(pattern: str, text: str) -> None:
    guard = regex_shield(pattern)
    expected = python_pattern(pattern).search(text) is not None
    assert (guard.first_violation(text.encode(), final=True) is not None) == expected


@pytest.mark.parametrize("pattern", ["cat", "a+b", "x.y"])
@given(text=st.text(alphabet="aAbBcCtTxXyY ", max_size=10))
@settings(max_examples=40)
def test_case_insensitive_and_whole_word(pattern: str, text: str) -> None:
    for ww in (False, True):
        guard = regex_shield(pattern, ci=True, whole_word=ww)
        py = re.compile(python_pattern(pattern, whole_word=ww).pattern, re.ASCII | re.IGNORECASE)
        assert (guard.first_violation(text.encode(), final=True) is not None) == (
            py.search(text) is not None
        )


def test_non_ascii_case_folding() -> None:
    guard = regex_shield("(?i)ÉTÉ")
    assert guard.first_violation("un été".encode(), final=True) is not None
    assert guard.first_violation(b"ete", final=True) is None
    assert regex_shield("(?i)k").first_violation("\u212a".encode(), final=True) is not None


@given(st.data())
@settings(max_examples=30)
def test_strings_from_the_pattern_match(data: st.DataObject) -> None:
    pattern = data.draw(
        st.sampled_from(
            [
                p
                for p in PATTERNS
                if "$" not in p and "^" not in p and "\\b" not in p and "\\B" not in p
            ]
        )
    )
    text = data.draw(st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True))
    assert regex_shield(pattern).first_violation(text.encode(), final=True) is not None


@pytest.mark.parametrize(
    ("pattern", "position"),
    [
        ("a(?=b)", 1),
        ("(?<!x)a", 0),
        (r"(a)\1", 3),
        ("(?>a)", 0),
        (r"\p{L}", 0),
        ("a*+", 2),
        ("(?(1)a|b)", 0),
        ("(?s).", 0),
    ],
)
def test_unsupported_constructs(pattern: str, position: int) -> None:
    with pytest.raises(UnsupportedSpecError) as info:
        parse_regex(pattern)
    lines = str(info.value).splitlines()
    assert lines[2].index("^") - 2 == position


@pytest.mark.parametrize(
    "pattern", ["(a", "a)", "[a", "*a", "a**", "[z-a]", r"\q", "x{3,2}", "a\\", "(?P<1>a)"]
)
def test_malformed_patterns(pattern: str) -> None:
    with pytest.raises(SpecSyntaxError):
        parse_regex(pattern)


@given(st.text(max_size=20))
@settings(max_examples=200)
def test_parser_fuzz_only_our_errors(pattern: str) -> None:
    with contextlib.suppress(ShieldError):
        parse_regex(pattern)


@given(st.text(alphabet="()[]{}|*+?^$.\\-,:=!<>aPbd0-9i#", max_size=12))
@settings(max_examples=200)
def test_parser_fuzz_syntax_alphabet(pattern: str) -> None:
    with contextlib.suppress(ShieldError):
        regex_shield(pattern)
