"""Merging components: the merged table violates exactly when some rule does."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import shield
from shield.merge import Component, merge_components, product
from shield.rules import LiteralRule, MatchOptions, RegexRule, WordsRule
from tests.shield.helpers import Spec

RULES = (
    RegexRule(id="digits", pattern=r"\d{3}"),
    LiteralRule(id="ab", literal="ab"),
    WordsRule(id="cat", words=("cat",), match=MatchOptions(whole_word=True)),
    RegexRule(id="b-then-c", pattern="b.*c"),
)
GUARD = shield.compile(Spec("merge", RULES))
COMPONENTS = [
    Component(
        rule_ids=(r.rule_id,),
        table=r.dfa.byte_table().astype(np.int32),
        violating=np.asarray(r.dfa.accepting, dtype=bool),
        initial=int(r.dfa.initial),
    )
    for r in GUARD.compiled
]


def _violates(components: list[Component], data: bytes, end: bool) -> bool:
    for comp in components:
        state = comp.initial
        for symbol in [*data, *([256] if end else [])]:
            state = int(comp.table[state, symbol])
        if comp.violating[state]:
            return True
    return False


texts = st.binary(max_size=12) | st.text(alphabet="abc 123", max_size=12).map(str.encode)


@given(texts, st.booleans())
def test_merged_components_violate_exactly_when_some_rule_does(data: bytes, end: bool) -> None:
    merged = merge_components(COMPONENTS)
    assert len(merged) < len(COMPONENTS)
    assert sorted(i for c in merged for i in c.rule_ids) == sorted(r.id for r in RULES)
    assert _violates(merged, data, end) == _violates(COMPONENTS, data, end)


def test_product_respects_the_limit() -> None:
    assert product(COMPONENTS[0], COMPONENTS[3], limit=2) is None
    full = product(COMPONENTS[0], COMPONENTS[3])
    assert full is not None and full.violating[0] and full.table[0].tolist() == [0] * 257


def test_lifted_tables_merge_small_rules() -> None:
    tokens = GUARD.lift((b"", b"a", b"b", b"c", b"1", b" "), special=[True] + [False] * 5)
    assert tokens.byte_transitions.shape[0] < len(RULES)
    assert "+" in "".join(tokens.rule_ids)
