"""The rule vocabulary of the shield: frozen values that ``specs`` lowers to and ``shield`` compiles.

A rule says what the generated text must never contain. Automaton rules (words, regex, literal,
after, at-most, max-length) compile to byte-level automata and are enforced token by token;
classifier rules are scored on the host at scope boundaries. Rules are plain data: validating that
a regex is in the supported subset happens when the rule is compiled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "NORMALIZATIONS",
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
]

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


@dataclass(frozen=True, kw_only=True)
class WordsRule:
    """Forbid any of ``words`` (a word list, compiled as Aho–Corasick)."""

    id: str
    words: tuple[str, ...]
    match: MatchOptions = field(default_factory=MatchOptions)


@dataclass(frozen=True, kw_only=True)
class RegexRule:
    """Forbid any match of ``pattern`` (the documented regex subset)."""

    id: str
    pattern: str
    match: MatchOptions = field(default_factory=MatchOptions)


@dataclass(frozen=True, kw_only=True)
class LiteralRule:
    """Forbid the exact string ``literal``."""

    id: str
    literal: str
    match: MatchOptions = field(default_factory=MatchOptions)


Pattern = WordsRule | RegexRule | LiteralRule


@dataclass(frozen=True, kw_only=True)
class AfterRule:
    """Once ``trigger`` has matched, forbid any later match of ``forbid`` (which starts after it)."""

    id: str
    trigger: Pattern
    forbid: Pattern


@dataclass(frozen=True, kw_only=True)
class AtMostRule:
    """Forbid more than ``count`` non-overlapping matches of ``pattern``."""

    id: str
    pattern: Pattern
    count: int


@dataclass(frozen=True, kw_only=True)
class MaxLengthRule:
    """Forbid a response longer than ``max_bytes`` bytes of UTF-8."""

    id: str
    max_bytes: int


@dataclass(frozen=True, kw_only=True)
class ClassifierRule:
    """Forbid a scope whose classifier score reaches ``threshold``.

    Attributes:
        scorer: ``"profanity-check"`` (the bundled default) or ``"module:function"``, a function
            that maps a list of texts to a list of probabilities in [0, 1].
        scope: ``"sentence"`` (judged at each sentence end), ``"window"`` (every
            ``window_tokens`` tokens) or ``"response"`` (judged at the end of generation).
    """

    id: str
    scorer: str
    threshold: float
    scope: Literal["sentence", "window", "response"] = "sentence"
    window_tokens: int | None = None


AutomatonRule = WordsRule | RegexRule | LiteralRule | AfterRule | AtMostRule | MaxLengthRule
Rule = AutomatonRule | ClassifierRule
