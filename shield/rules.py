"""The rule vocabulary of the shield: frozen values that ``specs`` lowers to and ``shield`` compiles.

A rule says what the generated text must never contain. Automaton rules (words, regex, literal,
after, at-most, max-length) compile to byte-level automata and are enforced token by token;
classifier rules are scored on the host at scope boundaries.

Every rule checks its own values once, when it is constructed, and raises
:class:`~shield.errors.SpecSyntaxError` naming the rule (a regex pattern with normalisations raises
:class:`~shield.errors.UnsupportedSpecError`), so a rule that exists is well formed. What depends on
the compiler is checked when the rule is compiled: that a regex is in the supported subset, and
the :class:`~shield.automata.limits.CompileLimits` on word lists and automata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shield.errors import SpecSyntaxError, UnsupportedSpecError

__all__ = [
    "NORMALIZATIONS",
    "PROFANITY_CHECK",
    "RULE_ID_FORM",
    "RULE_ID_PATTERN",
    "SCOPES",
    "SCORER_REFERENCE",
    "VALIDATORS",
    "AfterRule",
    "AtMostRule",
    "AutomatonRule",
    "ClassifierRule",
    "LiteralRule",
    "MatchOptions",
    "MaxLengthRule",
    "Pattern",
    "RegexRule",
    "Rule",
    "WordsRule",
    "check_unique_ids",
    "repeated_rule_id",
    "rule_kind",
]

#: What a rule id must look like: it appears in messages (``rule ID: ...``) and JSON output, and
#: merged automaton components join ids with ``+``, so it holds no spaces, colons or pluses.
RULE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: :data:`RULE_ID_PATTERN` in words, for error messages.
RULE_ID_FORM = (
    "a string of 1-64 letters, digits, '_', '.' or '-' that starts with a letter or digit"
)

#: The bundled classifier scorer's short name (``alt-profanity-check``'s linear TF-IDF model).
PROFANITY_CHECK = "profanity-check"

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
#: A scorer named by reference, ``"module:function"`` (use ``fullmatch``); groups ``module`` (a
#: dotted import name) and ``function``.
SCORER_REFERENCE = re.compile(rf"(?P<module>{_DOTTED}):(?P<function>[A-Za-z_][A-Za-z0-9_]*)")

#: When a classifier rule judges: at each sentence end, every ``window_tokens`` tokens, or once at
#: the end of the response.
SCOPES: tuple[str, ...] = ("sentence", "window", "response")

#: Normalisations a match may ask for; each is compiled into the automaton, never a text pre-pass.
NORMALIZATIONS: frozenset[str] = frozenset(
    {
        "nfkc",  # compatibility forms: full-width letters, ligatures, super/subscripts
        "confusables",  # Cyrillic/Greek look-alikes of Latin letters
        "leet",  # 4→a, 3→e, 0→o, 1→i/l, $→s, @→a, ...
        "zero_width",  # zero-width spaces/joiners and soft hyphens inside a word
        "diacritics",  # accented letters match their base letter
        "repeats",  # a letter may be repeated ("fuuuck")
        "separators",  # single separators between letters ("f.u.c.k", "f u c k")
    }
)


#: Checks that decide, on a whole match, whether it is what the rule is about: a payment card
#: (``luhn``, the Luhn checksum), an IBAN (``iban``, the ISO 13616 mod-97 check) or a phone number
#: (``phone``, Google's libphonenumber). Scans drop a match whose full span fails the rule's
#: validator; decoding stays conservative and treats every match as a violation (see
#: :mod:`shield.validators`, which implements them).
VALIDATORS: tuple[str, ...] = ("luhn", "iban", "phone")


@dataclass(frozen=True, kw_only=True)
class MatchOptions:
    """How a pattern matches text.

    Attributes:
        case_insensitive: fold ASCII and Unicode simple case.
        whole_word: a match must not be preceded or followed by a word character; the match is
            confirmed by the next byte (or the end of the text).
        normalize: a subset of :data:`NORMALIZATIONS`.
    """

    case_insensitive: bool = False
    whole_word: bool = False
    normalize: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        """Check the options; a list or set of normalisation names is frozen.

        The options are built before the rule that holds them, so these errors name no rule.

        Raises:
            SpecSyntaxError: a flag is not a bool, or ``normalize`` is not a collection of names
                from :data:`NORMALIZATIONS`.
        """
        for name in ("case_insensitive", "whole_word"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise SpecSyntaxError(f"{name} must be True or False; got {value!r}")
        names = self.normalize
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise SpecSyntaxError(
                f"normalize must be a set of normalisation names; got {names!r}; write e.g."
                ' frozenset({"leet"})'
            )
        names = frozenset(names)
        unknown = names - NORMALIZATIONS
        if unknown:
            raise SpecSyntaxError(
                f"unknown normalisation(s) {sorted(unknown, key=repr)}; expected a subset of"
                f" {sorted(NORMALIZATIONS)}"
            )
        object.__setattr__(self, "normalize", names)


@dataclass(frozen=True, kw_only=True)
class WordsRule:
    """Forbid any of ``words`` (a word list, compiled as Aho–Corasick).

    ``validator`` (one of :data:`VALIDATORS`, or None) lets a scan drop a match that fails it.
    """

    id: str
    words: tuple[str, ...]
    match: MatchOptions = field(default_factory=MatchOptions)
    validator: str | None = None

    def __post_init__(self) -> None:
        """Check the id, the options and the words; a list of words is frozen to a tuple.

        The compile limits on word lists (``max_words``, ``max_word_chars``) are checked when the
        rule is compiled, against the limits of that compile.

        Raises:
            SpecSyntaxError: a field is malformed, the list is empty or holds an empty word, or
                the validator is unknown.
        """
        _check_id(self.id)
        _check_match(self.match, self.id)
        _check_validator(self.validator, self.id)
        words = self.words
        if isinstance(words, str | bytes) or not isinstance(words, Iterable):
            raise SpecSyntaxError(
                f"words must be a sequence of strings; got {words!r}; write e.g. ('foo', 'bar')",
                rule_id=self.id,
            )
        words = tuple(words)
        if not words:
            raise SpecSyntaxError("the word list is empty; give at least one word", rule_id=self.id)
        for word in words:
            if not isinstance(word, str):
                raise SpecSyntaxError(
                    f"the word list holds {word!r}, which is not a string; words must be strings",
                    rule_id=self.id,
                )
            if not word:
                raise SpecSyntaxError(
                    "the word list holds an empty word; remove it", rule_id=self.id
                )
        object.__setattr__(self, "words", words)


@dataclass(frozen=True, kw_only=True)
class RegexRule:
    """Forbid any match of ``pattern`` (the documented regex subset).

    ``validator`` (one of :data:`VALIDATORS`, or None) lets a scan drop a match that fails it.
    """

    id: str
    pattern: str
    match: MatchOptions = field(default_factory=MatchOptions)
    validator: str | None = None

    def __post_init__(self) -> None:
        """Check the id, the options and that the pattern is a string.

        Whether the pattern is in the supported subset is checked when the rule is compiled.

        Raises:
            SpecSyntaxError: a field is malformed or the validator is unknown.
            UnsupportedSpecError: the options ask for normalisations, which regexes do not take.
        """
        _check_id(self.id)
        _check_match(self.match, self.id)
        _check_validator(self.validator, self.id)
        if not isinstance(self.pattern, str):
            raise SpecSyntaxError(
                f"pattern must be a string (a regex); got {self.pattern!r}", rule_id=self.id
            )
        if self.match.normalize:
            raise UnsupportedSpecError(
                "normalize applies to words and literals, not to regex patterns; "
                "remove it or use a word list",
                rule_id=self.id,
            )


@dataclass(frozen=True, kw_only=True)
class LiteralRule:
    """Forbid the exact string ``literal``.

    ``validator`` (one of :data:`VALIDATORS`, or None) lets a scan drop a match that fails it.
    """

    id: str
    literal: str
    match: MatchOptions = field(default_factory=MatchOptions)
    validator: str | None = None

    def __post_init__(self) -> None:
        """Check the id, the options and the literal.

        Raises:
            SpecSyntaxError: a field is malformed, the literal is empty or the validator is
                unknown.
        """
        _check_id(self.id)
        _check_match(self.match, self.id)
        _check_validator(self.validator, self.id)
        if not isinstance(self.literal, str):
            raise SpecSyntaxError(
                f"literal must be a string; got {self.literal!r}", rule_id=self.id
            )
        if not self.literal:
            raise SpecSyntaxError(
                "literal must not be empty; an empty literal would match everywhere",
                rule_id=self.id,
            )


Pattern = WordsRule | RegexRule | LiteralRule


@dataclass(frozen=True, kw_only=True)
class AfterRule:
    """Once ``trigger`` has matched, forbid any later match of ``forbid`` (which starts after it)."""

    id: str
    trigger: Pattern
    forbid: Pattern

    def __post_init__(self) -> None:
        """Check the id and that both parts are patterns (which checked themselves).

        Raises:
            SpecSyntaxError: a field is malformed, or a part has a validator.
        """
        _check_id(self.id)
        _check_pattern(self.trigger, "trigger", self.id)
        _check_pattern(self.forbid, "forbid", self.id)
        _check_unvalidated(self.trigger, "an after rule", self.id)
        _check_unvalidated(self.forbid, "an after rule", self.id)


@dataclass(frozen=True, kw_only=True)
class AtMostRule:
    """Forbid more than ``count`` non-overlapping matches of ``pattern``."""

    id: str
    pattern: Pattern
    count: int

    def __post_init__(self) -> None:
        """Check the id, the pattern and the count.

        Raises:
            SpecSyntaxError: a field is malformed, the pattern has a validator or ``count`` is not
                a non-negative integer.
        """
        _check_id(self.id)
        _check_pattern(self.pattern, "pattern", self.id)
        _check_unvalidated(self.pattern, "an at-most rule", self.id)
        _check_count(self.count, "count", self.id)


@dataclass(frozen=True, kw_only=True)
class MaxLengthRule:
    """Forbid a response longer than ``max_bytes`` bytes of UTF-8."""

    id: str
    max_bytes: int

    def __post_init__(self) -> None:
        """Check the id and the length.

        Raises:
            SpecSyntaxError: a field is malformed or ``max_bytes`` is not a non-negative integer.
        """
        _check_id(self.id)
        _check_count(self.max_bytes, "max_bytes", self.id)


@dataclass(frozen=True, kw_only=True)
class ClassifierRule:
    """Forbid a scope whose classifier score reaches ``threshold``.

    Attributes:
        scorer: ``"profanity-check"`` (the bundled default) or ``"module:function"``, a function
            that maps a list of texts to a list of probabilities in [0, 1]. Only the form is
            checked here; whether it imports is checked when it is resolved.
        threshold: a number in (0, 1]; a score at or above it is a violation.
        scope: ``"sentence"`` (judged at each sentence end), ``"window"`` (every
            ``window_tokens`` tokens) or ``"response"`` (judged at the end of generation).
        window_tokens: the window length, a positive integer, for the window scope only.
    """

    id: str
    scorer: str
    threshold: float
    scope: Literal["sentence", "window", "response"] = "sentence"
    window_tokens: int | None = None

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            SpecSyntaxError: threshold outside (0, 1], unknown scope, missing or non-positive
                ``window_tokens`` for the window scope (or one given for another scope), or a
                malformed scorer name.
        """
        _check_id(self.id)
        threshold = self.threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):
            raise SpecSyntaxError(
                f"threshold must be a number in (0, 1]; got {threshold!r}", rule_id=self.id
            )
        if self.scope not in SCOPES:
            raise SpecSyntaxError(
                f"scope must be sentence, window or response; got {self.scope!r}", rule_id=self.id
            )
        w = self.window_tokens
        if self.scope == "window" and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise SpecSyntaxError(
                f"scope 'window' needs window_tokens, a positive integer; got {w!r}",
                rule_id=self.id,
            )
        if self.scope != "window" and w is not None:
            raise SpecSyntaxError(
                f"window_tokens applies only to scope 'window'; this rule has scope"
                f" {self.scope!r}; remove window_tokens or change the scope",
                rule_id=self.id,
            )
        if not isinstance(self.scorer, str) or (
            self.scorer != PROFANITY_CHECK and SCORER_REFERENCE.fullmatch(self.scorer) is None
        ):
            raise SpecSyntaxError(
                f"scorer must be {PROFANITY_CHECK!r} or 'module:function'; got {self.scorer!r}",
                rule_id=self.id,
            )


