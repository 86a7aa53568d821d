"""Rule values check themselves once, at construction: every malformed field raises a
SpecSyntaxError naming the rule, with the message the compiler used to give."""

from __future__ import annotations

import math
from typing import Any

import pytest

from shield.classifiers import BUILTIN_SCORERS
from shield.errors import SpecSyntaxError, UnsupportedSpecError
from shield.rules import (
    RULE_ID_PATTERN,
    SCORER_REFERENCE,
    AfterRule,
    AtMostRule,
    ClassifierRule,
    LiteralRule,
    MatchOptions,
    MaxLengthRule,
    RegexRule,
    WordsRule,
    check_unique_ids,
    repeated_rule_id,
)

HI = LiteralRule(id="p", literal="hi")


def _raises(build: Any, says: str, *, rule_id: str | None = "x", kind: type = SpecSyntaxError):
    with pytest.raises(kind) as info:
        build()
    assert type(info.value) is kind
    assert info.value.rule_id == rule_id, str(info.value)
    assert says in info.value.message, info.value.message
    return info.value


@pytest.mark.parametrize("count", [-1, True, 1.5, "2", None])
def test_at_most_count_is_a_non_negative_integer(count: object) -> None:
    _raises(
        lambda: AtMostRule(id="x", pattern=HI, count=count),  # type: ignore[arg-type]
        f"count must be a non-negative integer; got {count!r}",
    )
    assert AtMostRule(id="x", pattern=HI, count=0).count == 0


@pytest.mark.parametrize("max_bytes", [-1, False, 4.0, "10"])
def test_max_length_is_a_non_negative_integer(max_bytes: object) -> None:
    _raises(
        lambda: MaxLengthRule(id="x", max_bytes=max_bytes),  # type: ignore[arg-type]
        f"max_bytes must be a non-negative integer; got {max_bytes!r}",
    )
    assert MaxLengthRule(id="x", max_bytes=0).max_bytes == 0


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"scorer": "not a ref"}, "scorer must be 'profanity-check' or 'module:function'"),
        ({"scorer": "pkg..mod:f"}, "scorer must be"),
        ({"scorer": "mod:f\n"}, "scorer must be"),
        ({"scorer": 3}, "scorer must be"),
        ({"threshold": 0.0}, "threshold must be a number in (0, 1]; got 0.0"),
        ({"threshold": 1.5}, "threshold must be a number in (0, 1]"),
        ({"threshold": math.nan}, "threshold must be a number in (0, 1]"),
        ({"threshold": True}, "threshold must be a number in (0, 1]"),
        ({"threshold": "0.5"}, "threshold must be a number in (0, 1]"),
        ({"scope": "paragraph"}, "scope must be sentence, window or response"),
        ({"scope": "window"}, "scope 'window' needs window_tokens, a positive integer; got None"),
        ({"scope": "window", "window_tokens": 0}, "needs window_tokens"),
        ({"scope": "window", "window_tokens": True}, "needs window_tokens"),
        ({"window_tokens": 8}, "window_tokens applies only to scope 'window'"),
    ],
)
def test_classifier_rule_fields(fields: dict[str, Any], says: str) -> None:
    values = {"scorer": "profanity-check", "threshold": 0.5, **fields}
    _raises(lambda: ClassifierRule(id="x", **values), says)


def test_classifier_rule_accepts_every_form_it_documents() -> None:
    for name in (*BUILTIN_SCORERS, "math:fsum", "pkg.sub_1.mod:_score"):
        assert ClassifierRule(id="x", scorer=name, threshold=1).scorer == name
    window = ClassifierRule(id="x", scorer="m:f", threshold=0.5, scope="window", window_tokens=4)
    assert window.window_tokens == 4


def test_scorer_reference_names_module_and_function() -> None:
    found = SCORER_REFERENCE.fullmatch("pkg.mod:score")
    assert found is not None and (found["module"], found["function"]) == ("pkg.mod", "score")
    for bad in ("x", "pkg.:f", ".pkg:f", "pkg:f:g", "1pkg:f", "pkg:1f", "pkg: f"):
        assert SCORER_REFERENCE.fullmatch(bad) is None, bad


def test_regex_with_normalisation_is_unsupported() -> None:
    _raises(
        lambda: RegexRule(id="x", pattern="a", match=MatchOptions(normalize=frozenset({"leet"}))),
        "normalize applies to words and literals, not to regex patterns",
        kind=UnsupportedSpecError,
    )


