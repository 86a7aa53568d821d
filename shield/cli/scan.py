"""Scan a text with a spec: list every violation, exit 0 when the text is clean and 1 when not.

The text is the --text argument, or standard input (UTF-8) when --text is absent. SPEC is a spec
file or the name of a library spec (toxicity, pii, secrets). Automaton rules are matched exactly;
classifier rules are judged per sentence or on the whole text, as their scope says (a "window"
scope, counted in tokens during generation, is judged on windows of as many words here).

Each violation is a full match: the leftmost-longest match of the rule's pattern, as re and grep
report it (the decoder flags a match at its earliest byte; a scan reports all of it). A match
that fails its rule's validator (a Luhn, IBAN or phone-number check) is not reported.

With --redact the text is printed with every violation replaced by "[REDACTED:<rule>]" (or the
--redact-with template, where {rule} stands for the rule id); overlapping violations are merged
into one replacement whose {rule} is their ids joined with "+". The exit code stays 0 clean, 1
violated.

Examples:
  shield scan secrets --text "my key is AKIAIOSFODNN7EXAMPLE"
  shield scan specs/library/pii.toml --json < answer.txt
  shield scan pii --redact --text "call +1 415 555 0100"    # call [REDACTED:phone-international+phone-us]

With --json the output is one object, with character offsets into the text (and, with
--redact, the redacted text):
  {"violations": [{"rule": "aws-access-key", "start": 10, "end": 30, "match": "AKIA..."}],
   "redacted": "my key is [REDACTED:aws-access-key]"}
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from typing import Any

from shield.checkpoints import SENTENCE_END_BYTES
from shield.rules import ClassifierRule

HELP = "scan a text with a spec; exit 1 when it violates"

__all__ = ["DEFAULT_REDACTION", "HELP", "add_arguments", "redact", "run"]

_CONTEXT = 32  # characters of context shown on each side of a match
#: What replaces a violation under --redact; ``{rule}`` is the rule id (ids joined with ``+`` when
#: overlapping violations are merged).
DEFAULT_REDACTION = "[REDACTED:{rule}]"
_PLACEHOLDER = "{rule}"
#: A sentence ends after any of these characters (the same bytes close a sentence window).
_SENTENCE_END = "[" + re.escape(bytes(sorted(SENTENCE_END_BYTES)).decode("ascii")) + "]"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``shield scan`` to ``parser``."""
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="a spec file (.toml) or a library spec name (toxicity, pii, secrets)",
    )
    parser.add_argument("--text", help="the text to scan (default: read standard input as UTF-8)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"violations": [{"rule", "start", "end", "match"}]} (character offsets)',
    )
    parser.add_argument(
        "--redact",
        action="store_true",
        help="print the text with every violation replaced (overlapping ones merged)",
    )
    parser.add_argument(
        "--redact-with",
        metavar="TEMPLATE",
        help=f"the replacement for --redact; {{rule}} is the rule id (default {DEFAULT_REDACTION!r})",
    )


def run(args: argparse.Namespace) -> int:
    """Scan the text; print the violations; return 0 when clean, 1 when violated, 2 on bad input."""
    import specs

    if args.redact_with is not None and not args.redact:
        print("shield scan: --redact-with needs --redact; add --redact", file=sys.stderr)
        return 2
    spec = specs.load(specs.resolve_spec_path(args.spec))
    if args.text is not None:
        text = args.text
    else:
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as error:
            print(
                f"shield scan: standard input is not UTF-8 ({error.reason} at byte {error.start});"
                " re-encode it or pass --text",
                file=sys.stderr,
            )
            return 2
    found = [_as_json(violation) for violation in specs.shield_for(spec).scan(text)]
    classifiers = [rule for rule in spec.rules if isinstance(rule, ClassifierRule)]
    found += _classifier_violations(classifiers, text)
    violations = sorted(found, key=lambda item: (item["start"], item["end"], item["rule"]))
    template = DEFAULT_REDACTION if args.redact_with is None else args.redact_with
    if args.json:
        report: dict[str, Any] = {"violations": violations}
        if args.redact:
            report["redacted"] = redact(text, violations, template)
        print(json.dumps(report))
    elif args.redact:
        sys.stdout.write(redact(text, violations, template))
        if not text.endswith("\n"):
            sys.stdout.write("\n")
    else:
        _print_human(spec.name, text, violations)
    return 1 if violations else 0


