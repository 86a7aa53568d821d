"""Word lists: a trie of letter patterns turned into one pattern AST, and a direct Aho–Corasick DFA.

The construction, "the text contains one of the words":

- :func:`words_pattern` builds a trie over the words' letter patterns (letters with the same set
  of stand-ins share nodes) and returns it as a pattern AST with whole-word assertions where
  asked. It supports every normalisation; :mod:`shield.compile` determinises it, and its NFA is
  what reverse scans use to find the start of a match.
"""

from __future__ import annotations

from collections.abc import Sequence

from shield.errors import CompileError, SpecSyntaxError
from shield.limits import CompileLimits
from shield.normalize import letter_gap, letter_unit
from shield.rules import MatchOptions
from shield.syntax import NOT_AFTER_WORD_MASK, NOT_BEFORE_WORD_MASK, Alt, Assert, Concat, Node

__all__ = ["check_words", "words_pattern"]


def check_words(words: Sequence[str], limits: CompileLimits, *, what: str) -> tuple[str, ...]:
    """Validate a word list.

    Args:
        words: the words.
        limits: ``max_words`` and ``max_word_chars`` apply.
        what: names the rule in error messages.

    Returns:
        The words, de-duplicated in first-seen order.

    Raises:
        SpecSyntaxError: the list is empty or holds an empty word.
        CompileError: a limit is exceeded.
    """
    if not words:
        raise SpecSyntaxError(f"{what}: the word list is empty; give at least one word")
    if len(words) > limits.max_words:
        raise CompileError(
            f"{what}: {len(words)} words exceed max_words={limits.max_words}; "
            "split the list or raise CompileLimits.max_words"
        )
    for word in words:
        if not word:
            raise SpecSyntaxError(f"{what}: the word list holds an empty word; remove it")
        if len(word) > limits.max_word_chars:
            raise CompileError(
                f"{what}: word {word[:20]!r}... has {len(word)} characters, over "
                f"max_word_chars={limits.max_word_chars}; shorten it or raise the limit"
            )
    unique = tuple(dict.fromkeys(words))
    # Every distinct prefix of a word is a distinct state of the matcher: fail fast when the
    # prefixes alone exceed the state limit, before any subset construction.
    prefixes: set[str] = set()
    for word in unique:
        prefixes.update(word[:i] for i in range(1, len(word) + 1))
        if len(prefixes) > limits.max_dfa_states:
            raise CompileError(
                f"{what}: the word list has more than max_dfa_states={limits.max_dfa_states} "
                "distinct prefixes; split it into several rules or raise CompileLimits.max_dfa_states"
            )
    return unique


def words_pattern(words: Sequence[str], match: MatchOptions) -> Node:
    """The pattern AST matching any of ``words`` under ``match``.

    Args:
        words: validated words (see :func:`check_words`).
        match: case folding, whole-word matching and normalisations.

    Returns:
        The AST: a trie of letter patterns, wrapped in whole-word assertions when asked.
    """
    units: dict[str, Node] = {}

    def unit(letter: str) -> Node:
        if letter not in units:
            units[letter] = letter_unit(letter, match.normalize, match.case_insensitive)
        return units[letter]

    # Trie over letter patterns: node = (dict unit -> child, is_end).
    root: dict[Node, list] = {}
    ends: set[int] = set()
    for word in words:
        node = root
        for letter in word:
            node = node.setdefault(unit(letter), [{}])[0]
        ends.add(id(node))
    gap = letter_gap(match.normalize)
    pattern = _trie_ast(root, ends, gap)
    if match.whole_word:
        pattern = Concat((Assert(NOT_AFTER_WORD_MASK), pattern, Assert(NOT_BEFORE_WORD_MASK)))
    return pattern


def _trie_ast(root: dict, ends: set[int], gap: Node | None) -> Node:
    """The AST of a trie: at each node, end here or continue with (gap) one of the children."""

    def below(node: dict) -> Node:
        branches = [Concat((letter, continuation(child))) for letter, (child,) in node.items()]
        return branches[0] if len(branches) == 1 else Alt(tuple(branches))

    def continuation(node: dict) -> Node:
        if not node:
            return Concat(())
        more = below(node)
        if gap is not None:
            more = Concat((gap, more))
        if id(node) in ends:
            return Alt((Concat(()), more))
        return more

    return below(root)
