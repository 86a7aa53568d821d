"""The frozen value a spec file becomes: a name, the rules in shield's vocabulary, the policy.

A :class:`Spec` is what ``shield.compile`` takes. It also remembers where it came from (the source
file name and the line of each rule) so that errors found later, when compiling or analysing, can
still point at the offending rule in the user's file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shield.errors import SpecSyntaxError
from shield.policy import BacktrackPolicy
from shield.rules import Rule, check_unique_ids

__all__ = ["Spec"]


def _frozen_lines(lines: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(lines))


@dataclass(frozen=True, kw_only=True)
class Spec:
    """A validated safety spec.

    Two specs are equal when they mean the same thing: ``name``, ``description``, ``rules`` and
    ``policy`` are compared; where they came from (``source``, ``rule_lines``) is not.

    Attributes:
        name: the spec's name (``[spec] name``).
        rules: the rules, in file order, as :mod:`shield.rules` values; ids are unique.
        policy: the backtracking bounds (``[backtrack]``).
        description: free text (``[spec] description``); empty when absent.
        source: the file the spec was read from, as shown in error messages.
        rule_lines: rule id → 1-based line of the rule's ``[[rule]]`` header in ``source``
            (read-only).

    Raises:
        SpecSyntaxError: two rules share an id, or ``rule_lines`` names a rule that does not
            exist (the loader never builds such a spec; this guards hand-built ones).

    Example:
        >>> from shield.rules import LiteralRule
        >>> spec = Spec(name="demo", rules=(LiteralRule(id="no-foo", literal="foo"),))
        >>> spec.rule("no-foo").literal, spec.policy.checkpoint
        ('foo', 'word')
    """

    name: str
    rules: tuple[Rule, ...]
    policy: BacktrackPolicy = field(default_factory=BacktrackPolicy)
    description: str = ""
    source: str = field(default="<string>", compare=False)
    rule_lines: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "rule_lines", _frozen_lines(self.rule_lines))
        check_unique_ids(self.rules)
        unknown = sorted(set(self.rule_lines) - set(self.rule_ids))
        if unknown:
            raise SpecSyntaxError(
                f"rule_lines names rules that do not exist: {', '.join(unknown)}; give lines"
                f" only for the spec's rules ({', '.join(self.rule_ids)})"
            )

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The rule ids, in file order."""
        return tuple(rule.id for rule in self.rules)

    def rule(self, rule_id: str) -> Rule:
        """The rule with id ``rule_id``.

        Raises:
            KeyError: no rule has that id.
        """
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(
            f"no rule {rule_id!r} in spec {self.name!r}; rules: {', '.join(self.rule_ids)}"
        )

    def line_of(self, rule_id: str | None) -> int | None:
        """The line of rule ``rule_id`` in ``source``, or None when unknown."""
        if rule_id is None:
            return None
        return self.rule_lines.get(rule_id)
