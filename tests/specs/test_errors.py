"""Every kind of malformed spec raises a located SpecError: class, file, line, rule id, message."""

from __future__ import annotations

import pytest

import specs
from shield.errors import SpecError, SpecSyntaxError, UnsupportedSpecError
from shield.rules import AtMostRule, LiteralRule
from tests.specs.helpers import assert_located

SOURCE = "s.toml"


def fail(text: str, **kwargs: object) -> SpecError:
    with pytest.raises(SpecError) as caught:
        specs.parse(text, source=SOURCE, **kwargs)  # type: ignore[arg-type]
    return caught.value


def rule(body: str, *, before: str = "") -> str:
    """A spec of a header (lines 1-2), optional extra text, then one rule starting with its id."""
    return f'[spec]\nname = "demo"\n{before}\n[[rule]]\nid = "r"\n{body}\n'


# -- TOML syntax -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("[spec\nname = 'x'\n", 1, "column"),
        ('[spec]\nname = "x"\n\n[[rule]]\nid = "a"\nforbid.regex = "\\d"\n', 6, "escape"),
        ('[spec]\nname = "x\n', 2, "invalid TOML"),
        ("[spec]\nname = \n", 2, "invalid TOML"),
        ('[spec]\nname = "x"\nname = "y"\n', 3, "invalid TOML"),
        ('[spec]\nname = "x"\n[spec]\n', 3, "invalid TOML"),
        ("a = [1,\n", 2, "at the end of the text"),
    ],
)
def test_bad_toml_is_located_at_its_line(text: str, line: int, says: str) -> None:
    assert_located(
        fail(text), kind=SpecSyntaxError, file=SOURCE, line=line, rule_id=None, says=(says,)
    )


def test_bad_toml_suggests_literal_strings_for_regexes() -> None:
    error = fail(rule('forbid.regex = "\\d+"'))
    assert "literal strings" in error.message


def test_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    error = fail("a = " + "[" * 5000 + "]" * 5000 + "\n")
    assert isinstance(error, SpecSyntaxError)


# -- structure: top level, [spec], [backtrack] ------------------------------------------------


def test_unknown_top_level_key_suggests_the_closest() -> None:
    error = fail('[spec]\nname = "x"\n\n[[rules]]\nid = "a"\n')
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=4,
        rule_id=None,
        says=("'rules'", "did you mean 'rule'?"),
    )


def test_missing_spec_table_and_name() -> None:
    error = fail('[[rule]]\nid = "a"\nforbid.literal = "x"\n')
    assert_located(
        error, kind=SpecSyntaxError, file=SOURCE, line=None, rule_id=None, says=("[spec]",)
    )
    error = fail('[spec]\ndescription = "d"\n[[rule]]\nid = "a"\nforbid.literal = "x"\n')
    assert_located(error, kind=SpecSyntaxError, file=SOURCE, line=1, rule_id=None, says=("name",))


def test_wrong_type_of_name_says_what_it_got() -> None:
    error = fail('[spec]\nname = 3\n[[rule]]\nid = "a"\nforbid.literal = "x"\n')
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=2,
        rule_id=None,
        says=("must be a string", "an integer (3)"),
    )


def test_no_rules_is_an_error() -> None:
    error = fail('[spec]\nname = "x"\n')
    assert_located(
        error, kind=SpecSyntaxError, file=SOURCE, line=None, rule_id=None, says=("no rules",)
    )
    error = fail('rule = 3\n[spec]\nname = "x"\n')
    assert_located(
        error, kind=SpecSyntaxError, file=SOURCE, line=1, rule_id=None, says=("[[rule]]",)
    )


