"""Rule automata derived from matchers with the crawl primitive: forbid, at-most, after, max-length.

Every automaton here is a *forbid* automaton: its accepting states are violation states, and
they are absorbing (once violated, always violated).
"""

from __future__ import annotations

import numpy as np

from shield.automata.alphabet import END, WORD_BYTES, classes_from_table
from shield.automata.determinize import Matcher
from shield.automata.dfa import DFA, crawl
from shield.automata.limits import CompileLimits
from shield.automata.minimize import minimize
from shield.automata.syntax import PREV_OTHER, PREV_WORD
from shield.errors import CompileError

__all__ = ["absorb", "after", "at_most", "max_length"]


def absorb(matcher: DFA, limits: CompileLimits, *, what: str) -> DFA:
    """The forbid automaton of a matcher: violated from the first detection on (Σ*PΣ* for a pattern).

    Every transition into a detection state is redirected to one absorbing violation state; the
    states left unreachable are dropped and the result is minimised (vectorised throughout).

    Args:
        matcher: a matcher DFA (accepting = a detection).
        limits: ``max_dfa_states`` applies.
        what: names the rule in error messages.

    Returns:
        The minimal forbid DFA.

    Raises:
        CompileError: the automaton exceeds ``limits.max_dfa_states``.
    """
    n = matcher.n_states
    if n + 1 > limits.max_dfa_states:
        raise CompileError(
            f"{what}: the automaton needs more than max_dfa_states={limits.max_dfa_states} "
            "states; simplify the pattern or raise CompileLimits.max_dfa_states"
        )
    table = matcher.transitions
    sink = n
    redirected = np.where(matcher.accepting[table], sink, table)
    table = np.vstack([redirected, np.full((1, table.shape[1]), sink, dtype=table.dtype)])
    initial = sink if matcher.accepting[matcher.initial] else matcher.initial
    reach = np.zeros(n + 1, dtype=bool)
    reach[initial] = True
    frontier = np.array([initial])
    while frontier.size:  # each state enters the frontier once: at most n + 1 rounds
        nxt = np.unique(table[frontier])
        nxt = nxt[~reach[nxt]]
        reach[nxt] = True
        frontier = nxt
    keep = np.flatnonzero(reach)
    renumber = np.full(n + 1, -1, dtype=np.int64)
    renumber[keep] = np.arange(keep.size)
    accepting = keep == sink
    out = DFA(renumber[table[keep]], matcher.classes, int(renumber[initial]), accepting)
    return minimize(out)


def at_most(matcher: Matcher, count: int, limits: CompileLimits, *, what: str) -> DFA:
    """Matcher of the detections beyond the first ``count`` (non-overlapping) ones.

    Args:
        matcher: the pattern's matcher.
        count: matches allowed (>= 0).
        limits: ``max_dfa_states`` and ``max_count`` apply.
        what: names the rule in error messages.

    Returns:
        The minimal matcher DFA of (matcher state, matches so far, capped at count + 1); it
        accepts right after the (count+1)-th and every later detection.

    Raises:
        CompileError: ``count`` exceeds ``limits.max_count`` or the automaton is too large.
    """
    if count > limits.max_count:
        raise CompileError(
            f"{what}: count={count} exceeds max_count={limits.max_count}; lower it or raise CompileLimits.max_count"
        )
    dfa = matcher.dfa
    table = dfa.transitions.tolist()
    accepting = dfa.accepting.tolist()

    cap = count + 1

    def successors(key: tuple[int, int, bool]) -> list[tuple[int, int, bool]]:
        state, seen, _ = key
        out = []
        for t in table[state]:
            new_seen = min(cap, seen + 1) if accepting[t] else seen
            out.append((t, new_seen, bool(accepting[t]) and new_seen == cap))
        return out

    first = bool(accepting[dfa.initial])
    start = (dfa.initial, 1 if first else 0, first and cap == 1)
    out, _ = crawl(
        start, dfa.classes, successors, lambda k: k[2], max_states=limits.max_dfa_states, what=what
    )
    return minimize(out)


def after(trigger: Matcher, forbidden: Matcher, limits: CompileLimits, *, what: str) -> DFA:
    """Matcher of the matches of ``forbidden`` that start after a detected match of ``trigger``.

    Once the trigger is detected, the forbid matcher starts fresh from its restart state for the
    detecting symbol, so the forbidden match starts after the symbol that detected the trigger.

    Args:
        trigger: the trigger's matcher.
        forbidden: the forbidden pattern's matcher.
        limits: ``max_dfa_states`` applies.
        what: names the rule in error messages.

    Returns:
        The minimal matcher DFA (accepting right after each detected forbidden match).

    Raises:
        CompileError: the automaton exceeds ``limits.max_dfa_states``.
    """
    table_t = trigger.dfa.byte_table()
    table_f = forbidden.dfa.byte_table()
    classes = classes_from_table(np.stack([trigger.dfa.classes, forbidden.dfa.classes], axis=1))
    reps = [int(np.flatnonzero(classes == c)[0]) for c in range(int(classes.max()) + 1)]
    word = _restart_kinds()

    def successors(key: tuple[int, int]) -> list[tuple[int, int]]:
        phase, state = key
        out: list[tuple[int, int]] = []
        for symbol in reps:
            if phase == 0:
                t = int(table_t[state, symbol])
                if trigger.dfa.accepting[t]:
                    out.append((1, forbidden.restart[word[symbol]]))
                else:
                    out.append((0, t))
            else:
                out.append((1, int(table_f[state, symbol])))
        return out

    start = (0, trigger.dfa.initial)
    if trigger.dfa.accepting[trigger.dfa.initial]:
        start = (1, forbidden.dfa.initial)
    out, _ = crawl(
        start,
        classes,
        successors,
        lambda k: k[0] == 1 and bool(forbidden.dfa.accepting[k[1]]),
        max_states=limits.max_dfa_states,
        what=what,
    )
    return minimize(out)


def _restart_kinds() -> list[int]:
    """Per symbol, the ``PREV_*`` kind it leaves behind (END maps to ``PREV_OTHER``)."""
    return [PREV_WORD if WORD_BYTES[s] else PREV_OTHER for s in range(END + 1)]  # END: never used


def max_length(max_bytes: int, limits: CompileLimits, *, what: str) -> DFA:
    """Violated by byte number ``max_bytes + 1`` (0-based offset ``max_bytes``).

    Args:
        max_bytes: bytes allowed (>= 0).
        limits: ``max_dfa_states`` bounds ``max_bytes``.
        what: names the rule in error messages.

    Returns:
        A counter DFA with ``max_bytes + 2`` states (already minimal).

    Raises:
        CompileError: ``max_bytes + 2`` exceeds ``limits.max_dfa_states``.
    """
    n = max_bytes + 2
    if n > limits.max_dfa_states:
        raise CompileError(
            f"{what}: max_bytes={max_bytes} needs {n} states, over max_dfa_states={limits.max_dfa_states}; "
            "lower max_bytes or raise CompileLimits.max_dfa_states"
        )
    classes = np.zeros(END + 1, dtype=np.int32)
    classes[END] = 1
    table = np.empty((n, 2), dtype=np.int32)
    table[:, 0] = np.minimum(np.arange(n) + 1, n - 1)  # a byte: count it (saturating at violation)
    table[:, 1] = np.arange(n)  # END: stay
    accepting = np.zeros(n, dtype=bool)
    accepting[n - 1] = True
    return DFA(table, classes, 0, accepting)
