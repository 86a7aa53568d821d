"""Compiling a spec once at load time, and locating the errors the compiler raises.

``shield.compile`` knows rules by id, not by line. The loader compiles every spec it builds (so
that an unsupported regex is reported when the spec is loaded) and re-raises the compiler's errors
with the spec file and the line of the offending rule, e.g.
``secrets.toml:14: rule api-key: unsupported regex construct: look-ahead (?=...)``.
The shields compiled last are kept (a few, by spec value) so that callers do not compile twice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import shield
from shield.errors import CompileError, ShieldError, SpecError
from shield.rules import AfterRule, ClassifierRule, MaxLengthRule, Rule
from specs.lines import KeyPath, LineIndex
from specs.spec import Spec

__all__ = ["compile_checked", "locate", "one_line", "shield_for"]

#: The most recently compiled shields (or compile failures), by spec value; equal specs compile
#: to equal shields.
_COMPILED: OrderedDict[Spec, Any] = OrderedDict()
_CACHE_SIZE = 4


@dataclass(frozen=True)
class _Failed:
    """A compile that raised ``error``."""

    error: Exception


def shield_for(spec: Spec) -> Any:
    """The compiled shield of ``spec`` (the last few compiled shields are cached by spec value).

    Args:
        spec: a spec, usually from :func:`specs.load` or :func:`specs.parse`.

    Returns:
        What ``shield.compile(spec)`` returns.

    Raises:
        SpecError: the compiler rejected a rule (located by file and line from ``spec``).
        CompileError: a compile limit was exceeded.

    Example:
        >>> import specs
        >>> shield = specs.shield_for(specs.load_library("secrets"))  # doctest: +SKIP
        >>> [v.rule for v in shield.scan("key AKIAIOSFODNN7EXAMPLE")]  # doctest: +SKIP
        ['aws-access-key']
    """
    if spec not in _COMPILED:
        try:
            _COMPILED[spec] = shield.compile(spec)
        except Exception as error:  # compiling is deterministic: remember the failure too
            _COMPILED[spec] = _Failed(error)
        while len(_COMPILED) > _CACHE_SIZE:
            _COMPILED.popitem(last=False)
    _COMPILED.move_to_end(spec)
    compiled = _COMPILED[spec]
    if isinstance(compiled, _Failed):
        raise locate(compiled.error, spec) from compiled.error
    return compiled


def compile_checked(spec: Spec, lines: LineIndex) -> None:
    """Compile ``spec`` once, locating any error with ``lines``."""
    try:
        shield_for(spec)
    except SpecError as error:
        line = _line_in_source(error, spec, lines)
        raise _relocated(error, spec.source, line) from error.__cause__


def locate(error: BaseException, spec: Spec) -> ShieldError:
    """``error`` (raised while compiling or analysing ``spec``) located in ``spec``'s source.

    Args:
        error: any exception.
        spec: the spec being compiled, whose ``rule_lines`` give the line of a rule.

    Returns:
        A :class:`SpecError` (of the same class when ``error`` is one) with ``file``, ``line`` and
        ``rule_id`` set; for a :class:`CompileError`, one whose message starts with
        ``FILE:LINE: rule ID:``; for anything that is not a shield error (a bug in the compiler),
        a :class:`CompileError` that says so and names the original.
    """
    rule_id = getattr(error, "rule_id", None)
    rule_id = rule_id if isinstance(rule_id, str) else _rule_prefix(str(error), spec)
    line = spec.line_of(rule_id)
    if isinstance(error, SpecError):
        return _relocated(error, error.file or spec.source, error.line or line)
    if isinstance(error, ShieldError) and not isinstance(error, CompileError):
        return SpecError(one_line(str(error)), file=spec.source, line=line, rule_id=rule_id)
    where = spec.source if line is None else f"{spec.source}:{line}"
    message = one_line(str(error))
    if rule_id is not None:
        where = f"{where}: rule {rule_id}"
        message = message.removeprefix(f"rule {rule_id}: ")
    if isinstance(error, CompileError):
        return CompileError(f"{where}: {message}")
    return CompileError(
        f"{where}: shield.compile failed unexpectedly with {type(error).__name__}: {message}"
        " (this is a bug in shield; please report it with the spec)"
    )


def _rule_prefix(message: str, spec: Spec) -> str | None:
    """The rule id of a message that starts ``rule ID:`` (as compile errors do), if it is one."""
    head, sep, _ = message.partition(": ")
    rule_id = head.removeprefix("rule ")
    return rule_id if sep and head.startswith("rule ") and rule_id in spec.rule_ids else None


def _line_in_source(error: SpecError, spec: Spec, lines: LineIndex) -> int | None:
    """The most precise line for a compiler error: the refusal text, or the rule's pattern."""
    if "refusal" in error.message:
        line = lines.line_of(("backtrack", "refusal"))
        if line is not None:
            return line
    if error.rule_id is not None and error.rule_id in spec.rule_ids:
        return lines.line_of(_key_path(spec, spec.rule(error.rule_id)))
    return error.line


def _relocated(error: SpecError, source: str, line: int | None) -> SpecError:
    cls = type(error) if type(error).__init__ is SpecError.__init__ else SpecError
    return cls(one_line(error.message), file=source, line=line, rule_id=error.rule_id)


def one_line(message: str) -> str:
    """A compiler message on one line: indented detail lines (a pattern echo with a caret under
    it) are dropped, the other lines joined with ``"; "``; the original stays chained as the cause.

    Example:
        >>> one_line("bad regex at position 2\n  a(b\n    ^\nclose the group")
        'bad regex at position 2; close the group'
    """
    lines = [
        line.strip() for line in message.splitlines() if line.strip() and not line[:1].isspace()
    ]
    return "; ".join(lines) if lines else message.strip()


def _key_path(spec: Spec, rule: Rule) -> KeyPath:
    """The key path of the part of ``rule`` most likely at fault for a compile error."""
    index = spec.rule_ids.index(rule.id)
    if isinstance(rule, ClassifierRule):
        return ("rule", index, "classifier")
    if isinstance(rule, MaxLengthRule):
        return ("rule", index, "max_length")
    if isinstance(rule, AfterRule) and _trigger_fails(rule):
        return ("rule", index, "after")
    return ("rule", index, "forbid")


def _trigger_fails(rule: AfterRule) -> bool:
    """Whether the trigger of ``rule`` alone fails to compile (so the error is the trigger's)."""
    try:
        shield.compile(Spec(name="trigger", rules=(rule.trigger,)))
    except Exception:
        return True
    return False
