"""A shield walks text on the host from its numpy tables (short walks, before any long one) or
from Python lists of them (made once, on the first long walk): both give the same verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shield.monitor as monitor
from tests.shield.helpers import regex_shield, words_shield

SHIELDS = (words_shield(("bad", "damn"), whole_word=True), regex_shield("sk-[0-9]{2,}"))


@settings(deadline=None, max_examples=60)
@given(st.text(alphabet="abdk ms-0123!", max_size=60))
def test_array_and_list_walks_agree(text: str) -> None:
    data = text.encode("utf-8")
    for compiled in SHIELDS:
        arrays, lists = replace(compiled), replace(compiled)  # fresh: no lists yet
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(monitor, "_ARRAY_WALK_SYMBOLS", 0)  # every walk builds and uses lists
            expected = lists.first_violation(data, final=True)
            assert lists._tables is not None  # the scenario: the list path ran
        assert arrays.first_violation(data, final=True) == expected
        assert arrays._tables is None  # ... and the array path here
