"""Export a spec for a grammar engine: its automaton rules as an llguidance Lark grammar.

SPEC is a spec file or the name of a library spec (toxicity, pii, secrets). The grammar accepts
exactly the texts that violate none of the exported rules, so an engine that takes llguidance
grammars (vLLM, SGLang, llama.cpp) masks every token that would complete a violation, and allows
EOS only when the text is clean at its end. It is mask-only: nothing is rolled back, and
classifier rules cannot be expressed; each rule the grammar does not carry is reported on
standard error (and under "not_carried" with --json). With --strict such a rule is an error
(exit 2, nothing printed).

Examples:
  shield export pii --format lark > pii.lark
  shield export toxicity --format lark --json      # the grammar and what it carries
  shield export specs/library/secrets.toml --format lark --strict --out secrets.lark

With --json the output is one object:
  {"spec": "pii", "format": "lark", "grammar": "%llguidance {}\\n...",
   "carried": ["email", ...], "not_carried": [{"rule", "kind", "reason"}, ...]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shield.errors import UnsupportedSpecError

HELP = "export a spec's automaton rules as a grammar (llguidance Lark)"

__all__ = ["HELP", "add_arguments", "run"]

#: The grammar formats ``--format`` accepts.
FORMATS = ("lark",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``shield export`` to ``parser``."""
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="a spec file (.toml) or a library spec name (toxicity, pii, secrets)",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="the grammar format: lark (llguidance's Lark syntax, with its ~ and & operators)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"spec", "format", "grammar", "carried", "not_carried"} instead of the grammar',
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 2) when a rule cannot be carried by the grammar, instead of warning",
    )
    parser.add_argument(
        "--out", metavar="FILE", type=Path, help="write the output to FILE instead of stdout"
    )


def run(args: argparse.Namespace) -> int:
    """Export the spec; print or write the grammar; return 0 (2 under --strict, see the module)."""
    import specs
    from shield.export import export_lark

    spec = specs.load(specs.resolve_spec_path(args.spec))
    exported = export_lark(specs.shield_for(spec))
    if args.strict and exported.not_carried:
        first = exported.not_carried[0]
        others = len(exported.not_carried) - 1
        more = f" (and {others} more rule{'s' if others != 1 else ''})" if others else ""
        raise UnsupportedSpecError(
            f"--strict: this {first.kind} rule cannot be carried by a grammar{more}: "
            f"{first.reason}; drop --strict to export the other rules",
            file=str(spec.source),
            rule_id=first.rule_id,
        )
    for item in exported.not_carried:
        print(
            f"shield export: warning: rule {item.rule_id} ({item.kind}) is not carried by the"
            f" grammar: {item.reason}",
            file=sys.stderr,
        )
    text = json.dumps(exported.to_json()) + "\n" if args.json else exported.grammar
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0
