"""Word lists: a direct Aho–Corasick matcher over letter classes, and the same language as an AST.

The construction, "the text contains one of the words":

- :func:`words_matcher` builds the matcher DFA directly: Aho–Corasick over letter atoms with the
  shape-changing normalisations as transitions (:mod:`shield.automata.letters`), minimised at the letter
  level, then expanded to bytes (:mod:`shield.automata.expand`). It never spells out variant strings, so its
  cost grows with the trie, not with the number of spellings.
- :func:`words_pattern` builds a trie over the words' letter patterns and returns it as a pattern
  AST with whole-word assertions where asked. Its NFA is what reverse scans use to find the start
  of a match, and its subset construction is the reference the direct matcher is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

from shield.automata.composed import Composed, compose
from shield.automata.determinize import Matcher
from shield.automata.expand import expand
from shield.automata.leet_units import leet_words_pattern
from shield.automata.letters import Atoms, LetterMatcher, letter_matcher
from shield.automata.limits import CompileLimits
from shield.automata.normaliser import build_normaliser
from shield.automata.normalize import (
    COMBINING_MARKS,
    SEPARATORS,
    ZERO_WIDTH,
    letter_gap,
    letter_set,
    letter_unit,
    word_code_points,
)
from shield.automata.syntax import (
    NOT_AFTER_WORD_MASK,
    NOT_BEFORE_WORD_MASK,
    Alt,
    Assert,
    CharSet,
    Concat,
    Node,
)
from shield.errors import CompileError
from shield.rules import MatchOptions

__all__ = [
    "check_words",
    "invisible_points",
    "words_composed",
    "words_matcher",
    "words_pattern",
]


def check_words(words: Sequence[str], limits: CompileLimits, *, what: str) -> tuple[str, ...]:
    """Check a word list against the compile limits.

    That the list and its words are non-empty strings is checked when the rule is constructed
    (:class:`~shield.rules.WordsRule`); the limits belong to one compile, so they are checked here.

    Args:
        words: the words of a rule.
        limits: ``max_words``, ``max_word_chars`` and ``max_dfa_states`` apply.
        what: names the rule in error messages.

    Returns:
        The words, de-duplicated in first-seen order.

    Raises:
        CompileError: a limit is exceeded.
    """
    if len(words) > limits.max_words:
        raise CompileError(
            f"{what}: {len(words)} words exceed max_words={limits.max_words}; "
            "split the list or raise CompileLimits.max_words"
        )
    for word in words:
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


def _points(chars: CharSet) -> frozenset[int]:
    return frozenset(cp for lo, hi in chars.ranges for cp in range(lo, hi + 1))


def _letters(
    words: Sequence[str],
    match: MatchOptions,
    limits: CompileLimits,
    what: str,
    *,
    staged: bool,
    exempt: Sequence[str],
) -> tuple[LetterMatcher, Atoms]:
    """The letter matcher of a word list; ``staged``: invisible characters are the normaliser's."""
    norm = match.normalize
    sets = {
        c: _points(letter_set(c, norm, match.case_insensitive)) for c in sorted(set("".join(words)))
    }
    none: frozenset[int] = frozenset()
    gaps = (
        frozenset(map(ord, ZERO_WIDTH)) if "zero_width" in norm and not staged else none,
        frozenset(map(ord, SEPARATORS)) if "separators" in norm else none,
        _points(COMBINING_MARKS) if "diacritics" in norm and not staged else none,
    )
    return letter_matcher(
        words,
        sets,
        gaps,
        repeats="repeats" in norm,
        whole_word=match.whole_word,
        max_states=limits.max_dfa_states,
        max_cells=limits.max_table_cells,
        max_seconds=limits.max_rule_seconds,
        what=what,
        word_chars=word_code_points() if match.whole_word else frozenset(),
        leet="leet" in norm,
        exempt=exempt,
        case_insensitive=match.case_insensitive,
    )


def words_matcher(
    words: Sequence[str],
    match: MatchOptions,
    limits: CompileLimits,
    *,
    what: str,
    exempt: Sequence[str] = (),
) -> Matcher:
    """The matcher DFA of a word list, built directly (no subset construction over bytes).

    Args:
        words: validated words (see :func:`check_words`).
        match: case folding, whole-word matching and normalisations.
        limits: ``max_dfa_states`` bounds the letter-level and the byte-level automaton.
        what: names the rule in error messages.
        exempt: text words never reported (whole words with ``repeats``; see
            :func:`shield.automata.exemptions.repeat_exemptions`).

    Returns:
        The matcher, equivalent to determinising :func:`words_pattern` (without ``exempt``).

    Raises:
        CompileError: a state limit is exceeded.
    """
    letters, atoms = _letters(words, match, limits, what, staged=False, exempt=exempt)
    return expand(letters, atoms, max_states=limits.max_dfa_states, what=what)


def invisible_points(match: MatchOptions) -> frozenset[int]:
    """The code points the normaliser drops for ``match``: zero-width characters with
    ``zero_width``, combining marks with ``diacritics``.

    Args:
        match: the rule's matching options.

    Returns:
        The invisible code points (empty when neither normalisation is on).
    """
    points: set[int] = set()
    if "zero_width" in match.normalize:
        points.update(map(ord, ZERO_WIDTH))
    if "diacritics" in match.normalize:
        points.update(_points(COMBINING_MARKS))
    return frozenset(points)


def words_composed(
    words: Sequence[str],
    match: MatchOptions,
    limits: CompileLimits,
    *,
    what: str,
    absorb: bool,
    exempt: Sequence[str] = (),
) -> Composed:
    """A word list as a normaliser composed at run time with its letter automaton.

    The letter automaton is :func:`words_matcher`'s without the zero-width and combining-mark
    gaps: the normaliser drops those characters (:func:`invisible_points`), so the verdict on a
    text is :func:`words_matcher`'s verdict on the text without them
    (:func:`shield.automata.normaliser.strip_invisible`). Nothing is expanded to bytes, so the
    stand-ins of ``nfkc``, ``confusables`` and ``diacritics`` cost normaliser states, not letter
    states times partial characters.

    Args:
        words: validated words (see :func:`check_words`).
        match: case folding, whole-word matching and normalisations.
        limits: ``max_dfa_states``, ``max_table_cells`` and ``max_rule_seconds`` bound the letter
            automaton.
        what: names the rule in error messages.
        absorb: a forbid automaton (detections absorb) instead of a matcher (detections restart).
        exempt: text words never reported (see :func:`words_matcher`).

    Returns:
        The composed automaton.

    Raises:
        CompileError: a limit is exceeded.
    """
    letters, atoms = _letters(words, match, limits, what, staged=True, exempt=exempt)
    return compose(build_normaliser(atoms, invisible_points(match)), letters, absorb=absorb)


def words_pattern(words: Sequence[str], match: MatchOptions) -> Node:
    """The pattern AST matching any of ``words`` under ``match``.

    Args:
        words: validated words (see :func:`check_words`).
        match: case folding, whole-word matching and normalisations.

    Returns:
        The AST: a trie of letter patterns, wrapped in whole-word assertions when asked.
    """
    if "leet" in match.normalize:
        unique = tuple(dict.fromkeys(words))
        pattern = leet_words_pattern(unique, match.normalize, match.case_insensitive)
        if match.whole_word:
            pattern = Concat((Assert(NOT_AFTER_WORD_MASK), pattern, Assert(NOT_BEFORE_WORD_MASK)))
        return pattern
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
