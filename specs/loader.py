"""Reading spec files: TOML text → validated, compiled-once :class:`~specs.spec.Spec`.

Every problem is a :class:`~shield.errors.SpecError` (or a :class:`~shield.errors.CompileError`
when a stated compile limit is exceeded) that names the file, the line and the rule, says what was
expected and what was found, and how to fix it. Nothing in a spec is ignored or approximated: an
unknown key is an error, and so is a rule the automaton compiler rejects.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shield.errors import SpecError, SpecSyntaxError
from shield.policy import CHECKPOINTS, BacktrackPolicy
from shield.rules import Rule, repeated_rule_id
from specs.compiling import compile_checked
from specs.lines import LineIndex
from specs.lowering import lower_rule
from specs.spec import Spec
from specs.validation import Where, describe

__all__ = ["load", "parse"]

_TOP_KEYS = ("spec", "backtrack", "rule")
_SPEC_KEYS = ("name", "description")
_POLICY_KEYS = tuple(field.name for field in dataclasses.fields(BacktrackPolicy))
_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def parse(text: str, *, source: str = "<string>", base_dir: str | Path | None = None) -> Spec:
    """Parse, validate and compile-check a spec written in TOML.

    Args:
        text: the TOML text of the spec.
        source: the file name shown in error messages.
        base_dir: the folder that relative word-file paths are resolved against; by default the
            folder of ``source`` when it names a file, else the current folder.

    Returns:
        The spec, whose rules ``shield.compile`` has accepted.

    Raises:
        SpecSyntaxError: the text is not TOML, or a key is unknown, missing, of the wrong type or
            out of range.
        UnsupportedSpecError: a rule asks for something the compiler refuses to approximate.
        SpecError: a word file, package resource or classifier cannot be found, or the refusal
            text violates the spec.
        CompileError: a rule's automaton would exceed a compile limit.

    Example:
        >>> spec = parse('''
        ... [spec]
        ... name = "demo"
        ...
        ... [[rule]]
        ... id = "no-foo"
        ... forbid.literal = "foo"
        ... ''')
        >>> spec.name, spec.rule_ids
        ('demo', ('no-foo',))
    """
    document = _read_toml(text, source)
    lines = LineIndex(text)
    if base_dir is None:
        base_dir = Path(source).parent if not source.startswith("<") else Path.cwd()
    spec = _build(document, Where(source, lines), Path(base_dir))
    compile_checked(spec, lines)
    return spec


def load(path: str | Path) -> Spec:
    """Read, validate and compile-check the spec file at ``path``.

    Args:
        path: a TOML spec file; relative word-file paths in it are resolved against its folder.

    Returns:
        The spec, with ``source`` set to ``str(path)``.

    Raises:
        SpecError: the file cannot be read or is not UTF-8, and everything :func:`parse` raises.

    Example:
        >>> load("specs/library/secrets.toml").name  # doctest: +SKIP
        'secrets'
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SpecError(
            f"spec file not found; check the path ({Path(path).absolute()})", file=source
        ) from None
    except OSError as error:
        raise SpecError(
            f"cannot read the spec file: {error.strerror or error}", file=source
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SpecSyntaxError(
            f"the spec is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8",
            file=source,
            line=line,
        ) from None
    return parse(text, source=source, base_dir=Path(path).parent)


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        reason = message[: position.start()] if position else message
        line, where = None, ""
        if position is not None and position.group(1) is not None:
            line, where = int(position.group(1)), f" at column {position.group(2)}"
        elif position is not None:
            line, where = text.count("\n") + 1, " at the end of the text"
        raise SpecSyntaxError(
            f"invalid TOML: {reason}{where}; check quotes, brackets and '=' here"
            " (write regexes as 'literal strings' so backslashes stay as they are)",
            file=source,
            line=line,
        ) from None
    except RecursionError:
        raise SpecSyntaxError(
            "invalid TOML: arrays or tables are nested too deeply to read", file=source
        ) from None


def _build(document: dict[str, Any], where: Where, base_dir: Path) -> Spec:
    where.table(document, _TOP_KEYS)
    name, description = _spec_section(document, where.child("spec"))
    policy = _policy_section(document.get("backtrack", {}), where.child("backtrack"))
    if "rule" not in document:
        where.fail(
            'the spec has no rules; add at least one [[rule]] table (e.g. id = "x" and'
            ' forbid.literal = "...")'
        )
    rules_at = where.child("rule")
    entries = document["rule"]
    if not isinstance(entries, list) or not entries:
        rules_at.fail(
            f"rule must be an array of tables written as [[rule]] sections; got {describe(entries)}"
        )
    rules: list[Rule] = []
    lines: list[int | None] = []

    def lowered() -> Iterator[Rule]:
        # Lowered one at a time as the check reads them, so a repeated id is reported before any
        # error in the rules after it, in file order.
        for index, entry in enumerate(entries):
            rule_at = rules_at.child(index)
            rules.append(lower_rule(entry, rule_at, base_dir))
            lines.append(rule_at.line)
            yield rules[-1]

    repeat = repeated_rule_id(lowered())
    if repeat is not None:
        first, index = repeat
        rule_id = rules[index].id
        earlier = f"the rule at line {lines[first]}" if lines[first] else "an earlier rule"
        rules_at.child(index, "id").in_rule(rule_id).fail(
            f"rule id {rule_id!r} is already used by {earlier}; rule ids must be unique, rename one"
        )
    return Spec(
        name=name,
        description=description,
        rules=tuple(rules),
        policy=policy,
        source=where.source,
        rule_lines={
            rule.id: line for rule, line in zip(rules, lines, strict=True) if line is not None
        },
    )


def _spec_section(document: dict[str, Any], where: Where) -> tuple[str, str]:
    if "spec" not in document:
        where.fail('the spec has no [spec] table; start the file with [spec] and name = "..."')
    table = where.table(document["spec"], _SPEC_KEYS)
    if "name" not in table:
        where.fail('[spec] needs a name, e.g. name = "my-spec"')
    name = where.child("name").string(table["name"])
    if "\n" in name:
        where.child("name").fail(f"name must be one line; got {name!r}")
    description = where.child("description").string(table.get("description", ""), allow_empty=True)
    return name, description


def _policy_section(value: Any, where: Where) -> BacktrackPolicy:
    table = where.table(value, _POLICY_KEYS)
    values: dict[str, Any] = {}
    for key, item in table.items():
        at = where.child(key)
        if key == "checkpoint":
            values[key] = at.choice(item, CHECKPOINTS)
        elif key == "on_exhausted":
            values[key] = at.choice(item, ("stop", "refuse"))
        elif key == "refusal":
            values[key] = at.string(item, allow_empty=True)
        else:
            values[key] = at.integer(item, minimum=1, fix=f" (the default is {_default(key)})")
    if values.get("on_exhausted") == "refuse" and not values.get("refusal", _default("refusal")):
        where.child("refusal").fail('on_exhausted = "refuse" needs a non-empty refusal text')
    try:
        return BacktrackPolicy(**values)
    except SpecError as error:  # the policy's own invariants; located at [backtrack]
        where.fail(error.message, type(error))


def _default(key: str) -> Any:
    return getattr(BacktrackPolicy(), key)
