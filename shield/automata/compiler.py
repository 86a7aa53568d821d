"""Compiling rules: each automaton rule of :mod:`shield.rules` → a :class:`CompiledRule`.

Patterns (words, regex, literal) lower to the pattern AST, then a Thompson NFA, a matcher DFA
(subset construction) and, through the crawl primitive, the rule's automata. Classifier rules are
validated and carried through untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shield.automata.determinize import Matcher, determinize
from shield.automata.dfa import DFA
from shield.automata.limits import CompileLimits
from shield.automata.nfa import build_nfa
from shield.automata.regex import parse_regex
from shield.automata.reverse import ReverseScanner
from shield.automata.syntax import NOT_AFTER_WORD_MASK, NOT_BEFORE_WORD_MASK, Assert, Concat, Node
from shield.automata.temporal import absorb, after, at_most, max_length
from shield.automata.wordlist import check_words, words_matcher, words_pattern
from shield.errors import CompileError, SpecError, SpecSyntaxError, UnsupportedSpecError
from shield.rules import (
    NORMALIZATIONS,
    AfterRule,
    AtMostRule,
    AutomatonRule,
    ClassifierRule,
    LiteralRule,
    MaxLengthRule,
    Pattern,
    RegexRule,
    WordsRule,
)

__all__ = ["CompiledRule", "compile_rule", "validate_classifier"]

_SCORER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class _LazyScanner:
    """A reverse scanner whose NFA is built on the first span asked (word lists compile faster)."""

    def __init__(self, node: Node, limits: CompileLimits) -> None:
        self._node = node
        self._limits = limits
        self._scanner: ReverseScanner | None = None

    def match_span(self, text: bytes, index: int, lower: int = 0) -> tuple[int, int] | None:
        """See :meth:`shield.automata.reverse.ReverseScanner.match_span`."""
        if self._scanner is None:
            self._scanner = ReverseScanner(build_nfa(self._node, self._limits))
        return self._scanner.match_span(text, index, lower)


@dataclass(frozen=True, eq=False)
class CompiledRule:
    """One automaton rule, compiled.

    Attributes:
        rule: the source rule.
        kind: ``words``, ``regex``, ``literal``, ``after``, ``at_most`` or ``max_length``.
        dfa: the forbid automaton; accepting states are the (absorbing) violation states.
        matcher: the scan automaton; accepting right after each reportable detection.
        scanner: reverse scanner of the pattern whose match is the violation (None for
            ``max_length``, whose violation starts at byte ``max_bytes``).
    """

    rule: AutomatonRule
    kind: str
    dfa: DFA
    matcher: DFA
    scanner: ReverseScanner | _LazyScanner | None

    @property
    def rule_id(self) -> str:
        """The rule's id."""
        return self.rule.id

    def span(self, text: bytes, index: int, lower: int = 0) -> tuple[int, int]:
        """Start and end byte offsets of the violation detected while reading symbol ``index``.

        Args:
            text: the bytes read so far (including byte ``index`` unless it is END).
            index: the detecting symbol's offset (``len(text)`` for END).
            lower: the earliest allowed start (after a previous reported match).

        Returns:
            ``(start, end)``; see :mod:`shield.automata.reverse` for the definition. Falls back to
            ``(lower, index)`` (fail closed: the longest rollback) if no match is found.
        """
        if self.scanner is None:
            assert isinstance(self.rule, MaxLengthRule)
            return self.rule.max_bytes, self.rule.max_bytes + 1
        span = self.scanner.match_span(text, index, lower)
        return span if span is not None else (lower, index)


def _pattern_ast(pattern: Pattern, rule_id: str, limits: CompileLimits) -> Node:
    match = pattern.match
    unknown = set(match.normalize) - NORMALIZATIONS
    if unknown:
        raise SpecSyntaxError(
            f"unknown normalisation(s) {sorted(unknown)}; expected a subset of {sorted(NORMALIZATIONS)}",
            rule_id=rule_id,
        )
    if isinstance(pattern, RegexRule):
        if match.normalize:
            raise UnsupportedSpecError(
                "normalize applies to words and literals, not to regex patterns; "
                "remove it or use a word list",
                rule_id=rule_id,
            )
        try:
            node = parse_regex(pattern.pattern, case_insensitive=match.case_insensitive)
        except SpecError as error:
            raise type(error)(error.message, rule_id=rule_id) from None
        if match.whole_word:
            node = Concat((Assert(NOT_AFTER_WORD_MASK), node, Assert(NOT_BEFORE_WORD_MASK)))
        return node
    words = (pattern.literal,) if isinstance(pattern, LiteralRule) else pattern.words
    try:
        checked = check_words(words, limits, what=f"rule {rule_id}")
    except SpecSyntaxError as error:
        raise SpecSyntaxError(error.message, rule_id=rule_id) from None
    return words_pattern(checked, match)


