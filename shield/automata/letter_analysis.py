"""A staged rule's letter automaton, seen from between characters: reachability and traps.

A :class:`~shield.automata.composed.Composed` reads bytes through its normaliser; between
characters the normaliser is in its initial state, and reading one complete character (or one
stray byte) from there emits one atom and returns to it. So the texts, seen between characters,
are exactly the sequences of those atoms, and questions about them are questions about the
letter automaton over those atoms (:func:`letter_view`), never about the pair state space.
``shield check`` (:mod:`shield.analysis`) asks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shield.automata.alphabet import END, N_SYMBOLS
from shield.automata.composed import Composed
from shield.automata.normaliser import NO_ATOM

__all__ = ["LetterView", "letter_prefix", "letter_reach", "letter_traps", "letter_view"]


@dataclass(frozen=True)
class LetterView:
    """A staged rule's letter automaton over the atoms that complete characters emit.

    Attributes:
        table: int [P, A']: the letter automaton on each emittable atom (columns in ``atoms``).
        end: int [P]: the letter state after END.
        accepting: bool [P]: violating letter states.
        initial: the initial letter state.
        atoms: the atom of each column.
        texts: one text per column that emits its atom (for example prefixes).
    """

    table: np.ndarray
    end: np.ndarray
    accepting: np.ndarray
    initial: int
    atoms: tuple[int, ...]
    texts: tuple[bytes, ...]


def letter_view(composed: Composed) -> LetterView:
    """The letter automaton of ``composed`` over the atoms its normaliser emits per character.

    Args:
        composed: a staged rule's automaton.

    Returns:
        The view: one column per atom that some complete character (or a stray byte) emits from
        the normaliser's state between characters, with one such text each.
    """
    norm = composed.normaliser
    texts: dict[int, bytes] = {}
    pending = [(0, b"")]
    for _ in range(4 * N_SYMBOLS):  # fuel: UTF-8 prefixes are at most 3 bytes deep
        if not pending:
            break
        state, prefix = pending.pop()
        for byte in range(END):
            first = int(norm.emitted[state, byte, 0])
            if first == NO_ATOM and int(norm.next_state[state, byte]) != 0:
                pending.append((int(norm.next_state[state, byte]), prefix + bytes((byte,))))
            elif state == 0 or int(norm.next_state[state, byte]) == 0:
                for atom in norm.emitted[state, byte].tolist():
                    if atom != NO_ATOM:  # an aborted prefix emits other, then the byte's atom
                        texts.setdefault(atom, prefix + bytes((byte,)))
    columns = sorted(texts)
    letters = composed.letters
    end_atom = int(norm.emitted[0, END, 0])
    return LetterView(
        table=letters[:, columns],
        end=letters[:, end_atom],
        accepting=composed.accepting,
        initial=composed.initial_letter,
        atoms=tuple(columns),
        texts=tuple(texts[a] for a in columns),
    )


def letter_reach(view: LetterView) -> np.ndarray:
    """The letter states some text reaches (between characters).

    Args:
        view: the letter view.

    Returns:
        bool [P].
    """
    reach = np.zeros(view.table.shape[0], dtype=bool)
    reach[view.initial] = True
    frontier = np.array([view.initial])
    for _ in range(view.table.shape[0] + 1):  # fuel: every round adds a state or stops
        found = np.unique(view.table[frontier].ravel())
        found = found[~reach[found]]
        if not found.size:
            break
        reach[found] = True
        frontier = found
    return reach


def letter_traps(view: LetterView) -> np.ndarray:
    """Non-violating letter states from which every continuation (atoms, then END) violates.

    Args:
        view: the letter view.

    Returns:
        bool [P].
    """
    safe = ~view.accepting
    can_finish = safe & ~view.accepting[view.end]
    for _ in range(view.table.shape[0] + 1):  # fuel: every round adds a state or stops
        grown = can_finish | (safe & can_finish[view.table].any(axis=1))
        if (grown == can_finish).all():
            break
        can_finish = grown
    return safe & ~can_finish


def letter_prefix(view: LetterView, target: int) -> bytes:
    """A shortest text (in characters) that leads the letter automaton to ``target``.

    Args:
        view: the letter view.
        target: a reachable letter state.

    Returns:
        The text's bytes (empty for the initial state).
    """
    parent = {view.initial: (-1, b"")}
    frontier = [view.initial]
    for _ in range(view.table.shape[0] + 1):  # fuel: breadth-first, one level per round
        if target in parent or not frontier:
            break
        following = []
        for state in frontier:
            for column, nxt in enumerate(view.table[state].tolist()):
                if nxt not in parent:
                    parent[nxt] = (state, view.texts[column])
                    following.append(nxt)
        frontier = following
    text, state = b"", target
    while state in parent and parent[state][0] != -1:  # fuel: one step back per BFS level
        state, piece = parent[state]
        text = piece + text
    return text