def test_match_options_check_and_freeze_normalisations() -> None:
    options = MatchOptions(normalize={"leet", "nfkc"})  # type: ignore[arg-type]
    assert options.normalize == frozenset({"leet", "nfkc"})
    assert isinstance(options.normalize, frozenset)
    assert MatchOptions(normalize=["leet"]) == MatchOptions(normalize=frozenset({"leet"}))  # type: ignore[arg-type]
    hash(WordsRule(id="w", words=("a",), match=options))  # usable as (part of) a cache key
    # The options are built before any rule holds them, so their errors name no rule.
    _raises(
        lambda: MatchOptions(normalize=frozenset({"leet", "leetspeak"})),
        "unknown normalisation(s) ['leetspeak']; expected a subset of",
        rule_id=None,
    )
    _raises(lambda: MatchOptions(normalize="leet"), "normalize must be a set", rule_id=None)  # type: ignore[arg-type]
    _raises(lambda: MatchOptions(whole_word=1), "whole_word must be True or False", rule_id=None)  # type: ignore[arg-type]


def test_word_lists_and_literals() -> None:
    assert WordsRule(id="x", words=["a", "b"]).words == ("a", "b")  # type: ignore[arg-type]
    _raises(lambda: WordsRule(id="x", words=()), "the word list is empty; give at least one word")
    _raises(lambda: WordsRule(id="x", words=("a", "")), "the word list holds an empty word")
    _raises(lambda: WordsRule(id="x", words=("a", 3)), "not a string")  # type: ignore[arg-type]
    _raises(lambda: WordsRule(id="x", words="abc"), "words must be a sequence of strings")  # type: ignore[arg-type]
    _raises(lambda: LiteralRule(id="x", literal=""), "literal must not be empty")
    _raises(lambda: LiteralRule(id="x", literal=b"a"), "literal must be a string")  # type: ignore[arg-type]
    _raises(lambda: RegexRule(id="x", pattern=None), "pattern must be a string")  # type: ignore[arg-type]
    _raises(lambda: WordsRule(id="x", words=("a",), match=None), "match must be MatchOptions")  # type: ignore[arg-type]


def test_compound_rules_hold_patterns() -> None:
    _raises(
        lambda: AfterRule(id="x", trigger="card", forbid=HI),  # type: ignore[arg-type]
        "trigger must be a WordsRule, RegexRule or LiteralRule; got str",
    )
    _raises(
        lambda: AfterRule(id="x", trigger=HI, forbid=MaxLengthRule(id="m", max_bytes=3)),  # type: ignore[arg-type]
        "forbid must be",
    )
    _raises(
        lambda: AtMostRule(id="x", pattern=AtMostRule(id="y", pattern=HI, count=1), count=1),  # type: ignore[arg-type]
        "pattern must be",
    )


@pytest.mark.parametrize("rule_id", ["", "has space", "a:b", "a+b", "-a", "x" * 65, None, 3])
def test_rule_ids_have_the_documented_form(rule_id: object) -> None:
    for build in (
        lambda: LiteralRule(id=rule_id, literal="a"),  # type: ignore[arg-type]
        lambda: MaxLengthRule(id=rule_id, max_bytes=1),  # type: ignore[arg-type]
        lambda: ClassifierRule(id=rule_id, scorer="m:f", threshold=0.5),  # type: ignore[arg-type]
    ):
        error = _raises(build, "a rule id must be a string of 1-64 letters, digits", rule_id=None)
        assert error.message.endswith(f"; got {rule_id!r}")
    assert RULE_ID_PATTERN.fullmatch("no-api_keys.v2")


def test_repeated_rule_ids() -> None:
    a, b = LiteralRule(id="a", literal="x"), LiteralRule(id="b", literal="x")
    assert repeated_rule_id([]) is None
    assert repeated_rule_id([a, b]) is None
    assert repeated_rule_id([a, b, b, a]) == (1, 2)
    check_unique_ids((a, b))
    _raises(lambda: check_unique_ids((b, a, b)), "(rules #1 and #3", rule_id="b")


def test_repeated_rule_id_reads_no_further_than_the_repeat() -> None:
    read: list[str] = []

    def rules():  # type: ignore[no-untyped-def]
        for rule_id in ("a", "b", "a", "c"):
            read.append(rule_id)
            yield LiteralRule(id=rule_id, literal="x")

    assert repeated_rule_id(rules()) == (0, 2)
    assert read == ["a", "b", "a"]
