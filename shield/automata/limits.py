"""Named limits of compilation; exceeding one raises :class:`~shield.errors.CompileError`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "CompileLimits"]


@dataclass(frozen=True, kw_only=True)
class CompileLimits:
    """Hard bounds that keep compilation fast and tables small.

    Attributes:
        max_nfa_states: states of one pattern's Thompson NFA (counted repetitions expand).
        max_dfa_states: states of one rule's DFA, before and after minimisation.
        max_repeat: largest bound of a counted repetition ``{m,n}``.
        max_words: entries of one word list.
        max_word_chars: characters of one word.
        max_table_cells: entries of one letter-level word table (states × letter classes);
            bounds the memory of word lists over large alphabets.
        max_count: largest ``count`` of an at-most rule.
        max_rule_seconds: budget of one rule's subset construction in CPU seconds of the
            compiling thread (``time.thread_time``: the work done, not the time a loaded
            machine makes it wait); a rule that needs more fails with a ``CompileError``
            instead of stalling.

    Raises:
        ValueError: a limit is not a positive integer.
    """

    max_nfa_states: int = 1_000_000
    max_dfa_states: int = 200_000
    max_repeat: int = 1_000
    max_words: int = 200_000
    max_word_chars: int = 200
    max_table_cells: int = 20_000_000
    max_count: int = 1_000
    max_rule_seconds: int = 20

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CompileLimits.{name} must be a positive integer; got {value!r}")


DEFAULT_LIMITS = CompileLimits()