def _pattern(
    pattern: Pattern, rule_id: str, limits: CompileLimits
) -> tuple[Matcher, ReverseScanner | _LazyScanner]:
    node = _pattern_ast(pattern, rule_id, limits)
    what = f"rule {rule_id}"
    if isinstance(pattern, RegexRule):
        nfa = build_nfa(node, limits)
        return determinize(nfa, limits, what=what), ReverseScanner(nfa)
    words = (pattern.literal,) if isinstance(pattern, LiteralRule) else pattern.words
    matcher = words_matcher(tuple(dict.fromkeys(words)), pattern.match, limits, what=what)
    return matcher, _LazyScanner(node, limits)


def _kind(pattern: Pattern) -> str:
    return {WordsRule: "words", RegexRule: "regex", LiteralRule: "literal"}[type(pattern)]


def compile_rule(rule: AutomatonRule, limits: CompileLimits) -> CompiledRule:
    """Compile one automaton rule.

    Args:
        rule: the rule.
        limits: the compile limits.

    Returns:
        The compiled rule.

    Raises:
        SpecSyntaxError: the rule is malformed (bad regex, empty word list, bad count).
        UnsupportedSpecError: the rule asks for an unsupported construct.
        CompileError: a limit is exceeded.
    """
    what = f"rule {rule.id}"
    try:
        if isinstance(rule, WordsRule | RegexRule | LiteralRule):
            matcher, scanner = _pattern(rule, rule.id, limits)
            return CompiledRule(
                rule, _kind(rule), absorb(matcher.dfa, limits, what=what), matcher.dfa, scanner
            )
        if isinstance(rule, AfterRule):
            trigger, _ = _pattern(rule.trigger, rule.id, limits)
            forbidden, scanner = _pattern(rule.forbid, rule.id, limits)
            joint = after(trigger, forbidden, limits, what=what)
            return CompiledRule(rule, "after", absorb(joint, limits, what=what), joint, scanner)
        if isinstance(rule, AtMostRule):
            if isinstance(rule.count, bool) or not isinstance(rule.count, int) or rule.count < 0:
                raise SpecSyntaxError(
                    f"count must be a non-negative integer; got {rule.count!r}", rule_id=rule.id
                )
            matcher, scanner = _pattern(rule.pattern, rule.id, limits)
            counted = at_most(matcher, rule.count, limits, what=what)
            return CompiledRule(
                rule, "at_most", absorb(counted, limits, what=what), counted, scanner
            )
        if isinstance(rule, MaxLengthRule):
            n = rule.max_bytes
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise SpecSyntaxError(
                    f"max_bytes must be a non-negative integer; got {n!r}", rule_id=rule.id
                )
            dfa = max_length(n, limits, what=what)
            return CompiledRule(rule, "max_length", dfa, dfa, None)
    except CompileError as error:
        message = str(error)
        raise CompileError(message if message.startswith(what) else f"{what}: {message}") from None
    raise SpecSyntaxError(
        f"unknown rule kind {type(rule).__name__}; expected an automaton rule",
        rule_id=getattr(rule, "id", None),
    )


def validate_classifier(rule: ClassifierRule) -> ClassifierRule:
    """Check a classifier rule's fields.

    Args:
        rule: the rule.

    Returns:
        The same rule.

    Raises:
        SpecSyntaxError: threshold outside (0, 1], unknown scope, missing or non-positive
            ``window_tokens`` for the window scope, or a malformed scorer name.
    """
    threshold = rule.threshold
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 < threshold <= 1
    ):
        raise SpecSyntaxError(
            f"threshold must be a number in (0, 1]; got {threshold!r}", rule_id=rule.id
        )
    if rule.scope not in ("sentence", "window", "response"):
        raise SpecSyntaxError(
            f"scope must be sentence, window or response; got {rule.scope!r}", rule_id=rule.id
        )
    if rule.scope == "window":
        w = rule.window_tokens
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise SpecSyntaxError(
                f"scope 'window' needs window_tokens, a positive integer; got {w!r}",
                rule_id=rule.id,
            )
    if rule.scorer != "profanity-check" and not _SCORER.match(rule.scorer):
        raise SpecSyntaxError(
            f"scorer must be 'profanity-check' or 'module:function'; got {rule.scorer!r}",
            rule_id=rule.id,
        )
    return rule
