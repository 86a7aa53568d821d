"""``shield.compile(spec)``: build a :class:`~shield.monitor.Shield` from any spec-like object."""

from __future__ import annotations

from typing import Any

from shield.automata.compiler import CompiledRule, compile_rule, validate_classifier
from shield.automata.limits import DEFAULT_LIMITS, CompileLimits
from shield.errors import SpecError, SpecSyntaxError
from shield.monitor import Shield
from shield.policy import BacktrackPolicy
from shield.rules import ClassifierRule

__all__ = ["compile_spec"]


def compile_spec(spec: Any, *, limits: CompileLimits = DEFAULT_LIMITS) -> Shield:
    """Compile a spec into a shield.

    Args:
        spec: any object with ``name: str``, ``rules: tuple[Rule, ...]`` and
            ``policy: BacktrackPolicy`` (duck-typed; ``specs.Spec`` is one).
        limits: the compile limits.

    Returns:
        The shield.

    Raises:
        SpecSyntaxError: the spec lacks a field, rule ids repeat, or a rule is malformed.
        UnsupportedSpecError: a rule asks for an unsupported construct.
        CompileError: a limit is exceeded.
        SpecError: the policy's refusal text violates a rule (the error names the rule).
    """
    for name in ("name", "rules", "policy"):
        if not hasattr(spec, name):
            raise SpecSyntaxError(
                f"a spec needs a {name!r} attribute; got {type(spec).__name__} without it"
            )
    if not isinstance(spec.policy, BacktrackPolicy):
        raise SpecSyntaxError(
            f"spec.policy must be a BacktrackPolicy; got {type(spec.policy).__name__}"
        )
    seen: set[str] = set()
    compiled: list[CompiledRule] = []
    for rule in spec.rules:
        rule_id = getattr(rule, "id", None)
        if not isinstance(rule_id, str) or not rule_id:
            raise SpecSyntaxError(f"every rule needs a non-empty string id; got {rule_id!r}")
        if rule_id in seen:
            raise SpecSyntaxError("rule ids must be unique; this id is used twice", rule_id=rule_id)
        seen.add(rule_id)
        if isinstance(rule, ClassifierRule):
            validate_classifier(rule)
        else:
            compiled.append(compile_rule(rule, limits))
    shield = Shield(str(spec.name), tuple(spec.rules), tuple(compiled), spec.policy)
    violation = shield.first_violation(spec.policy.refusal.encode("utf-8"), final=True)
    if violation is not None:
        raise SpecError(
            f"the refusal text {spec.policy.refusal!r} violates this rule at "
            f"{violation.match!r}; change [backtrack].refusal or the rule",
            rule_id=violation.rule,
        )
    return shield
