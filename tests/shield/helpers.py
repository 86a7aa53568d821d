"""Tiny helpers shared by the shield tests: a duck-typed spec and one-rule shields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import shield
from shield.policy import BacktrackPolicy
from shield.rules import MatchOptions, RegexRule, Rule, WordsRule


@dataclass(frozen=True)
class Spec:
    """The smallest object ``shield.compile`` accepts."""

    name: str
    rules: tuple[Rule, ...]
    policy: BacktrackPolicy = field(default_factory=lambda: BacktrackPolicy(refusal="Sorry."))


def regex_shield(pattern: str, *, ci: bool = False, whole_word: bool = False) -> shield.Shield:
    """A shield with one regex rule ``r``."""
    match = MatchOptions(case_insensitive=ci, whole_word=whole_word)
    return shield.compile(Spec("t", (RegexRule(id="r", pattern=pattern, match=match),)))


def words_shield(words: tuple[str, ...], **options: object) -> shield.Shield:
    """A shield with one word-list rule ``w``."""
    return shield.compile(
        Spec("t", (WordsRule(id="w", words=words, match=MatchOptions(**options)),))
    )  # type: ignore[arg-type]


def python_pattern(pattern: str, *, whole_word: bool = False) -> re.Pattern[str]:
    """The Python ``re`` pattern with our semantics: ASCII classes, ``$`` only at the very end."""
    source = pattern.replace("$", r"\Z")
    if whole_word:
        source = rf"(?<!\w)(?:{source})(?!\w)"
    return re.compile(source, re.ASCII)
