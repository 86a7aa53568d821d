"""``shield.compile(spec)``: build a :class:`~shield.monitor.Shield` from any spec-like object.

The automata of a spec's rules are read from the compiled-shield cache when a valid entry exists
(see :mod:`shield.compiled_cache`), and compiled and stored otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from shield.automata.compiler import CompiledRule, compile_rule
from shield.automata.limits import DEFAULT_LIMITS, CompileLimits
from shield.compiled_cache import CompiledCache, default_cache
from shield.errors import SpecError, SpecSyntaxError
from shield.monitor import Shield
from shield.policy import BacktrackPolicy
from shield.rules import AutomatonRule, ClassifierRule, Rule, check_unique_ids

__all__ = ["compile_spec"]


def compile_spec(
    spec: Any,
    *,
    limits: CompileLimits = DEFAULT_LIMITS,
    cache: CompiledCache | Literal["default"] | None = "default",
) -> Shield:
    """Compile a spec into a shield.

    Args:
        spec: any object with ``name: str``, ``rules: tuple[Rule, ...]`` and
            ``policy: BacktrackPolicy`` (duck-typed; ``specs.Spec`` is one).
        limits: the compile limits.
        cache: where compiled automata are read from and stored: ``"default"`` is
            :func:`shield.compiled_cache.default_cache` (``cache_root()/compiled`` inside
            ``shield.store.caching(True)``, as on the command line; no cache elsewhere or when
            ``$SHIELD_NO_CACHE`` is set); None never reads or writes a cache.

    Returns:
        The shield.

    Raises:
        SpecSyntaxError: the spec lacks a field, a rule is not a :mod:`shield.rules` value, rule
            ids repeat, or a regex is malformed (rules check their other values when they are
            constructed).
        UnsupportedSpecError: a regex uses an unsupported construct.
        CompileError: a limit is exceeded.
        SpecError: the policy's refusal text violates a rule (the error names the rule).

    Example:
        >>> import specs
        >>> guard = compile_spec(specs.load_library("secrets"))  # doctest: +SKIP
        >>> [v.rule for v in guard.scan("key AKIAIOSFODNN7EXAMPLE")]  # doctest: +SKIP
        ['aws-access-key']
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
    rules = tuple(spec.rules)
    for rule in rules:
        # A rule checked its own values when it was constructed; anything else is not a rule.
        if not isinstance(rule, Rule):
            rule_id = getattr(rule, "id", None)
            raise SpecSyntaxError(
                f"unknown rule kind {type(rule).__name__}; expected a rule of shield.rules"
                " (WordsRule, RegexRule, LiteralRule, AfterRule, AtMostRule, MaxLengthRule or"
                " ClassifierRule)",
                rule_id=rule_id if isinstance(rule_id, str) else None,
            )
    check_unique_ids(rules)
    automaton = tuple(rule for rule in rules if not isinstance(rule, ClassifierRule))
    compiled = _compiled_rules(automaton, limits, default_cache() if cache == "default" else cache)
    shield = Shield(str(spec.name), rules, compiled, spec.policy)
    violation = shield.first_violation(spec.policy.refusal.encode("utf-8"), final=True)
    if violation is not None:
        raise SpecError(
            f"the refusal text {spec.policy.refusal!r} violates this rule at "
            f"{violation.match!r}; change [backtrack].refusal or the rule",
            rule_id=violation.rule,
        )
    return shield


def _compiled_rules(
    rules: tuple[AutomatonRule, ...], limits: CompileLimits, cache: CompiledCache | None
) -> tuple[CompiledRule, ...]:
    """The compiled rules: from ``cache`` when it holds a valid entry, else compiled (and stored)."""
    if cache is not None:
        lookup = cache.load(rules, limits)
        if lookup.compiled is not None:
            return lookup.compiled
    compiled = tuple(compile_rule(rule, limits) for rule in rules)
    if cache is not None:
        cache.store(rules, limits, compiled)
    return compiled
