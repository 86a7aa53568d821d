"""Validate and analyse a spec: print each rule with its kind, automaton size and warnings.

SPEC is a spec file or the name of a library spec (toxicity, pii, secrets). Exit 0 when the spec
is valid (warnings included); exit 2 on an invalid spec, with one line on standard error:
  FILE:LINE: rule ID: what is wrong and how to fix it

Examples:
  shield check specs/library/toxicity.toml
  shield check secrets
"""

from __future__ import annotations

import argparse
from typing import Any

from shield.rules import (
    AfterRule,
    AtMostRule,
    ClassifierRule,
    MatchOptions,
    MaxLengthRule,
    Pattern,
    RegexRule,
    Rule,
    WordsRule,
    rule_kind,
)

HELP = "validate and analyse a spec (rules, automaton sizes, warnings)"

__all__ = ["HELP", "add_arguments", "describe_rule", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``shield check`` to ``parser``."""
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="a spec file (.toml) or a library spec name (toxicity, pii, secrets)",
    )


def run(args: argparse.Namespace) -> int:
    """Load, compile and analyse the spec; print the report; return 0 (errors propagate)."""
    import specs
    from shield.analysis import analyze

    spec = specs.load(specs.resolve_spec_path(args.spec))
    try:
        report = analyze(specs.shield_for(spec))
    except Exception as error:
        raise specs.locate(error, spec) from error
    reports = {item.id: item for item in report.rules}
    count = len(spec.rules)
    print(f"spec {spec.name!r} ({spec.source}): valid, {count} rule{'s' if count != 1 else ''}")
    if spec.description:
        print(f"  {spec.description}")
    width = max(len(rule.id) for rule in spec.rules)
    warnings: list[str] = []
    for rule in spec.rules:
        item = reports.get(rule.id)
        size = f"{item.states} states" if item is not None else "host-side scorer"
        print(f"  {rule.id:<{width}}  {rule_kind(rule):<10}  {size:>16}  {describe_rule(rule)}")
        where = _where(spec.source, spec.line_of(rule.id), rule.id)
        warnings += [f"{where}: {finding}" for finding in (item.warnings if item else ())]
    for finding in report.warnings:
        rule_id = finding.rule_id
        warnings.append(f"{_where(spec.source, spec.line_of(rule_id), rule_id)}: {finding}")
    print(f"backtrack: {_policy(spec.policy)}")
    verdict = "passes the spec" if report.refusal_passes else "VIOLATES the spec"
    print(f"refusal: {spec.policy.refusal!r} ({verdict})")
    for line in warnings:
        print(f"warning: {line}")
    print(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
    return 0


def _where(source: str, line: int | None, rule_id: str | None) -> str:
    where = source if line is None else f"{source}:{line}"
    return where if rule_id is None else f"{where}: rule {rule_id}"


def describe_rule(rule: Rule) -> str:
    """A one-line human description of ``rule``.

    Example:
        >>> describe_rule(LiteralRule(id="x", literal="foo"))
        "literal 'foo'"
    """
    if isinstance(rule, ClassifierRule):
        scope = f"window of {rule.window_tokens} tokens" if rule.scope == "window" else rule.scope
        return f"{rule.scorer} score >= {rule.threshold:g} per {scope}"
    if isinstance(rule, MaxLengthRule):
        return f"longer than {rule.max_bytes} bytes"
    if isinstance(rule, AfterRule):
        return f"{_pattern(rule.forbid)} after {_pattern(rule.trigger)}"
    if isinstance(rule, AtMostRule):
        return f"more than {rule.count} x {_pattern(rule.pattern)}"
    return _pattern(rule)


def _pattern(pattern: Pattern) -> str:
    if isinstance(pattern, WordsRule):
        shown = ", ".join(repr(word) for word in pattern.words[:3])
        more = f", ... ({len(pattern.words)} words)" if len(pattern.words) > 3 else ""
        text = f"words {shown}{more}"
    elif isinstance(pattern, RegexRule):
        text = f"regex {_quoted(pattern.pattern)}"
    else:
        text = f"literal {_quoted(pattern.literal)}"
    return text + _match(pattern.match)


def _quoted(text: str) -> str:
    """``text`` in single quotes as written in a spec, or its repr when that would be ambiguous."""
    return f"'{text}'" if text.isprintable() and "'" not in text else repr(text)


def _match(match: MatchOptions) -> str:
    options = []
    if match.case_insensitive:
        options.append("case-insensitive")
    if match.whole_word:
        options.append("whole word")
    if match.normalize:
        options.append("normalize " + "+".join(sorted(match.normalize)))
    return f" [{', '.join(options)}]" if options else ""


def _policy(policy: Any) -> str:
    return (
        f"checkpoint={policy.checkpoint}, max_rollback_tokens={policy.max_rollback_tokens},"
        f" max_retries={policy.max_retries}, max_discarded_tokens={policy.max_discarded_tokens},"
        f" on_exhausted={policy.on_exhausted}"
    )