def redact(text: str, violations: list[dict[str, Any]], template: str = DEFAULT_REDACTION) -> str:
    """``text`` with every violation replaced; overlapping violations become one replacement.

    Args:
        text: the scanned text.
        violations: ``{"rule", "start", "end"}`` items with character offsets (any order).
        template: the replacement; each ``{rule}`` in it becomes the rule id, or the ids of merged
            violations joined with ``+`` (rule ids never contain ``+``). Other braces are kept.

    Returns:
        The redacted text; text outside every violation is unchanged.

    Example:
        >>> redact("a 12345 b", [{"rule": "n", "start": 2, "end": 7}])
        'a [REDACTED:n] b'
    """
    merged: list[tuple[int, int, list[str]]] = []
    for item in sorted(violations, key=lambda v: (v["start"], v["end"])):
        start, end, rule = int(item["start"]), int(item["end"]), str(item["rule"])
        if merged and start < merged[-1][1]:
            last_start, last_end, rules = merged[-1]
            merged[-1] = (last_start, max(last_end, end), [*rules, rule])
        else:
            merged.append((start, end, [rule]))
    pieces, cursor = [], 0
    for start, end, rules in merged:
        pieces.append(text[cursor:start])
        pieces.append(template.replace(_PLACEHOLDER, "+".join(dict.fromkeys(rules))))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _classifier_violations(rules: list[ClassifierRule], text: str) -> list[dict[str, Any]]:
    """Judge each classifier rule over its windows of ``text``: sentences, word windows, or all."""
    from shield.classifiers import judge

    found = []
    for rule in rules:
        if rule.scope == "window":
            print(
                f"note: rule {rule.id} judges windows of {rule.window_tokens} tokens during"
                f" generation; without a tokenizer, scan judges windows of {rule.window_tokens}"
                " whitespace-separated words",
                file=sys.stderr,
            )
        spans = _windows(rule, text)
        verdicts = judge([rule], [text[start:end] for start, end in spans])
        for (start, end), verdict in zip(spans, verdicts, strict=True):
            if verdict is not None:
                found.append(
                    {"rule": rule.id, "start": start, "end": end, "match": text[start:end]}
                )
    return found


def _windows(rule: ClassifierRule, text: str) -> list[tuple[int, int]]:
    """Character spans of the scopes of ``rule`` in ``text`` (surrounding whitespace trimmed)."""
    if rule.scope == "response":
        spans = [(0, len(text))]
    elif rule.scope == "sentence":
        ends = [m.end() for m in re.finditer(_SENTENCE_END, text)]
        spans = list(zip([0, *ends], [*ends, len(text)], strict=True))
    else:
        words = [m.span() for m in re.finditer(r"\S+", text)]
        size = rule.window_tokens or 1
        spans = [
            (words[i][0], words[min(i + size, len(words)) - 1][1])
            for i in range(0, len(words), size)
        ]
    trimmed = []
    for start, end in spans:
        chunk = text[start:end]
        if chunk.strip():
            start += len(chunk) - len(chunk.lstrip())
            end -= len(chunk) - len(chunk.rstrip())
            trimmed.append((start, end))
    return trimmed


def _as_json(violation: Any) -> dict[str, Any]:
    rule = violation.rule if isinstance(violation.rule, str) else violation.rule.id
    return {
        "rule": rule,
        "start": int(violation.start),
        "end": int(violation.end),
        "match": str(violation.match),
    }


def _print_human(name: str, text: str, violations: list[dict[str, Any]]) -> None:
    if not violations:
        print(f"clean: {len(text)} characters, no rule of spec {name!r} violated")
        return
    count = len(violations)
    print(f"{count} violation{'s' if count != 1 else ''} of spec {name!r}:")
    for item in violations:
        line, column = _line_column(text, item["start"])
        print(f"  {line}:{column}: rule {item['rule']}: {item['match']!r}")
        shown, carets = _caret_lines(text, item["start"], item["end"])
        print(f"    {shown}")
        print(f"    {carets}")


def _line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of character ``offset``."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _caret_lines(text: str, start: int, end: int) -> tuple[str, str]:
    """The line holding the match (cropped around it) and a line of carets under the match."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    left = max(line_start, start - _CONTEXT)
    right = min(line_end, max(end, start + 1) + _CONTEXT)
    before, inside, after = (
        text[left:start],
        text[start : min(end, line_end)],
        text[min(end, line_end) : right],
    )
    prefix = "..." if left > line_start else ""
    suffix = "..." if right < line_end else ""
    before, inside, after = (_printable(part) for part in (before, inside, after))
    shown = f"{prefix}{before}{inside}{after}{suffix}"
    carets = " " * _width(prefix + before) + "^" * max(1, _width(inside))
    return shown, carets


def _printable(text: str) -> str:
    return "".join(" " if char in "\t\r\v\f" else char for char in text)


def _width(text: str) -> int:
    """Terminal columns of ``text``: wide characters take two, combining marks none."""
    total = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Cf", "Mn"):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total
