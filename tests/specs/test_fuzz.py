"""The loader never raises anything but SpecError/CompileError, whatever it is given; and
``parse(render(spec)) == spec`` for every spec it can build."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import specs
from shield.errors import CompileError, SpecError
from specs import Spec
from tests.specs.strategies import VOCABULARY, spec_values, tables, toml_documents, toml_value

_FRAGMENTS = (
    "[spec]\n", "[backtrack]\n", "[[rule]]\n", 'name = "x"\n', 'id = "a"\n', "forbid.", "after.",
    "words", "regex", "literal", " = ", "'a(b'", '"x"', "[", "]", "{", "}", ",", "\n", "3", "0.8",
    "true", "match = { ", "case", "whole_word", "normalize", '"leet"', "classifier = { name = ",
    '"profanity-check"', ", threshold = ", "at_most = ", "max_length = { bytes = ", "#", '"""',
)  # fmt: skip


def _only_our_errors(text: str) -> Spec | None:
    try:
        return specs.parse(text, source="fuzz.toml")
    except SpecError as error:
        assert error.file == "fuzz.toml"
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1
        assert "\n" not in str(error)
        return None
    except CompileError:
        return None


@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _only_our_errors(text)


@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join))
def test_toml_ish_text(text: str) -> None:
    _only_our_errors(text)


@given(toml_documents())
def test_valid_toml_with_random_keys_and_values(text: str) -> None:
    _only_our_errors(text)


@st.composite
def near_specs(draw: st.DrawFn) -> str:
    """Spec-shaped documents: the real sections, each holding random keys and values."""
    lines = ["[spec]", f"name = {toml_value(draw(st.sampled_from(['x', '', 3])))}"]
    if draw(st.booleans()):
        lines.append("[backtrack]")
        lines += [f"{key} = {toml_value(value)}" for key, value in draw(tables).items()]
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[rule]]")
        rule = draw(tables)
        rule.setdefault("id", draw(st.sampled_from(["a", "b", "", 7])))
        if draw(st.booleans()):
            kind = draw(st.sampled_from(["words", "regex", "literal"]))
            rule["forbid"] = {kind: draw(st.sampled_from(["x", [], ["q"], 1, "a(", "(?=x)"]))}
        lines += [f"{toml_value(key)} = {toml_value(value)}" for key, value in rule.items()]
    return "\n".join(lines) + "\n"


@given(near_specs())
def test_spec_shaped_documents(text: str) -> None:
    _only_our_errors(text)


@given(st.sampled_from(VOCABULARY))
def test_misspelled_keys_get_a_located_error(key: str) -> None:
    text = f'[spec]\nname = "x"\n[[rule]]\nid = "a"\nforbid.literal = "y"\n{key}x = 1\n'
    error = None
    try:
        specs.parse(text, source="f.toml")
    except SpecError as caught:
        error = caught
    assert error is not None and error.line == 6 and error.rule_id == "a"


@settings(max_examples=40)
@given(spec_values())
def test_render_then_parse_round_trips(spec: Spec) -> None:
    text = specs.render(spec)
    again = specs.parse(text, source="r.toml")
    assert again == spec
    assert again.source == "r.toml"
    assert set(again.rule_lines) == set(spec.rule_ids)
