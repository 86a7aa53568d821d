"""Merging components: the merged table violates exactly when some rule does."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import shield
from shield.automata.merge import Component, merge_components, product
from shield.rules import LiteralRule, MatchOptions, RegexRule, WordsRule
from tests.shield.helpers import Spec

RULES = (
    RegexRule(id="digits", pattern=r"\d{3}"),
    LiteralRule(id="ab", literal="ab"),
    WordsRule(id="cat", words=("cat",), match=MatchOptions(whole_word=True)),
    RegexRule(id="b-then-c", pattern="b.*c"),
)
GUARD = shield.compile(Spec("merge", RULES))
COMPONENTS = [Component(rule_ids=(r.rule_id,), dfa=r.dfa) for r in GUARD.compiled]


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
    assert full is not None
    (sink,) = np.flatnonzero(full.violating).tolist()  # violations collapse into one state
    assert full.table[sink].tolist() == [sink] * 257  # ... which absorbs every symbol
    assert full.n_states <= COMPONENTS[0].n_states * COMPONENTS[3].n_states


def test_lifted_tables_merge_small_rules() -> None:
    tokens = GUARD.lift((b"", b"a", b"b", b"c", b"1", b" "), special=[True] + [False] * 5)
    assert tokens.byte_transitions.shape[0] < len(RULES)
    assert "+" in "".join(tokens.rule_ids)
