"""Located validation of parsed TOML values: the helpers every section of the loader uses.

A :class:`Where` names a place in the document (a key path, the rule it belongs to) and raises
errors that carry the spec file, the line of that place and the rule id. Its helpers check one
value each and say, on failure, what was expected, what was received and how to fix it.
"""

from __future__ import annotations

import datetime
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from shield.errors import SpecError, SpecSyntaxError
from specs.lines import KeyPath, LineIndex

__all__ = ["Where", "describe", "suggest"]


def describe(value: object) -> str:
    """A short description of a TOML value's type and value, for "got ..." in messages.

    Example:
        >>> describe(3), describe("x"), describe([1])
        ('an integer (3)', "a string ('x')", 'an array ([1])')
    """
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a float"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "an array"
    elif isinstance(value, dict):
        kind = "a table"
    elif isinstance(value, datetime.datetime):
        kind = "a date-time"
    elif isinstance(value, datetime.date):
        kind = "a date"
    elif isinstance(value, datetime.time):
        kind = "a time"
    else:
        kind = type(value).__name__
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{kind} ({shown})"


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or an empty string when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Where:
    """A place in a spec document, able to raise located errors about it.

    Attributes:
        source: the spec file name used in messages.
        lines: the line index of the document.
        path: the key path of this place.
        rule_id: the id of the rule this place belongs to, when known.
    """

    source: str
    lines: LineIndex
    path: KeyPath = ()
    rule_id: str | None = None

    def child(self, *keys: str | int) -> Where:
        """The place of a key (or array index) below this one."""
        return Where(self.source, self.lines, self.path + keys, self.rule_id)

    def in_rule(self, rule_id: str | None) -> Where:
        """This place, now known to belong to rule ``rule_id``."""
        return Where(self.source, self.lines, self.path, rule_id)

    @property
    def name(self) -> str:
        """The dotted TOML name of this place, e.g. ``forbid.words`` inside a rule."""
        keys = [str(key) for key in self.path if isinstance(key, str)]
        if keys[:1] == ["rule"]:
            keys = keys[1:]
        return ".".join(keys) if keys else "the spec"

    @property
    def line(self) -> int | None:
        """The line where this place (or the closest enclosing one) is defined."""
        return self.lines.line_of(self.path)

    def fail(self, message: str, cls: type[SpecError] = SpecSyntaxError) -> NoReturn:
        """Raise ``cls(message)`` located at this place."""
        raise cls(message, file=self.source, line=self.line, rule_id=self.rule_id)

    def table(self, value: Any, allowed: Iterable[str], *, hint: str = "") -> dict[str, Any]:
        """Check that ``value`` is a table whose keys are all in ``allowed``; return it."""
        if not isinstance(value, dict):
            self.fail(f"{self.name} must be a table{hint}; got {describe(value)}")
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                self.child(key).fail(
                    f"unknown key {key!r} in {self.name}{suggest(key, allowed)}"
                    f" (valid keys: {', '.join(allowed)})"
                )
        return value

    def string(self, value: Any, *, allow_empty: bool = False) -> str:
        """Check that ``value`` is a string (non-blank unless ``allow_empty``); return it."""
        if not isinstance(value, str):
            self.fail(f"{self.name} must be a string; got {describe(value)}; quote it")
        if not allow_empty and not value.strip():
            self.fail(f"{self.name} must not be empty; got {value!r}")
        return value

    def boolean(self, value: Any) -> bool:
        """Check that ``value`` is a boolean; return it."""
        if not isinstance(value, bool):
            self.fail(f"{self.name} must be true or false; got {describe(value)}")
        return value

    def integer(self, value: Any, *, minimum: int, fix: str = "") -> int:
        """Check that ``value`` is an integer of at least ``minimum``; return it."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(
                f"{self.name} must be an integer >= {minimum}; got {describe(value)}"
                f"; write a whole number without quotes{fix}"
            )
        if value < minimum:
            self.fail(f"{self.name} must be an integer >= {minimum}; got {value}{fix}")
        return value

    def probability(self, value: Any) -> float:
        """Check that ``value`` is a number in (0, 1]; return it as a float."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{self.name} must be a number in (0, 1]; got {describe(value)}")
        number = float(value)
        if not (math.isfinite(number) and 0.0 < number <= 1.0):
            self.fail(
                f"{self.name} must be a number in (0, 1] (a score at or above it is a violation);"
                f" got {value!r}; use e.g. 0.8"
            )
        return number

    def choice(self, value: Any, choices: Iterable[str]) -> str:
        """Check that ``value`` is one of ``choices``; return it."""
        choices = tuple(choices)
        options = ", ".join(repr(choice) for choice in choices)
        if not isinstance(value, str):
            self.fail(f"{self.name} must be one of {options}; got {describe(value)}")
        if value not in choices:
            self.fail(
                f"{self.name} must be one of {options}; got {value!r}{suggest(value, choices)}"
            )
        return value

    def array(self, value: Any, *, what: str) -> list[Any]:
        """Check that ``value`` is a non-empty array; return it."""
        if not isinstance(value, list):
            self.fail(f"{self.name} must be an array of {what}; got {describe(value)}")
        if not value:
            self.fail(f"{self.name} must not be an empty array; list at least one of {what}")
        return value