AutomatonRule = WordsRule | RegexRule | LiteralRule | AfterRule | AtMostRule | MaxLengthRule
Rule = AutomatonRule | ClassifierRule

#: The spec language's name of each rule kind (the ``kind`` key of a ``[[rule]]`` table).
_KIND_NAMES: dict[type, str] = {
    WordsRule: "words",
    RegexRule: "regex",
    LiteralRule: "literal",
    AfterRule: "after",
    AtMostRule: "at_most",
    MaxLengthRule: "max_length",
    ClassifierRule: "classifier",
}


def rule_kind(rule: Rule) -> str:
    """The spec language's name of ``rule``'s kind (``"words"``, ``"regex"``, ...).

    Args:
        rule: a rule value.

    Returns:
        Its kind's name, as a spec writes it.
    """
    return _KIND_NAMES[type(rule)]


def repeated_rule_id(rules: Iterable[Rule]) -> tuple[int, int] | None:
    """Where an id is first used twice: ``(index of its first use, index of the repeat)``.

    ``rules`` is read one rule at a time and no further than the repeat, so a caller may pass a
    generator that builds the rules as it goes (the loader does, to report a repeated id before
    it reads the rules after it).

    Args:
        rules: the rules of a spec, in order.

    Returns:
        The two indices, or None when every id is used once.

    Example:
        >>> a, b = LiteralRule(id="a", literal="x"), LiteralRule(id="b", literal="y")
        >>> repeated_rule_id([a, b]), repeated_rule_id([a, b, a])
        (None, (0, 2))
    """
    first_use: dict[str, int] = {}
    for index, rule in enumerate(rules):
        earlier = first_use.setdefault(rule.id, index)
        if earlier != index:
            return earlier, index
    return None