def test_rule_that_is_not_a_table() -> None:
    error = fail('rule = [1]\n[spec]\nname = "x"\n')
    assert_located(
        error, kind=SpecSyntaxError, file=SOURCE, line=1, rule_id=None, says=("must be a table",)
    )


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            "max_rollback_tokens = 0",
            ("max_rollback_tokens must be an integer >= 1", "got 0", "default is 48"),
        ),
        ("max_retries = -2", ("max_retries must be an integer >= 1", "got -2")),
        ("max_discarded_tokens = 2.5", ("must be an integer", "a float (2.5)")),
        ('max_rollback_tokens = "48"', ("without quotes",)),
        ("max_retries = true", ("a boolean",)),
        ('checkpoint = "paragraph"', ("'token', 'word', 'sentence'", "'paragraph'")),
        ('checkpoint = "words"', ("did you mean 'word'?",)),
        ('on_exhausted = "fail"', ("'stop', 'refuse'",)),
        ("refusal = 7", ("must be a string",)),
        ("max_rollback = 3", ("unknown key 'max_rollback'", "did you mean 'max_rollback_tokens'?")),
    ],
)
def test_bad_backtrack_bounds_are_located_at_their_key(entry: str, says: tuple[str, ...]) -> None:
    text = (
        f'[spec]\nname = "x"\n\n[backtrack]\n{entry}\n\n[[rule]]\nid = "a"\nforbid.literal = "x"\n'
    )
    assert_located(fail(text), kind=SpecSyntaxError, file=SOURCE, line=5, rule_id=None, says=says)


def test_refuse_needs_a_refusal_text() -> None:
    text = '[spec]\nname = "x"\n[backtrack]\non_exhausted = "refuse"\nrefusal = ""\n[[rule]]\nid = "a"\nforbid.literal = "x"\n'
    assert_located(
        fail(text),
        kind=SpecSyntaxError,
        file=SOURCE,
        line=5,
        rule_id=None,
        says=("non-empty refusal",),
    )


# -- rules: ids and keys ----------------------------------------------------------------------


def test_missing_and_malformed_rule_ids() -> None:
    error = fail('[spec]\nname = "x"\n\n[[rule]]\nforbid.literal = "x"\n')
    assert_located(error, kind=SpecSyntaxError, file=SOURCE, line=4, rule_id=None, says=("no id",))
    error = fail('[spec]\nname = "x"\n\n[[rule]]\nid = "has space"\nforbid.literal = "x"\n')
    assert_located(
        error, kind=SpecSyntaxError, file=SOURCE, line=5, rule_id=None, says=("'has space'",)
    )


def test_rule_id_clash_names_both_lines() -> None:
    text = '[spec]\nname = "x"\n\n[[rule]]\nid = "a"\nforbid.literal = "x"\n\n[[rule]]\nid = "a"\nforbid.literal = "y"\n'
    assert_located(
        fail(text),
        kind=SpecSyntaxError,
        file=SOURCE,
        line=9,
        rule_id="a",
        says=("already used by the rule at line 4",),
    )


def test_rule_id_clash_is_reported_in_file_order() -> None:
    a, a_again, broken = (
        '[[rule]]\nid = "a"\nforbid.literal = "x"\n',
        '[[rule]]\nid = "a"\nforbid.literal = "y"\n',
        '[[rule]]\nid = "b"\nforbid.literal = ""\n',
    )
    head = '[spec]\nname = "x"\n'
    # The clash (rule 2, line 7) comes before the malformed rule 3, so it is what is reported ...
    assert_located(
        fail(head + a + a_again + broken),
        kind=SpecSyntaxError,
        file=SOURCE,
        line=7,
        rule_id="a",
        says=("already used by the rule at line 3",),
    )
    # ... and a malformed rule before the clash is reported first.
    assert_located(
        fail(head + a + broken + a_again),
        kind=SpecSyntaxError,
        file=SOURCE,
        line=8,
        rule_id="b",
        says=("literal must not be empty",),
    )


def test_errors_of_hand_built_rules_are_located_in_the_spec() -> None:
    spec = specs.parse(rule('forbid.literal = "x"'), source=SOURCE)
    with pytest.raises(SpecSyntaxError) as caught:
        AtMostRule(id="r", pattern=LiteralRule(id="r", literal="x"), count=-1)
    assert_located(
        specs.locate(caught.value, spec),
        kind=SpecSyntaxError,
        file=SOURCE,
        line=4,
        rule_id="r",
        says=("count must be a non-negative integer; got -1",),
    )


