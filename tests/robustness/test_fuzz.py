"""Fuzzing the TOML loader and the regex parser: only our own errors ever escape."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

import specs
from shield.automata.regex import parse_regex
from shield.errors import ShieldError

_REGEX_ALPHABET = st.sampled_from([*list("ab()[]{}|*+?.^$\\-,:=!<>#Pdwsbx0129"), "(?", "(?i)"])
_TOML_PIECES = st.sampled_from(
    [
        "[spec]\n",
        'name = "x"\n',
        "[[rule]]\n",
        'id = "r"\n',
        "forbid.regex = '",
        "'\n",
        'forbid.words = ["a", "b"]\n',
        "forbid.literal = 1\n",
        "[backtrack]\n",
        "max_rollback_tokens = -1\n",
        'checkpoint = "word"\n',
        'match = { case = "x" }\n',
        "after.regex = '(a'\n",
        "at_most = { count = 2 }\n",
        "= \n",
        "[[rule]\n",
        '"\n',
        "classifier = { name = 1 }\n",
        'normalize = ["leet"]\n',
        "\x00",
        "ü",
    ]
)


@given(st.lists(_REGEX_ALPHABET, max_size=20).map("".join), st.booleans())
@settings(max_examples=200, deadline=None)
def test_regex_parser_raises_only_our_errors(pattern: str, ci: bool) -> None:
    with contextlib.suppress(ShieldError):
        parse_regex(pattern, case_insensitive=ci)


@given(st.text(max_size=40))
@settings(max_examples=150, deadline=None)
def test_regex_parser_on_arbitrary_text(pattern: str) -> None:
    with contextlib.suppress(ShieldError):
        parse_regex(pattern)


@given(st.lists(_TOML_PIECES, max_size=16).map("".join))
@settings(max_examples=150, deadline=None)
def test_toml_loader_raises_only_our_errors(text: str) -> None:
    with contextlib.suppress(ShieldError):
        specs.parse(text)


@given(st.text(max_size=200))
@settings(max_examples=100, deadline=None)
def test_toml_loader_on_arbitrary_text(text: str) -> None:
    with contextlib.suppress(ShieldError):
        specs.parse(text)
