"""From a letter-level matcher to a byte-level matcher DFA, vectorised.

ASCII bytes are atoms of their own code point. A multi-byte stand-in (``ｆ``, ``с``, U+200B, ...)
is read through a small sub-automaton: the byte trie of the UTF-8 encodings of every code point
that belongs to some atom. A *middle* state ``(s, p)`` (letter state ``s``, proper byte prefix
``p``) completes to the letter transition of ``s`` on the completed code point's atom. A byte that
continues no stand-in treats the partial character as an ordinary non-word character (its
atom is ``other``) and is then read from there, which is exactly what the byte-level subset
construction does (every byte of a non-ASCII character is a non-word byte). A letter state whose
pending whole word is confirmed by any non-word character detects on the lead byte itself.

Middle states of one prefix are shared by every letter state that behaves alike on the stand-ins
below that prefix (rows are deduplicated level by level, deepest prefixes first), so the number of
states is close to minimal without a global minimisation.
"""

from __future__ import annotations

import numpy as np

from shield.automata.alphabet import END, N_SYMBOLS, WORD_BYTES, classes_from_table
from shield.automata.determinize import Matcher
from shield.automata.dfa import DFA
from shield.automata.letters import Atoms, LetterMatcher
from shield.errors import CompileError

__all__ = ["expand"]


def _prefix_trie(
    atoms: Atoms,
) -> tuple[list[bytes], dict[bytes, int], list[dict[int, int]], list[dict[int, int]]]:
    """Proper prefixes of the stand-ins' encodings: (prefixes, id of prefix, complete, extend)."""
    prefixes: list[bytes] = []
    index: dict[bytes, int] = {}
    for cp in atoms.of_cp:
        if cp < 128:
            continue
        data = chr(cp).encode("utf-8", "surrogatepass")
        for i in range(1, len(data)):
            if data[:i] not in index:
                index[data[:i]] = len(prefixes)
                prefixes.append(data[:i])
    complete: list[dict[int, int]] = [{} for _ in prefixes]
    extend: list[dict[int, int]] = [{} for _ in prefixes]
    for cp, atom in atoms.of_cp.items():
        if cp >= 128:
            data = chr(cp).encode("utf-8", "surrogatepass")
            complete[index[data[:-1]]][data[-1]] = atom
    for prefix, pid in index.items():
        if len(prefix) > 1:
            extend[index[prefix[:-1]]][prefix[-1]] = pid
    return prefixes, index, complete, extend


def _column_classes(table: np.ndarray) -> np.ndarray:
    """int32 [257]: symbols whose columns of ``table`` [n, 257] are equal share a class."""
    rng = np.random.default_rng(0x5EED)
    weights = np.asarray(rng.integers(1, 2**62, size=table.shape[0], dtype=np.int64))
    hashed = (table * weights[:, None]).sum(axis=0)  # wraps around: a hash of each column
    _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
    if not np.array_equal(table, table[:, first[inverse.reshape(-1)]]):  # collision: go exact
        return classes_from_table(table.T)
    return classes_from_table(inverse.reshape(-1, 1))


def expand(letters: LetterMatcher, atoms: Atoms, *, max_states: int, what: str) -> Matcher:
    """The byte-level matcher of a letter-level matcher.

    Args:
        letters: the letter matcher.
        atoms: its atoms.
        max_states: the byte-level DFA may not have more states.
        what: names the rule in error messages.

    Returns:
        The matcher; its letter states keep their ids, middle states follow.

    Raises:
        CompileError: more than ``max_states`` states.
    """
    table = letters.table.astype(np.int64)  # [S, A]
    n_letters = table.shape[0]
    other = table[:, atoms.other]  # [S]: after an ordinary non-word character
    pending = letters.accepting[other]  # [S]: a non-word byte detects a pending whole word
    ascii_atom = np.array(
        [atoms.of_cp.get(b, atoms.other_word if WORD_BYTES[b] else atoms.other) for b in range(128)]
    )
    prefixes, index, complete, extend = _prefix_trie(atoms)
    live = np.flatnonzero(~pending)  # letter states that get middle states
    # Middle state ids per prefix, aligned with ``live``; deepest prefixes first.
    mid: dict[int, np.ndarray] = {}
    reps: dict[int, tuple[np.ndarray, int]] = {}  # pid -> (representative live positions, base id)
    next_id = n_letters
    for pid in sorted(range(len(prefixes)), key=lambda p: -len(prefixes[p])):
        columns = [other[live]]
        columns += [table[live, atom] for atom in complete[pid].values()]
        columns += [mid[child] for child in extend[pid].values()]
        key = np.ascontiguousarray(np.stack(columns, axis=1))  # [len(live), m]
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        mid[pid] = next_id + inverse.reshape(-1)
        reps[pid] = (first, next_id)
        next_id += first.size
        if next_id > max_states:
            raise CompileError(
                f"{what}: the word automaton needs more than max_dfa_states={max_states} "
                "states at the byte level; use fewer normalisations or words, split the list, "
                "or raise CompileLimits.max_dfa_states"
            )
    out = np.empty((next_id, N_SYMBOLS), dtype=np.int64)
    # Letter states.
    out[:n_letters, :128] = table[:, ascii_atom]
    out[:n_letters, 128:256] = other[:, None]
    out[:n_letters, END] = table[:, atoms.end]
    position = np.full(n_letters, -1, dtype=np.int64)
    position[live] = np.arange(live.size)
    for prefix, pid in index.items():
        if len(prefix) == 1:
            out[live, prefix[0]] = mid[pid]
    # Middle states: the row of the state after an ordinary character, then the stand-ins.
    for pid, (first, base) in reps.items():
        rows = slice(base, base + first.size)
        states = live[first]
        out[rows] = out[other[states]]
        for byte, atom in complete[pid].items():
            out[rows, byte] = table[states, atom]
        for byte, child in extend[pid].items():
            out[rows, byte] = mid[child][first]
    classes = _column_classes(out)
    keep = np.array([int(np.flatnonzero(classes == c)[0]) for c in range(int(classes.max()) + 1)])
    accepting = np.zeros(next_id, dtype=bool)
    accepting[:n_letters] = letters.accepting
    dfa = DFA(out[:, keep], classes, letters.restart[0], accepting)
    return Matcher(dfa=dfa, restart=letters.restart)
