"""Lowering of one ``[[rule]]`` table to a :mod:`shield.rules` value.

The kind of a rule follows from which keys it has:

=========================  ==========================================
keys                       rule
=========================  ==========================================
``forbid``                 ``WordsRule`` / ``RegexRule`` / ``LiteralRule``
``after`` + ``forbid``     ``AfterRule``
``at_most`` + ``forbid``   ``AtMostRule``
``max_length``             ``MaxLengthRule``
``classifier``             ``ClassifierRule``
=========================  ==========================================

``validator`` (one of :data:`shield.rules.VALIDATORS`) goes with a plain ``forbid`` rule only.

Any other combination is an error that says which keys go together.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from shield.errors import UnsupportedSpecError
from shield.rules import (
    NORMALIZATIONS,
    RULE_ID_FORM,
    RULE_ID_PATTERN,
    SCOPES,
    VALIDATORS,
    AfterRule,
    AtMostRule,
    ClassifierRule,
    LiteralRule,
    MatchOptions,
    MaxLengthRule,
    Pattern,
    RegexRule,
    Rule,
    WordsRule,
)
from specs.classifiers import check_scorer
from specs.validation import Where, describe, suggest
from specs.words import read_words

__all__ = ["RULE_KEYS", "lower_rule"]

#: Keys a ``[[rule]]`` table may have.
RULE_KEYS = (
    "id",
    "forbid",
    "after",
    "at_most",
    "max_length",
    "classifier",
    "match",
    "validator",
)

_PATTERN_KEYS = ("words", "regex", "literal")
_AFTER_KEYS = (*_PATTERN_KEYS, "match")
_MATCH_KEYS = ("case", "whole_word", "normalize")
_CLASSIFIER_KEYS = ("name", "threshold", "scope", "window_tokens")
_KIND_KEYS = ("forbid", "after", "at_most", "max_length", "classifier")


def lower_rule(table: Any, where: Where, base_dir: Path) -> Rule:
    """Validate one ``[[rule]]`` table and lower it to a shield rule.

    Args:
        table: the parsed TOML value of the rule.
        where: the place of the rule (``("rule", index)``), for located errors.
        base_dir: the folder that relative word-file paths are resolved against.

    Returns:
        The rule value.

    Raises:
        SpecSyntaxError: a key is unknown, missing, of the wrong type or out of range, or the keys
            do not form one rule kind.
        SpecError: a word file, package resource or classifier cannot be found.

    Example:
        >>> from specs.lines import LineIndex
        >>> where = Where("<string>", LineIndex(""), ("rule", 0))
        >>> lower_rule({"id": "a", "forbid": {"literal": "x"}}, where, Path("."))
        LiteralRule(id='a', literal='x', match=MatchOptions(case_insensitive=False, whole_word=False, normalize=frozenset()), validator=None)
    """
    rule_id = _rule_id(table, where)
    where = where.in_rule(rule_id)
    where.table(table, RULE_KEYS)
    kinds = [key for key in _KIND_KEYS if key in table]
    if "classifier" in kinds or "max_length" in kinds:
        kind = "classifier" if "classifier" in kinds else "max_length"
        others = [key for key in (*kinds, "match") if key != kind and key in table]
        if others:
            where.child(others[0]).fail(
                f"{kind} rules take no {others[0]!r} key; put {others[0]} in a rule of its own"
            )
        if "validator" in table:
            _refuse_validator(where, kind)
        if kind == "classifier":
            return _classifier_rule(rule_id, table["classifier"], where.child("classifier"))
        return _max_length_rule(rule_id, table["max_length"], where.child("max_length"))
    if "forbid" not in table:
        missing_for = f"{kinds[0]} needs a forbid key" if kinds else "the rule forbids nothing"
        (where.child(kinds[0]) if kinds else where).fail(
            f"{missing_for}; a rule needs one of: forbid.words / forbid.regex / forbid.literal,"
            " after.* with forbid.*, at_most with forbid.*, max_length, classifier"
        )
    if "after" in table and "at_most" in table:
        where.child("at_most").fail(
            "a rule cannot have both after and at_most; split it into two rules"
        )
    if "validator" in table and ("after" in table or "at_most" in table):
        _refuse_validator(where, "after" if "after" in table else "at_most")
    match = _match_options(table.get("match"), where.child("match"))
    forbid = _pattern(
        rule_id, table["forbid"], where.child("forbid"), match, base_dir, _PATTERN_KEYS
    )
    if "validator" in table:
        validator = where.child("validator").choice(table["validator"], VALIDATORS)
        forbid = dataclasses.replace(forbid, validator=validator)
    if "after" in table:
        after = where.child("after")
        after_table = after.table(table["after"], _AFTER_KEYS, hint=' such as { regex = "..." }')
        trigger_match = (
            _match_options(after_table["match"], after.child("match"))
            if "match" in after_table
            else match
        )
        trigger = _pattern(rule_id, after_table, after, trigger_match, base_dir, _AFTER_KEYS)
        return AfterRule(id=rule_id, trigger=trigger, forbid=forbid)
    if "at_most" in table:
        count = where.child("at_most").integer(
            table["at_most"],
            minimum=1,
            fix=" (for zero occurrences, drop at_most: forbid alone means never)",
        )
        return AtMostRule(id=rule_id, pattern=forbid, count=count)
    return forbid


def _refuse_validator(where: Where, kind: str) -> None:
    where.child("validator").fail(
        "validator applies to plain forbid rules only (a scan drops the matches that fail it);"
        f" this rule has {kind}; remove validator, or put the pattern in a forbid rule of its own"
    )


def _rule_id(table: Any, where: Where) -> str:
    if not isinstance(table, dict):
        where.fail(f"each [[rule]] must be a table; got {describe(table)}")
    if "id" not in table:
        where.fail('the rule has no id; add e.g. id = "no-api-keys" (letters, digits, _ . -)')
    rule_id = table["id"]
    if not isinstance(rule_id, str) or RULE_ID_PATTERN.fullmatch(rule_id) is None:
        where.child("id").fail(f"id must be {RULE_ID_FORM}; got {describe(rule_id)}")
    return rule_id


def _pattern(
    rule_id: str,
    value: Any,
    where: Where,
    match: MatchOptions,
    base_dir: Path,
    allowed: tuple[str, ...],
) -> Pattern:
    example = ' such as { regex = "..." }, { literal = "..." } or { words = [...] }'
    table = where.table(value, allowed, hint=example)
    given = [key for key in _PATTERN_KEYS if key in table]
    if len(given) != 1:
        got = "none" if not given else " and ".join(given)
        where.fail(f"{where.name} needs exactly one of words, regex, literal; got {got}")
    key = given[0]
    at = where.child(key)
    if key == "words":
        return WordsRule(id=rule_id, words=read_words(table[key], at, base_dir), match=match)
    if key == "regex":
        if match.normalize:
            at.fail(
                f"normalize applies to words and literal patterns, not to {where.name}.regex; drop"
                " normalize (give an after trigger its own after.match) or use a word list",
                UnsupportedSpecError,
            )
        return RegexRule(id=rule_id, pattern=at.string(table[key]), match=match)
    literal = at.string(table[key], allow_empty=True)
    if not literal:
        at.fail("literal must not be empty; an empty literal would match everywhere")
    return LiteralRule(id=rule_id, literal=literal, match=match)


def _match_options(value: Any, where: Where) -> MatchOptions:
    if value is None:
        return MatchOptions()
    table = where.table(value, _MATCH_KEYS)
    case = where.child("case").choice(table.get("case", "sensitive"), ("sensitive", "insensitive"))
    whole_word = where.child("whole_word").boolean(table.get("whole_word", False))
    names: list[Any] = []
    if "normalize" in table:
        at = where.child("normalize")
        names = at.array(table["normalize"], what="normalisation names")
        for name in names:
            if not isinstance(name, str) or name not in NORMALIZATIONS:
                shown = name if isinstance(name, str) else describe(name)
                hint = suggest(name, NORMALIZATIONS) if isinstance(name, str) else ""
                at.fail(
                    f"unknown normalisation {shown!r}{hint} (valid: {', '.join(sorted(NORMALIZATIONS))})"
                )
    return MatchOptions(
        case_insensitive=case == "insensitive", whole_word=whole_word, normalize=frozenset(names)
    )


def _max_length_rule(rule_id: str, value: Any, where: Where) -> MaxLengthRule:
    table = where.table(value, ("bytes",), hint=" such as { bytes = 4096 }")
    if "bytes" not in table:
        where.fail("max_length needs bytes, e.g. max_length = { bytes = 4096 }")
    return MaxLengthRule(
        id=rule_id, max_bytes=where.child("bytes").integer(table["bytes"], minimum=1)
    )


def _classifier_rule(rule_id: str, value: Any, where: Where) -> ClassifierRule:
    example = ' such as { name = "profanity-check", threshold = 0.8 }'
    table = where.table(value, _CLASSIFIER_KEYS, hint=example)
    for key in ("name", "threshold"):
        if key not in table:
            where.fail(f"classifier needs {key}{example.replace(' such as', ', e.g.')}")
    name = where.child("name").string(table["name"])
    check_scorer(name, where.child("name"))
    threshold = where.child("threshold").probability(table["threshold"])
    scope = where.child("scope").choice(table.get("scope", "sentence"), SCOPES)
    window_tokens: int | None = None
    if scope == "window":
        if "window_tokens" not in table:
            where.fail('scope = "window" needs window_tokens, e.g. window_tokens = 32')
        window_tokens = where.child("window_tokens").integer(table["window_tokens"], minimum=1)
    elif "window_tokens" in table:
        where.child("window_tokens").fail(
            f'window_tokens applies only to scope = "window"; this rule has scope = "{scope}";'
            " remove window_tokens or change the scope"
        )
    return ClassifierRule(
        id=rule_id,
        scorer=name,
        threshold=threshold,
        scope=scope,  # type: ignore[arg-type]  # checked against SCOPES above
        window_tokens=window_tokens,
    )
