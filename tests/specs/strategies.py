"""Hypothesis strategies for spec tests: TOML values and documents, and loader-buildable specs."""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any

from hypothesis import strategies as st

from shield.policy import BacktrackPolicy
from shield.rules import (
    NORMALIZATIONS,
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
from specs import Spec
from specs.render import toml_string

#: Keys of the spec language, so that random documents often hit real keys (and near misses).
VOCABULARY = (
    "spec", "name", "description", "backtrack", "checkpoint", "max_rollback_tokens", "max_retries",
    "max_discarded_tokens", "on_exhausted", "refusal", "rule", "id", "forbid", "after", "at_most",
    "max_length", "bytes", "classifier", "threshold", "scope", "window_tokens", "match", "case",
    "whole_word", "normalize", "words", "regex", "literal", "file", "package", "resource",
    "forbd", "rules", "sentence", "insensitive", "validator", "luhn",
)  # fmt: skip

keys = st.one_of(st.sampled_from(VOCABULARY), st.text(min_size=1, max_size=8))

scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from((*VOCABULARY, "word", "token", "stop", "refuse", "profanity-check", "nfkc")),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
    st.datetimes(timezones=st.just(datetime.UTC) | st.none()),
)


def toml_value(value: Any) -> str:
    """``value`` written as an inline TOML value."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    items = ", ".join(f"{toml_string(key)} = {toml_value(item)}" for key, item in value.items())
    return "{ " + items + " }"


values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
tables = st.dictionaries(keys, values, max_size=5)


def _render_document(top: dict[str, Any], sections: list[tuple[str, bool, dict[str, Any]]]) -> str:
    lines = [f"{toml_string(key)} = {toml_value(value)}" for key, value in top.items()]
    used = set(top)
    for name, is_array, table in sections:
        if name in used and not is_array:
            continue
        used.add(name)
        lines.append(f"[[{toml_string(name)}]]" if is_array else f"[{toml_string(name)}]")
        lines += [f"{toml_string(key)} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    """Valid TOML text: top-level keys, then tables and arrays of tables with random content."""
    top = draw(st.dictionaries(keys, values, max_size=3))
    sections = draw(st.lists(st.tuples(keys, st.booleans(), tables), max_size=4))
    arrays = {name for name, is_array, _ in sections if is_array}
    plain = {name for name, is_array, _ in sections if not is_array}
    sections = [s for s in sections if s[0] not in top and not (s[0] in arrays and s[0] in plain)]
    return _render_document(top, sections)


# -- specs the loader can build (and the compiler accepts) --------------------------------------

_letters = st.text(alphabet="qxzjkv", min_size=1, max_size=6)
_ids = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,10}", fullmatch=True)
_matches = st.builds(
    MatchOptions,
    case_insensitive=st.booleans(),
    whole_word=st.booleans(),
    normalize=st.frozensets(
        st.sampled_from(sorted(NORMALIZATIONS - {"repeats", "separators"})), max_size=2
    ),
)


def _patterns(rule_id: str, match: MatchOptions) -> st.SearchStrategy[Pattern]:
    return st.one_of(
        st.builds(WordsRule, id=st.just(rule_id), words=st.lists(_letters, min_size=1, max_size=3, unique=True).map(tuple), match=st.just(match)),
        st.builds(RegexRule, id=st.just(rule_id), pattern=_letters.map(lambda w: w + "[0-9]+"), match=st.just(dataclasses.replace(match, normalize=frozenset()))),
        st.builds(LiteralRule, id=st.just(rule_id), literal=_letters, match=st.just(match)),
    )  # fmt: skip


@st.composite
def rules(draw: st.DrawFn, rule_id: str) -> Rule:
    """One rule of any kind, with id ``rule_id``."""
    kind = draw(st.sampled_from(["pattern", "after", "at_most", "max_length", "classifier"]))
    match = draw(_matches)
    if kind == "pattern":
        validator = draw(st.none() | st.sampled_from(VALIDATORS))
        return dataclasses.replace(draw(_patterns(rule_id, match)), validator=validator)
    if kind == "after":
        trigger_match = draw(st.just(match) | _matches)
        trigger = draw(_patterns(rule_id, trigger_match))
        return AfterRule(id=rule_id, trigger=trigger, forbid=draw(_patterns(rule_id, match)))
    if kind == "at_most":
        count = draw(st.integers(1, 5))
        return AtMostRule(id=rule_id, pattern=draw(_patterns(rule_id, match)), count=count)
    if kind == "max_length":
        return MaxLengthRule(id=rule_id, max_bytes=draw(st.integers(64, 10_000)))
    scope = draw(st.sampled_from(["sentence", "window", "response"]))
    return ClassifierRule(
        id=rule_id,
        scorer="profanity-check",
        threshold=draw(st.floats(0.5, 1.0)),
        scope=scope,
        window_tokens=draw(st.integers(1, 64)) if scope == "window" else None,
    )


policies = st.builds(
    BacktrackPolicy,
    checkpoint=st.sampled_from(["token", "word", "sentence"]),
    max_rollback_tokens=st.integers(1, 500),
    max_retries=st.integers(1, 9),
    max_discarded_tokens=st.integers(1, 5000),
    on_exhausted=st.sampled_from(["stop", "refuse"]),
    refusal=st.sampled_from(["I'd rather not continue that.", "Sorry.", 'Say "no"\\\n\tthen']),
)


@st.composite
def spec_values(draw: st.DrawFn) -> Spec:
    """A spec such as the loader builds: unique ids, patterns that carry their rule's id."""
    ids = draw(st.lists(_ids, min_size=1, max_size=4, unique=True))
    return Spec(
        name=draw(st.text(min_size=1, max_size=10).filter(lambda s: s.strip() and "\n" not in s)),
        description=draw(st.text(max_size=20)),
        rules=tuple(draw(rules(rule_id)) for rule_id in ids),
        policy=draw(policies),
    )
