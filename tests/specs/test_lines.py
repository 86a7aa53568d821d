"""The line index finds where tables and keys are defined, whatever the TOML layout."""

from __future__ import annotations

import tomllib

from hypothesis import given
from hypothesis import strategies as st

from specs.lines import LineIndex
from tests.specs.strategies import toml_documents


def test_headers_keys_and_array_elements() -> None:
    text = (
        "# comment\n"  # 1
        "[spec]\n"  # 2
        'name = "x"  # trailing\n'  # 3
        "\n"  # 4
        "[[rule]]\n"  # 5
        'id = "a"\n'  # 6
        "forbid.regex = 'a|b'\n"  # 7
        "[[rule]]\n"  # 8
        '  "id" = "b"\n'  # 9
        "forbid . 'literal' = \"x\"\n"  # 10
        "match = { case = 'insensitive' }\n"  # 11
    )
    index = LineIndex(text)
    assert index.line_of(("spec", "name")) == 3
    assert index.line_of(("rule",)) == 5
    assert index.line_of(("rule", 0)) == 5
    assert index.line_of(("rule", 0, "forbid", "regex")) == 7
    assert index.line_of(("rule", 1)) == 8
    assert index.line_of(("rule", 1, "id")) == 9
    assert index.line_of(("rule", 1, "forbid", "literal")) == 10
    assert index.line_of(("rule", 1, "match", "case")) == 11  # inside an inline table: its key
    assert index.line_of(("rule", 1, "classifier")) == 8  # absent: the enclosing rule
    assert index.line_of(("backtrack",)) is None


def test_multiline_values_and_strings_do_not_confuse_it() -> None:
    text = (
        "a = '''\n"  # 1
        "[[rule]]\n"  # 2  (inside a string)
        "'''\n"  # 3
        'b = """x\\\n'  # 4  line-continuation backslash
        '  id = "no" """\n'  # 5
        "c = [\n"  # 6
        "  { k = 1 },  # ] not the end\n"  # 7
        '  "]",\n'  # 8
        "]\n"  # 9
        "[t]\n"  # 10
        "d = 1\n"  # 11
        "e = '''it''''\n"  # 12  closing delimiter followed by a quote that belongs to the string
        "f = 2\n"  # 13
    )
    tomllib.loads(text)
    index = LineIndex(text)
    assert [index.line_of((key,)) for key in ("a", "b", "c")] == [1, 4, 6]
    assert index.line_of(("rule",)) is None
    assert index.line_of(("t", "d")) == 11
    assert index.line_of(("t", "f")) == 13


def test_subtables_of_array_elements() -> None:
    text = '[[rule]]\nid = "a"\n[rule.forbid]\nregex = "x"\n[[rule]]\nid = "b"\n[rule.match]\ncase = "x"\n'
    index = LineIndex(text)
    assert index.line_of(("rule", 0, "forbid", "regex")) == 4
    assert index.line_of(("rule", 1, "match", "case")) == 8
    assert index.line_of(("rule", 1, "forbid")) == 5


@given(toml_documents())
def test_every_line_it_reports_is_a_line_of_the_text(text: str) -> None:
    index = LineIndex(text)
    document = tomllib.loads(text)
    for key in document:
        line = index.line_of((key,))
        assert line is not None
        assert 1 <= line <= text.count("\n") + 1


@given(st.text())
def test_it_never_raises_even_on_text_that_is_not_toml(text: str) -> None:
    LineIndex(text)