def test_unknown_rule_key_suggests_the_closest() -> None:
    error = fail(rule('forbid.literal = "x"\nforbd.regex = "y"'))
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=7,
        rule_id="r",
        says=("did you mean 'forbid'?",),
    )


def test_unknown_pattern_and_match_keys() -> None:
    error = fail(rule('forbid.regexp = "x"'))
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=6,
        rule_id="r",
        says=("did you mean 'regex'?",),
    )
    error = fail(rule('forbid.literal = "x"\nmatch = { wholeword = true }'))
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=7,
        rule_id="r",
        says=("did you mean 'whole_word'?",),
    )


@pytest.mark.parametrize(
    ("body", "line", "says"),
    [
        ("forbid.regex = 5", 6, ("forbid.regex must be a string", "an integer (5)")),
        ('forbid.literal = ""', 6, ("must not be empty",)),
        ('forbid = "x"', 6, ("forbid must be a table",)),
        ('forbid.literal = "x"\nmatch = { whole_word = "yes" }', 7, ("true or false",)),
        ('forbid.literal = "x"\nmatch = { case = "upper" }', 7, ("'sensitive', 'insensitive'",)),
        ('forbid.literal = "x"\nmatch = "insensitive"', 7, ("match must be a table",)),
        ('forbid.literal = "x"\nat_most = "3"', 7, ("at_most must be an integer",)),
        ('forbid.literal = "x"\nat_most = 0', 7, ("forbid alone means never",)),
        (
            'forbid.literal = "x"\nforbid.regex = "y"',
            6,
            ("exactly one of words, regex, literal", "regex and literal"),
        ),
        ("forbid = {}", 6, ("got none",)),
        ('after.literal = "x"', 6, ("after needs a forbid key",)),
        ("at_most = 2", 6, ("at_most needs a forbid key",)),
        ('match = { case = "insensitive" }', 4, ("forbids nothing",)),
        ('after.regex = "a"\nat_most = 2\nforbid.literal = "b"', 7, ("both after and at_most",)),
        ('after = "card"\nforbid.literal = "b"', 6, ("after must be a table",)),
        (
            'classifier = { name = "profanity-check", threshold = 0.8 }\nforbid.literal = "x"',
            7,
            ("classifier rules take no 'forbid'",),
        ),
        ("max_length = { bytes = 10 }\nmatch = {}", 7, ("max_length rules take no 'match'",)),
        ("max_length = { chars = 10 }", 6, ("unknown key 'chars'",)),
        ("max_length = {}", 6, ("needs bytes",)),
        ("max_length = { bytes = 0 }", 6, ("integer >= 1",)),
        ("max_length = 100", 6, ("max_length must be a table",)),
    ],
)
def test_malformed_rules_are_located(body: str, line: int, says: tuple[str, ...]) -> None:
    assert_located(
        fail(rule(body)), kind=SpecSyntaxError, file=SOURCE, line=line, rule_id="r", says=says
    )


def test_normalisation_of_a_regex_is_unsupported() -> None:
    error = fail(rule("forbid.regex = 'ab+'\nmatch = { normalize = [\"leet\"] }"))
    assert_located(
        error,
        kind=UnsupportedSpecError,
        file=SOURCE,
        line=6,
        rule_id="r",
        says=("not to forbid.regex",),
    )
    error = fail(
        rule("after.regex = 'a'\nforbid.words = ['b']\nmatch = { normalize = [\"leet\"] }")
    )
    assert_located(
        error, kind=UnsupportedSpecError, file=SOURCE, line=6, rule_id="r", says=("after.match",)
    )


def test_unknown_normalisation_suggests_the_closest() -> None:
    error = fail(rule('forbid.words = ["x"]\nmatch = { normalize = ["nfkc", "leetspeak"] }'))
    assert_located(
        error,
        kind=SpecSyntaxError,
        file=SOURCE,
        line=7,
        rule_id="r",
        says=("'leetspeak'", "did you mean 'leet'?", "zero_width"),
    )
    error = fail(rule('forbid.words = ["x"]\nmatch = { normalize = [] }'))
    assert "empty array" in error.message
    error = fail(rule('forbid.words = ["x"]\nmatch = { normalize = [1] }'))
    assert "unknown normalisation" in error.message
