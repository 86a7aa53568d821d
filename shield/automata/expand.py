"""From a letter-level matcher to a byte-level matcher DFA, vectorised.

ASCII bytes are atoms of their own code point. A multi-byte stand-in (``ｆ``, ``с``, U+200B, ...)
is read through a small sub-automaton: the byte trie of the UTF-8 encodings of every code point
that belongs to some atom. A *middle* state ``(s, p)`` (letter state ``s``, proper byte prefix
``p``) completes to the letter transition of ``s`` on the completed code point's atom. A byte that
continues no stand-in treats the partial character as an ordinary non-word character (its
atom is ``other``) and is then read from there, which is exactly what the byte-level subset
construction does (every byte of a non-ASCII character is a non-word byte).

For whole words, the atoms include every non-ASCII word character
(:func:`shield.automata.normalize.word_code_points`), so a look-alike letter continues a word.
A letter state whose pending whole word is confirmed by a non-word character therefore cannot
decide on a lead byte that some word character starts with: it detects on the first byte that
rules out every word character (the last byte of a non-word character, or END), and on the lead
byte itself when no word character starts with it.

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


def _check_size(n_states: int, max_states: int, what: str) -> None:
    if n_states > max_states:
        raise CompileError(
            f"{what}: the word automaton needs more than max_dfa_states={max_states} "
            "states at the byte level; use fewer normalisations or words, split the list, "
            "or raise CompileLimits.max_dfa_states"
        )


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
    pending = letters.accepting[other]  # [S]: a non-word character detects a pending whole word
    ascii_atom = np.array(
        [atoms.of_cp.get(b, atoms.other_word if WORD_BYTES[b] else atoms.other) for b in range(128)]
    )
    prefixes, index, complete, extend = _prefix_trie(atoms)
    # Middle state ids per prefix, one per letter state before sharing; deepest prefixes first.
    mid: dict[int, np.ndarray] = {}
    reps: dict[int, tuple[np.ndarray, int]] = {}  # pid -> (representative letter states, base id)
    next_id = n_letters
    for pid in sorted(range(len(prefixes)), key=lambda p: -len(prefixes[p])):
        columns = [other, table[:, atoms.end], pending.astype(np.int64)]
        columns += [table[:, atom] for atom in complete[pid].values()]
        columns += [mid[child] for child in extend[pid].values()]
        key = np.ascontiguousarray(np.stack(columns, axis=1))  # [S, m]
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        mid[pid] = next_id + inverse.reshape(-1)
        reps[pid] = (first, next_id)
        next_id += first.size
        _check_size(next_id, max_states, what)
    # A pending whole word is detected once a partial character turns out to be no word
    # character: on a continuation byte that continues no stand-in, the detection state itself
    # (it reads the rest of the character as non-word bytes); on a byte that cannot continue a
    # character (malformed text), an accepting copy of the state that reads that byte afresh.
    detect = np.unique(other[pending])  # the detection states of pending letter states
    fresh = np.r_[0:128, 0xC0:256]
    out_letters = np.empty((n_letters, N_SYMBOLS), dtype=np.int64)
    out_letters[:, :128] = table[:, ascii_atom]
    out_letters[:, 128:256] = other[:, None]
    out_letters[:, END] = table[:, atoms.end]
    for prefix, pid in index.items():
        if len(prefix) == 1:
            out_letters[:, prefix[0]] = mid[pid]
    copied = np.unique(out_letters[detect][:, fresh]) if detect.size else np.zeros(0, np.int64)
    copy_of = np.full(next_id, -1, dtype=np.int64)
    copy_of[copied] = next_id + np.arange(copied.size)
    total = next_id + copied.size
    _check_size(total, max_states, what)
    out = np.empty((total, N_SYMBOLS), dtype=np.int64)
    out[:n_letters] = out_letters
    # Middle states: the row of the state after an ordinary character, then the stand-ins.
    for pid, (first, base) in reps.items():
        rows = np.arange(base, base + first.size)
        out[rows] = out[other[first]]
        waiting = pending[first]
        if waiting.any():
            held, states = rows[waiting], first[waiting]
            out[held, 0x80:0xC0] = other[states][:, None]
            out[held[:, None], fresh[None, :]] = copy_of[out[other[states]][:, fresh]]
            out[held, END] = table[states, atoms.end]
        for byte, atom in complete[pid].items():
            out[rows, byte] = table[first, atom]
        for byte, child in extend[pid].items():
            out[rows, byte] = mid[child][first]
    out[next_id:] = out[copied]
    accepting = np.zeros(total, dtype=bool)
    accepting[:n_letters] = letters.accepting
    accepting[next_id:] = True
    classes = _column_classes(out)
    keep = np.array([int(np.flatnonzero(classes == c)[0]) for c in range(int(classes.max()) + 1)])
    dfa = DFA(out[:, keep], classes, letters.restart[0], accepting)
    return Matcher(dfa=dfa, restart=letters.restart)