def check_unique_ids(rules: Sequence[Rule]) -> None:
    """Check that no two of ``rules`` share an id (see :func:`repeated_rule_id`).

    Args:
        rules: the rules of a spec, in order.

    Raises:
        SpecSyntaxError: an id is used twice; the error names it and both rules' positions.
    """
    repeat = repeated_rule_id(rules)
    if repeat is not None:
        earlier, index = repeat
        raise SpecSyntaxError(
            f"rule ids must be unique; this id is used twice (rules #{earlier + 1} and"
            f" #{index + 1}, counting from 1); rename one",
            rule_id=rules[index].id,
        )


def _check_id(rule_id: object) -> None:
    if not isinstance(rule_id, str) or RULE_ID_PATTERN.fullmatch(rule_id) is None:
        raise SpecSyntaxError(f"a rule id must be {RULE_ID_FORM}; got {rule_id!r}")


def _check_match(match: object, rule_id: str) -> None:
    if not isinstance(match, MatchOptions):
        raise SpecSyntaxError(
            f"match must be MatchOptions; got {type(match).__name__}", rule_id=rule_id
        )


def _check_validator(validator: object, rule_id: str) -> None:
    if validator is not None and validator not in VALIDATORS:
        raise SpecSyntaxError(
            f"unknown validator {validator!r}; expected one of {', '.join(VALIDATORS)},"
            " or None for no validator",
            rule_id=rule_id,
        )


def _check_unvalidated(pattern: Pattern, kind: str, rule_id: str) -> None:
    # Validators filter whole matches in a scan; an after or at-most rule's verdict depends on
    # which matches exist (the trigger, the count), which a scan-only filter would change.
    if pattern.validator is not None:
        raise SpecSyntaxError(
            f"validator applies to forbid rules only, not to the patterns of {kind}; got"
            f" validator {pattern.validator!r}; put the pattern in a forbid rule of its own",
            rule_id=rule_id,
        )


def _check_pattern(pattern: object, name: str, rule_id: str) -> None:
    if not isinstance(pattern, Pattern):
        raise SpecSyntaxError(
            f"{name} must be a WordsRule, RegexRule or LiteralRule; got {type(pattern).__name__}",
            rule_id=rule_id,
        )


def _check_count(value: object, name: str, rule_id: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecSyntaxError(
            f"{name} must be a non-negative integer; got {value!r}", rule_id=rule_id
        )
