"""Writing a :class:`~specs.spec.Spec` back as TOML, the inverse of :func:`specs.parse`.

``parse(render(spec)) == spec`` for every spec the loader can build: word lists are written
inline (a file or package resource becomes the list it held), every policy bound is written out,
and match options are written only where they differ from the defaults. The nested patterns of an
``after`` or ``at_most`` rule carry the rule's own id, as the loader gives them.
"""

from __future__ import annotations

import dataclasses

from shield.policy import BacktrackPolicy
from shield.rules import (
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
from specs.spec import Spec

__all__ = ["render", "toml_string"]

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quoted, with escapes for quotes, backslashes and controls).

    Example:
        >>> print(toml_string('a "b"\\\\'))
        "a \\"b\\"\\\\"
    """
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def render(spec: Spec) -> str:
    """The TOML text of ``spec``.

    Args:
        spec: any spec whose rules are those the loader builds.

    Returns:
        TOML text that :func:`specs.parse` turns back into an equal spec.

    Example:
        >>> from shield.rules import LiteralRule
        >>> print(render(Spec(name="demo", rules=(LiteralRule(id="x", literal="foo"),))))
        ... # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
        [spec]
        name = "demo"
        ...
        [[rule]]
        id = "x"
        forbid.literal = "foo"
    """
    lines = ["[spec]", f"name = {toml_string(spec.name)}"]
    if spec.description:
        lines.append(f"description = {toml_string(spec.description)}")
    lines += ["", "[backtrack]", *_policy_lines(spec.policy)]
    for rule in spec.rules:
        lines += ["", "[[rule]]", f"id = {toml_string(rule.id)}", *_rule_lines(rule)]
    return "\n".join(lines) + "\n"


def _policy_lines(policy: BacktrackPolicy) -> list[str]:
    lines = []
    for field in dataclasses.fields(policy):
        value = getattr(policy, field.name)
        shown = toml_string(value) if isinstance(value, str) else str(value)
        lines.append(f"{field.name} = {shown}")
    return lines


def _rule_lines(rule: Rule) -> list[str]:
    if isinstance(rule, ClassifierRule):
        parts = [
            f"name = {toml_string(rule.scorer)}",
            f"threshold = {rule.threshold!r}",
            f"scope = {toml_string(rule.scope)}",
        ]
        if rule.window_tokens is not None:
            parts.append(f"window_tokens = {rule.window_tokens}")
        return [f"classifier = {{ {', '.join(parts)} }}"]
    if isinstance(rule, MaxLengthRule):
        return [f"max_length = {{ bytes = {rule.max_bytes} }}"]
    if isinstance(rule, AfterRule):
        lines = [_pattern_line("after", rule.trigger)]
        if rule.trigger.match != rule.forbid.match:
            lines.append(f"after.match = {_match_table(rule.trigger.match)}")
        return [*lines, *_forbid_lines(rule.forbid)]
    if isinstance(rule, AtMostRule):
        return [f"at_most = {rule.count}", *_forbid_lines(rule.pattern)]
    return _forbid_lines(rule)


def _forbid_lines(pattern: Pattern) -> list[str]:
    lines = [_pattern_line("forbid", pattern)]
    if pattern.match != MatchOptions():
        lines.append(f"match = {_match_table(pattern.match)}")
    if pattern.validator is not None:
        lines.append(f"validator = {toml_string(pattern.validator)}")
    return lines


def _pattern_line(key: str, pattern: Pattern) -> str:
    if isinstance(pattern, WordsRule):
        words = ", ".join(toml_string(word) for word in pattern.words)
        return f"{key}.words = [{words}]"
    if isinstance(pattern, RegexRule):
        return f"{key}.regex = {toml_string(pattern.pattern)}"
    if isinstance(pattern, LiteralRule):
        return f"{key}.literal = {toml_string(pattern.literal)}"
    raise TypeError(f"not a pattern rule: {type(pattern).__name__}")


def _match_table(match: MatchOptions) -> str:
    case = "insensitive" if match.case_insensitive else "sensitive"
    normalize = ", ".join(toml_string(name) for name in sorted(match.normalize))
    parts = [f'case = "{case}"', f"whole_word = {str(match.whole_word).lower()}"]
    if match.normalize:
        parts.append(f"normalize = [{normalize}]")
    return "{ " + ", ".join(parts) + " }"
