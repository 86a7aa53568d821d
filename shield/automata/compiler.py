"""Compiling rules: each automaton rule of :mod:`shield.rules` → a :class:`CompiledRule`.

Patterns (words, regex, literal) lower to the pattern AST, then a Thompson NFA, a matcher DFA
(subset construction) and, through the crawl primitive, the rule's automata. Rules checked their own
values when they were constructed (see :mod:`shield.rules`); what is checked here depends on the
compiler: the regex subset and the compile limits. Classifier rules are not compiled.

**Staged rules.** A word or literal rule whose normalisations include one of
:data:`STAGED_NORMALIZATIONS` (the Unicode ones, whose stand-ins are multi-byte characters) is not
multiplied into one byte DFA: it compiles to a :class:`~shield.automata.composed.Composed`, the
normaliser composed at run time with the letter automaton (:func:`is_staged` is the one
definition). Its verdict on a text is the expanded automaton's verdict on the text without its
invisible characters (zero-width characters with ``zero_width``, combining marks with
``diacritics``: :func:`~shield.automata.wordlist.invisible_points`). ``after`` and ``at_most``
rules keep the product path (their constructions combine matcher DFAs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from shield.automata.composed import Composed
from shield.automata.determinize import Matcher, determinize
from shield.automata.dfa import DFA
from shield.automata.exemptions import repeat_exemptions
from shield.automata.fold import fold_classes, fold_node
from shield.automata.limits import CompileLimits
from shield.automata.nfa import NFA, build_nfa
from shield.automata.normaliser import Visible, visible_bytes
from shield.automata.normalize import word_code_points
from shield.automata.regex import parse_regex
from shield.automata.reverse import ReverseScanner
from shield.automata.syntax import NOT_AFTER_WORD_MASK, NOT_BEFORE_WORD_MASK, Assert, Concat, Node
from shield.automata.temporal import absorb, after, at_most, max_length
from shield.automata.wordlist import (
    check_words,
    invisible_points,
    words_composed,
    words_matcher,
    words_pattern,
)
from shield.errors import CompileError, SpecError, SpecSyntaxError
from shield.rules import (
    AfterRule,
    AtMostRule,
    AutomatonRule,
    LiteralRule,
    MaxLengthRule,
    Pattern,
    RegexRule,
    WordsRule,
)

__all__ = [
    "STAGED_NORMALIZATIONS",
    "CompiledRule",
    "compile_rule",
    "is_staged",
    "pattern_matcher",
    "rule_scanner",
]

#: Normalisations whose stand-ins are multi-byte characters: a byte DFA multiplies each letter
#: state by every partly read stand-in, so a word or literal rule with any of them is compiled
#: staged (normaliser composed with the letter automaton at run time) instead.
STAGED_NORMALIZATIONS: frozenset[str] = frozenset(
    {"nfkc", "confusables", "zero_width", "diacritics"}
)


def is_staged(rule: AutomatonRule) -> bool:
    """Whether ``rule`` compiles to a composed automaton (see the module docstring).

    Args:
        rule: an automaton rule.

    Returns:
        True for a word or literal forbid rule with a normalisation of
        :data:`STAGED_NORMALIZATIONS`; False for every other rule (``after`` and ``at_most``
        parts included: their constructions need matcher DFAs).
    """
    return isinstance(rule, WordsRule | LiteralRule) and bool(
        rule.match.normalize & STAGED_NORMALIZATIONS
    )


class _LazyScanner:
    """A reverse scanner whose NFA is built on the first span asked (word lists compile faster).

    ``node`` is the pattern, or a function that builds it (:func:`rule_scanner` defers even that).
    """

    def __init__(
        self,
        node: Node | Callable[[], Node],
        limits: CompileLimits,
        word_chars: Callable[[], frozenset[int]] = frozenset,
        *,
        folded: bool = False,
    ) -> None:
        self._node = node
        self._limits = limits
        self._word_chars = word_chars
        self._folded = folded
        self._fold: dict[int, int] | None = None
        self._scanner: ReverseScanner | None = None

    def _built(self) -> ReverseScanner:
        if self._scanner is None:
            node = self._node() if callable(self._node) else self._node
            word_chars = self._word_chars()
            if self._folded:  # search folded texts with the folded pattern (shield.automata.fold)
                self._fold = fold_classes(node, word_chars)
                node = fold_node(node, self._fold)
            nfa = build_nfa(node, self._limits, word_chars=word_chars)
            self._scanner = ReverseScanner(nfa)
        return self._scanner

    @property
    def fold(self) -> dict[int, int] | None:
        """The texts' fold map (code point to representative) when the pattern is folded."""
        self._built()
        return self._fold

    @property
    def nfa(self) -> NFA:
        """The pattern NFA (built on first use)."""
        return self._built().nfa

    def match_span(self, text: bytes, index: int, lower: int = 0) -> tuple[int, int] | None:
        """See :meth:`shield.automata.reverse.ReverseScanner.match_span`."""
        return self._built().match_span(text, index, lower)


