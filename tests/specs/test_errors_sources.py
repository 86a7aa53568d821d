"""Malformed word lists and classifiers, and locations after multi-line values: located SpecErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

import specs
from shield.errors import SpecError, SpecSyntaxError
from tests.specs.helpers import assert_located

SOURCE = "s.toml"


def fail(text: str, **kwargs: object) -> SpecError:
    with pytest.raises(SpecError) as caught:
        specs.parse(text, source=SOURCE, **kwargs)  # type: ignore[arg-type]
    return caught.value


def rule(body: str, *, before: str = "") -> str:
    """A spec of a header (lines 1-2), optional extra text, then one rule starting with its id."""
    return f'[spec]\nname = "demo"\n{before}\n[[rule]]\nid = "r"\n{body}\n'


# -- word lists -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("[]", ("word list is empty",)),
        ('["ok", 3]', ("words[1] must be a string",)),
        ('["ok", "  "]', ("words[1] is blank",)),
        ("3", ("array of strings",)),
        ('{ package = "better_profanity" }', ("'resource' is missing",)),
        ('{ file = "a.txt", package = "p", resource = "r" }', ("not both",)),
        ('{ path = "a.txt" }', ("unknown key 'path'",)),
        (
            '[{ package = "better_profanity", resource = "profanity_wordlist.txt" }, 3]',
            ("words[1] must be a word or a source table",),
        ),
    ],
)
def test_malformed_word_lists(value: str, says: tuple[str, ...]) -> None:
    assert_located(
        fail(rule(f"forbid.words = {value}")),
        kind=SpecSyntaxError,
        file=SOURCE,
        line=6,
        rule_id="r",
        says=says,
    )


def test_missing_unreadable_empty_and_binary_word_files(tmp_path: Path) -> None:
    text = rule('forbid.words = { file = "words.txt" }')
    error = fail(text, base_dir=tmp_path)
    assert_located(
        error,
        kind=SpecError,
        file=SOURCE,
        line=6,
        rule_id="r",
        says=("not found", str(tmp_path / "words.txt")),
    )
    (tmp_path / "words.txt").mkdir()
    error = fail(text, base_dir=tmp_path)
    assert_located(
        error, kind=SpecError, file=SOURCE, line=6, rule_id="r", says=("cannot read word file",)
    )
    (tmp_path / "words.txt").rmdir()
    (tmp_path / "words.txt").write_text("# only a comment\n\n   \n")
    error = fail(text, base_dir=tmp_path)
    assert_located(
        error, kind=SpecSyntaxError, file=SOURCE, line=6, rule_id="r", says=("word list is empty",)
    )
    (tmp_path / "words.txt").write_bytes(b"fine\n\xff\xfe\n")
    error = fail(text, base_dir=tmp_path)
    assert_located(error, kind=SpecError, file=SOURCE, line=6, rule_id="r", says=("not UTF-8",))


def test_unknown_package_and_resource() -> None:
    error = fail(rule('forbid.words = { package = "no_such_package_xyz", resource = "w.txt" }'))
    assert_located(
        error, kind=SpecError, file=SOURCE, line=6, rule_id="r", says=("no installed package",)
    )
    error = fail(rule('forbid.words = { package = "better-profanity", resource = "w.txt" }'))
    assert "'better_profanity'" in error.message
    error = fail(
        rule('forbid.words = { package = "better_profanity", resource = "profanity_words.txt" }')
    )
    assert_located(
        error,
        kind=SpecError,
        file=SOURCE,
        line=6,
        rule_id="r",
        says=("no resource", "did you mean 'profanity_wordlist.txt'?"),
    )
    error = fail(rule('forbid.words = { package = "better_profanity", resource = "../x.txt" }'))
    assert "without '..'" in error.message


# -- classifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "kind", "says"),
    [
        (
            '{ name = "profanity_check", threshold = 0.8 }',
            SpecError,
            ("unknown classifier", "did you mean 'profanity-check'?"),
        ),
        (
            '{ name = "no_such_module_xyz:score", threshold = 0.8 }',
            SpecError,
            ("no module 'no_such_module_xyz'",),
        ),
        ('{ name = "math:nope", threshold = 0.8 }', SpecError, ("has no attribute 'nope'",)),
        ('{ name = "math:pi", threshold = 0.8 }', SpecError, ("not callable",)),
        ('{ name = "profanity-check", threshold = 0 }', SpecSyntaxError, ("(0, 1]",)),
        ('{ name = "profanity-check", threshold = 1.5 }', SpecSyntaxError, ("(0, 1]", "1.5")),
        ('{ name = "profanity-check", threshold = nan }', SpecSyntaxError, ("(0, 1]",)),
        (
            '{ name = "profanity-check", threshold = "high" }',
            SpecSyntaxError,
            ("a string ('high')",),
        ),
        ('{ name = "profanity-check" }', SpecSyntaxError, ("needs threshold",)),
        ("{ threshold = 0.5 }", SpecSyntaxError, ("needs name",)),
        (
            '{ name = "profanity-check", threshold = 0.8, scope = "paragraph" }',
            SpecSyntaxError,
            ("'sentence', 'window', 'response'",),
        ),
        (
            '{ name = "profanity-check", threshold = 0.8, scope = "window" }',
            SpecSyntaxError,
            ("needs window_tokens",),
        ),
        (
            '{ name = "profanity-check", threshold = 0.8, window_tokens = 8 }',
            SpecSyntaxError,
            ("only to scope",),
        ),
        (
            '{ name = "profanity-check", threshold = 0.8, scope = "window", window_tokens = 0 }',
            SpecSyntaxError,
            (">= 1",),
        ),
        (
            '{ name = "profanity-check", threshold = 0.8, model = "x" }',
            SpecSyntaxError,
            ("unknown key 'model'",),
        ),
    ],
)
def test_bad_classifiers_are_located(
    table: str, kind: type[SpecError], says: tuple[str, ...]
) -> None:
    assert_located(
        fail(rule(f"classifier = {table}")), kind=kind, file=SOURCE, line=6, rule_id="r", says=says
    )


def test_classifier_module_function_resolves() -> None:
    spec = specs.parse(
        rule('classifier = { name = "math:fsum", threshold = 0.9, scope = "response" }')
    )
    assert spec.rules[0].scorer == "math:fsum"  # type: ignore[union-attr]


def test_builtin_classifier_without_its_arrays_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import specs.classifiers as classifier_names

    missing = tmp_path / "profanity_check.npz"
    monkeypatch.setattr(classifier_names, "_REQUIREMENTS", {"profanity-check": missing})
    assert not missing.exists()
    error = fail(rule('classifier = { name = "profanity-check", threshold = 0.8 }'))
    assert_located(
        error, kind=SpecError, file=SOURCE, line=6, rule_id="r", says=(str(missing), "missing")
    )


# -- multi-line values keep later lines right ---------------------------------------------------


def test_lines_after_multiline_values_are_exact() -> None:
    text = (
        '[spec]\nname = "x"\ndescription = """\nline [[rule]]\nid = "fake"\n"""\n\n'
        '[[rule]]\nid = "a"\nforbid.words = [\n  "one",\n  "two",\n]\n\n'
        '[[rule]]\nid = "b"\nforbid.literal = "z"\nmatch = { case = "upper" }\n'
    )
    assert_located(
        fail(text), kind=SpecSyntaxError, file=SOURCE, line=18, rule_id="b", says=("case",)
    )


def test_subtables_of_a_rule_are_located() -> None:
    text = '[spec]\nname = "x"\n\n[[rule]]\nid = "a"\n\n[rule.forbid]\nliteral = "x"\n\n[rule.match]\ncase = "lower"\n'
    assert_located(
        fail(text), kind=SpecSyntaxError, file=SOURCE, line=11, rule_id="a", says=("case",)
    )