@dataclass(frozen=True, eq=False)
class CompiledRule:
    """One automaton rule, compiled.

    Exactly one of two forms: a byte DFA pair (``dfa`` and ``matcher``), or for a staged rule
    (:func:`is_staged`) a composed forbid automaton (``composed``; ``dfa`` and ``matcher`` None).

    Attributes:
        rule: the source rule.
        kind: ``words``, ``regex``, ``literal``, ``after``, ``at_most`` or ``max_length``.
        dfa: the forbid automaton; accepting states are the (absorbing) violation states.
        matcher: the scan automaton; accepting right after each reportable detection.
        scanner: reverse scanner of the pattern whose match is the violation (None for
            ``max_length``, whose violation starts at byte ``max_bytes``).
        composed: the staged rule's forbid automaton (normaliser × letter automaton, absorbing).

    Raises:
        ValueError: neither or both forms are given.
    """

    rule: AutomatonRule
    kind: str
    dfa: DFA | None
    matcher: DFA | None
    scanner: ReverseScanner | _LazyScanner | None
    composed: Composed | None = None

    def __post_init__(self) -> None:
        tables = self.dfa is not None and self.matcher is not None
        bare = self.dfa is None and self.matcher is None
        if not ((tables and self.composed is None) or (bare and self.composed is not None)):
            raise ValueError(
                f"rule {self.rule.id}: a compiled rule holds either a dfa and a matcher, or a"
                " composed automaton; got "
                f"dfa={self.dfa is not None}, matcher={self.matcher is not None}, "
                f"composed={self.composed is not None}"
            )

    @property
    def rule_id(self) -> str:
        """The rule's id."""
        return self.rule.id

    @property
    def n_states(self) -> int:
        """Table rows: the DFA's states, or the composed automaton's letter plus normaliser states."""
        if self.composed is not None:
            return self.composed.n_letters + self.composed.n_norm
        assert self.dfa is not None  # checked at construction
        return self.dfa.n_states

    @property
    def invisible(self) -> frozenset[int]:
        """Code points a staged rule does not read (see :func:`invisible_points`); else empty."""
        if self.composed is None:
            return frozenset()
        return invisible_points(self.rule.match)  # type: ignore[union-attr]

    def span(self, text: bytes, index: int, lower: int = 0) -> tuple[int, int]:
        """Start and end byte offsets of the violation detected while reading symbol ``index``.

        A staged rule searches the text without its invisible characters (what its automaton
        reads) and maps the span back to offsets in ``text``.

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
        if self.composed is None:
            span = self.scanner.match_span(text, index, lower)
            return span if span is not None else (lower, index)
        seen = self.visible(text)
        span = self.scanner.match_span(seen.data, seen.index(index), seen.lower(lower))
        return seen.span(span) if span is not None else (lower, index)

    def visible(self, text: bytes) -> Visible:
        """What the span search reads of ``text``: for a staged rule the text without its
        invisible characters, folded (:mod:`shield.automata.fold`); else the text itself.

        Args:
            text: a text's bytes.

        Returns:
            The searched bytes with their sources.
        """
        fold = self.scanner.fold if isinstance(self.scanner, _LazyScanner) else None
        return visible_bytes(text, self.invisible, fold)


def _pattern_ast(pattern: Pattern, rule_id: str, limits: CompileLimits) -> Node:
    match = pattern.match
    if isinstance(pattern, RegexRule):
        try:
            node = parse_regex(pattern.pattern, case_insensitive=match.case_insensitive)
        except SpecError as error:
            raise type(error)(error.message, rule_id=rule_id) from None
        if match.whole_word:
            node = Concat((Assert(NOT_AFTER_WORD_MASK), node, Assert(NOT_BEFORE_WORD_MASK)))
        return node
    words = (pattern.literal,) if isinstance(pattern, LiteralRule) else pattern.words
    return words_pattern(check_words(words, limits, what=f"rule {rule_id}"), match)


def _pattern(
    pattern: Pattern, rule_id: str, limits: CompileLimits
) -> tuple[Matcher, ReverseScanner | _LazyScanner]:
    node = _pattern_ast(pattern, rule_id, limits)
    what = f"rule {rule_id}"
    if isinstance(pattern, RegexRule):
        nfa = build_nfa(node, limits)
        return determinize(nfa, limits, what=what), ReverseScanner(nfa)
    words = tuple(
        dict.fromkeys((pattern.literal,) if isinstance(pattern, LiteralRule) else pattern.words)
    )
    exempt = sorted(repeat_exemptions(words, pattern.match))
    matcher = words_matcher(words, pattern.match, limits, what=what, exempt=exempt)
    # Word characters too are made when the scanner is built: the set takes tenths of a second,
    # and a shield read from the compiled-shield cache may never need its scanners.
    return matcher, _LazyScanner(node, limits, functools.partial(_word_chars, pattern))


def _staged(rule: WordsRule | LiteralRule, limits: CompileLimits, what: str) -> CompiledRule:
    """A staged rule: the normaliser composed with the letter automaton (see :func:`is_staged`)."""
    words = check_words(
        (rule.literal,) if isinstance(rule, LiteralRule) else rule.words, limits, what=what
    )
    exempt = sorted(repeat_exemptions(words, rule.match))
    composed = words_composed(words, rule.match, limits, what=what, absorb=True, exempt=exempt)
    return CompiledRule(rule, _kind(rule), None, None, rule_scanner(rule, limits), composed)


def pattern_matcher(pattern: Pattern, limits: CompileLimits) -> DFA:
    """The byte-level matcher DFA of a pattern, as ``after`` and ``at_most`` rules build on it.

    Args:
        pattern: a word, regex or literal pattern (staged or not: this is always the product).
        limits: the compile limits.

    Returns:
        The matcher: accepting right after each detection.

    Raises:
        CompileError: a limit is exceeded.
    """
    return _pattern(pattern, pattern.id, limits)[0].dfa


def _word_chars(pattern: Pattern) -> frozenset[int]:
    """The non-ASCII word characters of a word list's whole words (none for regexes)."""
    if isinstance(pattern, RegexRule) or not pattern.match.whole_word:
        return frozenset()
    return word_code_points()


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
        SpecSyntaxError: the regex is malformed, or ``rule`` is not an automaton rule.
        UnsupportedSpecError: the regex uses an unsupported construct.
        CompileError: a limit is exceeded.
    """
    what = f"rule {rule.id}"
    try:
        if is_staged(rule):
            return _staged(rule, limits, what)  # type: ignore[arg-type]
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
            matcher, scanner = _pattern(rule.pattern, rule.id, limits)
            counted = at_most(matcher, rule.count, limits, what=what)
            return CompiledRule(
                rule, "at_most", absorb(counted, limits, what=what), counted, scanner
            )
        if isinstance(rule, MaxLengthRule):
            dfa = max_length(rule.max_bytes, limits, what=what)
            return CompiledRule(rule, "max_length", dfa, dfa, None)
    except CompileError as error:
        message = str(error)
        raise CompileError(message if message.startswith(what) else f"{what}: {message}") from None
    raise SpecSyntaxError(
        f"unknown rule kind {type(rule).__name__}; expected an automaton rule",
        rule_id=getattr(rule, "id", None),
    )


def rule_scanner(
    rule: AutomatonRule, limits: CompileLimits, *, folded: bool | None = None
) -> _LazyScanner | None:
    """The reverse scanner of ``rule``'s violating pattern, without compiling its automata.

    The compiled-shield cache (:mod:`shield.compiled_cache`) stores a rule's automata and rebuilds
    only this; it finds the same spans as the scanner :func:`compile_rule` gives the rule.

    Args:
        rule: a rule that compiled.
        limits: the compile limits.
        folded: search folded texts with the folded pattern (what a staged rule's span search
            reads, :meth:`CompiledRule.visible`); None folds exactly the staged rules. A product
            automaton of a staged rule's pattern reads raw text: it needs ``folded=False``.

    Returns:
        The scanner (its pattern and NFA built on first use), or None for a maximum-length rule.
    """
    if isinstance(rule, MaxLengthRule):
        return None
    pattern = rule.forbid if isinstance(rule, AfterRule) else rule
    pattern = pattern.pattern if isinstance(pattern, AtMostRule) else pattern
    return _LazyScanner(
        functools.partial(_pattern_ast, pattern, rule.id, limits),
        limits,
        functools.partial(_word_chars, pattern),
        folded=is_staged(rule) if folded is None else folded,
    )
