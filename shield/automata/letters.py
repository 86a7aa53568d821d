"""Word lists at the level of characters: letter atoms and the letter-level matcher.

A word list with normalisations is matched over *atoms*: the coarsest partition of code points
such that every letter set (a letter with its case, leet, confusable, compatibility and accented
stand-ins), the zero-width set, the separator set and the combining marks are unions of atoms, and
no atom mixes word characters with other characters: ASCII ``[A-Za-z0-9_]`` and, for whole
words, the non-ASCII letters of :func:`shield.automata.normalize.word_code_points`. The matcher
is then built over atoms, as Aho–Corasick over letter classes, with the normalisations that
change the *shape* of a word implemented as transitions rather than spelled-out variants:

- ``repeats``: the state after a letter loops on the same letter class;
- ``diacritics``: the state after a letter loops on combining marks;
- ``zero_width`` and ``separators``: from the state after a letter, a gap may be crossed before the
  next letter (any zero-width characters, at most one separator among them).

A DFA state is the set of live trie positions (items) beyond the restart position, with the kind
of the previous character where whole-word matching needs it. Detection and restart follow
:mod:`shield.automata.determinize` exactly (a whole word is confirmed by the next non-word
character or the end of the text; after a detection matching restarts after the detecting
symbol). On ASCII text the result is the same matcher as the subset construction of
:func:`shield.automata.wordlist.words_pattern`; beyond ASCII, whole words also end only at
non-word *characters* (a look-alike letter continues a word), which byte-level assertions
cannot express. :mod:`shield.automata.expand` turns the matcher into bytes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shield.automata.alphabet import KIND_END, KIND_OTHER, KIND_WORD, WORD_BYTES
from shield.automata.leet_units import leet_digits
from shield.automata.minimize import coarsest_partition
from shield.errors import CompileError

__all__ = ["Atoms", "LetterMatcher", "letter_matcher", "make_atoms"]

_L, _G1, _G2 = 0, 1, 2  # item phases: after a letter, in a gap before a separator, after one
_FREE, _CAPS, _NUMBER = 0, 1, 2  # item contexts of leetspeak's rules (leet_units)


@dataclass(frozen=True, eq=False)
class Atoms:
    """A partition of the code points into atoms.

    Attributes:
        of_cp: atom of every code point that belongs to some set.
        kinds: per atom, ``KIND_WORD``, ``KIND_OTHER`` or ``KIND_END``.
        of_set: per input set, the atoms whose union it is.
        other: atom of the non-word code points in no set (and of malformed bytes).
        other_word: atom of the word characters in no set.
        end: the END atom.
    """

    of_cp: dict[int, int]
    kinds: tuple[int, ...]
    of_set: tuple[frozenset[int], ...]
    other: int
    other_word: int
    end: int

    @property
    def n_atoms(self) -> int:
        """Number of atoms (END included)."""
        return len(self.kinds)


def make_atoms(
    sets: Sequence[frozenset[int]],
    word_chars: frozenset[int] = frozenset(),
    *,
    split_capitals: bool = False,
) -> Atoms:
    """The atoms of a family of code point sets.

    Args:
        sets: the sets (letter sets, gap sets).
        word_chars: non-ASCII code points that count as word characters (ASCII ``[A-Za-z0-9_]``
            always do). Those in no set share the ``other_word`` atom.
        split_capitals: no atom mixes uppercase ASCII letters or ASCII digits with other code
            points (leetspeak's capital-digit rule, :mod:`shield.automata.leet_units`).

    Returns:
        The partition.
    """
    membership: dict[int, int] = {}
    for i, members in enumerate(sets):
        bit = 1 << i
        for cp in members:
            membership[cp] = membership.get(cp, 0) | bit
    index: dict[tuple[int, bool, int], int] = {}
    kinds: list[int] = []
    of_cp: dict[int, int] = {}
    for cp in sorted(membership):
        word = (cp < 128 and bool(WORD_BYTES[cp])) or cp in word_chars
        shape = (0x41 <= cp <= 0x5A) + 2 * (0x30 <= cp <= 0x39) if split_capitals else 0
        key = (membership[cp], word, shape)
        atom = index.get(key)
        if atom is None:
            atom = index[key] = len(kinds)
            kinds.append(KIND_WORD if key[1] else KIND_OTHER)
        of_cp[cp] = atom
    of_set = tuple(
        frozenset(atom for (mask, _, _), atom in index.items() if mask >> i & 1)
        for i in range(len(sets))
    )
    other, other_word, end = len(kinds), len(kinds) + 1, len(kinds) + 2
    kinds += [KIND_OTHER, KIND_WORD, KIND_END]
    for cp in word_chars:
        of_cp.setdefault(cp, other_word)
    return Atoms(of_cp, tuple(kinds), of_set, other, other_word, end)


@dataclass(frozen=True, eq=False)
class LetterMatcher:
    """A minimal matcher DFA over atoms.

    Attributes:
        table: int32 [n_states, n_atoms].
        accepting: bool [n_states], "a match was just detected".
        restart: the states of a fresh matcher after ``PREV_BEGIN``, ``PREV_WORD`` and
            ``PREV_OTHER`` symbols.
    """

    table: np.ndarray
    accepting: np.ndarray
    restart: tuple[int, int, int]


@dataclass(frozen=True)
class _Model:
    """The word trie with the normalisations' transitions, as item → atom → items."""

    children: list[dict[str, int]]
    final: list[bool]
    last: list[str]
    letter_atoms: dict[str, frozenset[int]]
    zero_width: frozenset[int]
    separators: frozenset[int]
    marks: frozenset[int]
    repeats: bool
    leet_atoms: dict[str, frozenset[int]]  # per letter, its leet-digit atoms (leet only)
    capitals: frozenset[int]  # the atoms of uppercase ASCII letters (leet only)
    exempt_children: list[dict[str, int]]  # the exempt words' trie (see exemptions)
    exempt_final: list[bool]
    plain_atoms: dict[str, frozenset[int]]  # per letter of an exempt word, its plain atoms

    def moves(self, item: int) -> dict[int, list[int]]:
        """Item → atom → items. An item is ``(node * 3 + phase) * 3 + context``, the context of
        leetspeak's rules (:mod:`shield.automata.leet_units`): every letter of the match so far is
        a capital (no leet digit may come next), or a leet digit (the match is not a word yet).
        An exempt word's item is ``-1 - node`` of its own trie: plain letters only, no gaps, no
        repeats (see :mod:`shield.automata.exemptions`)."""
        if item < 0:
            return self._exempt_moves(-1 - item)
        base, context = divmod(item, 3)
        node, phase = divmod(base, 3)
        out: dict[int, list[int]] = {}

        def letter_moves(letter: str, target: int) -> None:
            leet = self.leet_atoms.get(letter, frozenset())
            for atom in self.letter_atoms[letter]:
                if context == _CAPS and atom in leet:
                    continue
                if atom in self.capitals and context in (_CAPS, _FREE) and (context or not node):
                    after = _CAPS  # a capital at the start, or after capitals only
                elif atom in leet and (context == _NUMBER or not node):
                    after = _NUMBER  # a leet digit at the start, or after leet digits only
                else:
                    after = _FREE
                out.setdefault(atom, []).append(target * 3 + after)

        for letter, child in self.children[node].items():
            letter_moves(letter, child * 3 + _L)
        if node == 0:  # the root: only the first letter (of a word, or of an exempt word)
            for atom, targets in self._exempt_moves(0).items():
                out.setdefault(atom, []).extend(targets)
            return out
        more = bool(self.children[node])
        if phase == _L:
            if self.repeats:
                letter_moves(self.last[node], base)
            for atom in self.marks:
                out.setdefault(atom, []).append(item)
        if more and phase in (_L, _G1):
            for atom in self.zero_width:
                out.setdefault(atom, []).append((node * 3 + _G1) * 3 + context)
            for atom in self.separators:
                out.setdefault(atom, []).append((node * 3 + _G2) * 3 + context)
        if more and phase == _G2:
            for atom in self.zero_width:
                out.setdefault(atom, []).append(item)
        return out

    def _exempt_moves(self, node: int) -> dict[int, list[int]]:
        """Atom → items from node ``node`` of the exempt words' trie."""
        out: dict[int, list[int]] = {}
        if node >= len(self.exempt_children):
            return out
        for letter, child in self.exempt_children[node].items():
            for atom in self.plain_atoms[letter]:
                out.setdefault(atom, []).append(-1 - child)
        return out


def _trie(words: Sequence[str]) -> tuple[list[dict[str, int]], list[bool], list[str]]:
    children: list[dict[str, int]] = [{}]
    final = [False]
    last = [""]
    for word in words:
        node = 0
        for letter in word:
            child = children[node].get(letter)
            if child is None:
                child = children[node][letter] = len(children)
                children.append({})
                final.append(False)
                last.append(letter)
            node = child
        final[node] = True
    return children, final, last


def letter_matcher(
    words: Sequence[str],
    letter_sets: dict[str, frozenset[int]],
    gaps: tuple[frozenset[int], frozenset[int], frozenset[int]],
    *,
    repeats: bool,
    whole_word: bool,
    max_states: int,
    max_cells: int,
    max_seconds: float,
    what: str,
    word_chars: frozenset[int] = frozenset(),
    leet: bool = False,
    exempt: Sequence[str] = (),
    case_insensitive: bool = False,
) -> tuple[LetterMatcher, Atoms]:
    """The minimal letter-level matcher of a word list.

    Args:
        words: the words (validated).
        letter_sets: the code points that may stand for each letter of the words.
        gaps: the zero-width, separator and combining-mark code points (empty when off).
        repeats: a letter may be repeated.
        whole_word: matches must be whole words.
        max_states: fuel for the subset construction.
        max_cells: the letter table (states × atoms) may not hold more entries.
        max_seconds: budget of the construction in CPU seconds of this thread.
        what: names the rule in error messages.
        word_chars: non-ASCII code points that count as word characters (whole words).
        leet: apply leetspeak's capital-digit rule (:mod:`shield.automata.leet_units`).
        exempt: words of the text never reported as whole words (plain letters, see
            :mod:`shield.automata.exemptions`); whole words only.
        case_insensitive: exempt words match in either case.

    Returns:
        The matcher and its atoms.

    Raises:
        CompileError: more than ``max_states`` states or ``max_cells`` table entries, or more
            than ``max_seconds``.
    """
    letters = sorted(letter_sets)
    exempt = tuple(exempt) if whole_word else ()
    plain = sorted(set("".join(exempt)))
    plain_sets = [
        frozenset({ord(c), *((ord(c.upper()), ord(c.lower())) if case_insensitive else ())})
        for c in plain
    ]
    sets = [*(letter_sets[c] for c in letters), *gaps, *plain_sets]
    atoms = make_atoms(sets, word_chars, split_capitals=leet)
    of_letter = dict(zip(letters, atoms.of_set, strict=False))
    zero_width, separators, marks = atoms.of_set[len(letters) : len(letters) + 3]
    plain_atoms = dict(zip(plain, atoms.of_set[len(letters) + 3 :], strict=True))
    exempt_children, exempt_final, _ = _trie(exempt) if exempt else ([], [], [])
    leet_atoms = {
        c: frozenset(atoms.of_cp[cp] for cp in leet_digits(c, letter_sets[c])) for c in letters
    }
    capitals = frozenset(atoms.of_cp[cp] for cp in range(0x41, 0x5B) if cp in atoms.of_cp)
    children, final, last = _trie(words)
    model = _Model(
        children,
        final,
        last,
        of_letter,
        zero_width,
        separators,
        marks,
        repeats,
        leet_atoms if leet else {},
        capitals if leet else frozenset(),
        exempt_children,
        exempt_final,
        plain_atoms,
    )
    fuel = min(max_states, max(1, max_cells // atoms.n_atoms))
    table, accepting, restart = _Crawl(model, atoms, whole_word, fuel, what).run(max_seconds)
    block = coarsest_partition(table, accepting.astype(np.int64))
    count = int(block.max()) + 1
    rep = np.zeros(count, dtype=np.int64)
    rep[block[::-1]] = np.arange(block.size)[::-1]
    minimal = block[table[rep]].astype(np.int32)
    restarts = tuple(int(block[r]) for r in restart)
    return (
        LetterMatcher(minimal, accepting[rep], (restarts[0], restarts[1], restarts[2])),
        atoms,
    )


class _Crawl:
    """Breadth-first subset construction over atoms (see the module docstring)."""

    def __init__(
        self, model: _Model, atoms: Atoms, whole_word: bool, max_states: int, what: str
    ) -> None:
        self.model = model
        self.atoms = atoms
        self.whole_word = whole_word
        self.max_states = max_states
        self.what = what
        self.moves: dict[int, dict[int, list[int]]] = {}
        self.index: dict[tuple, int] = {}
        self.keys: list[tuple] = []
        n = atoms.n_atoms
        self.other_atoms = [a for a in range(n) if atoms.kinds[a] == KIND_OTHER]
        self.base: dict[int, list[int]] = {}
        # Items after the last letter of a word that is not leet digits only (a match of leet
        # digits only is a number, not a word: 455, 8008): context and phase in the low digits.
        final = model.final
        self.final_items = frozenset(
            (node * 3 + _L) * 3 + context
            for node in range(len(final))
            if final[node]
            for context in (_FREE, _CAPS)
        )

    def id(self, key: tuple) -> int:
        found = self.index.get(key)
        if found is None:
            if len(self.keys) >= self.max_states:
                raise CompileError(
                    f"{self.what}: the word automaton needs more than {self.max_states} letter "
                    f"states over {self.atoms.n_atoms} letter classes (max_dfa_states or "
                    "max_table_cells); use fewer words or normalisations, split the list into "
                    "several rules, or raise CompileLimits.max_dfa_states / max_table_cells"
                )
            found = self.index[key] = len(self.keys)
            self.keys.append(key)
        return found

    def item_moves(self, item: int) -> dict[int, list[int]]:
        found = self.moves.get(item)
        if found is None:
            found = self.moves[item] = self.model.moves(item)
        return found

    def has_final(self, items: frozenset[int]) -> bool:
        # A match of leet digits only is a number, not a word (455, 8008).
        return not items.isdisjoint(self.final_items)

    def pending(self, items: frozenset[int]) -> bool:
        """A whole word waits for its confirming character, and the text word is not exempt."""
        exempt = self.model.exempt_final
        return self.has_final(items) and not any(i < 0 and exempt[-1 - i] for i in items)

    def step(self, moved: set[int], prev: int, atom: int, finals: bool) -> tuple:
        """The key after ``atom``, given ``moved``, the items the state's items move to on it;
        ``finals``: a whole word is pending in the state's items."""
        kind = self.atoms.kinds[atom]
        if kind == KIND_END:
            return ("ED",) if finals else ("E",)
        if finals and kind == KIND_OTHER:
            return ("D", 0)
        new = set(moved)
        if prev == 0 or not self.whole_word:
            new.update(self.item_moves(0).get(atom, ()))  # the root: a match may start here
        if self.model.exempt_final and new and max(new) < 0:
            # An exempt word only matters against a word of the list that started with it, and
            # none can start inside a word: with no list item left, its items are dead weight.
            new = set()
        new_prev = 1 if (kind == KIND_WORD and self.whole_word) else 0
        if not self.whole_word and self.has_final(frozenset(new)):
            return ("D", 0)
        return ("S", frozenset(new), new_prev)

    def row(self, key: tuple) -> list[int]:
        """The successors of ``key`` on every atom (:meth:`step`, inlined for the crawl's speed:
        the same keys, without a set copy and three calls per touched atom)."""
        n = self.atoms.n_atoms
        if key[0] in ("E", "ED"):
            return [self.id(("E",))] * n
        prev = key[-1]
        if prev not in self.base:
            self.base[prev] = [self.id(self.step(set(), prev, a, False)) for a in range(n)]
        if key[0] == "D" or not key[1]:
            return self.base[prev]
        items: frozenset[int] = key[1]
        row = list(self.base[prev])
        # One pass over the items' moves gathers every atom's successors (an atom no item moves
        # on keeps the base row, unless a pending whole word is detected on it).
        moved: dict[int, set[int]] = {}
        cache, model = self.moves, self.model
        for item in items:
            item_moves = cache.get(item)
            if item_moves is None:
                item_moves = cache[item] = model.moves(item)
            for atom, targets in item_moves.items():
                found = moved.get(atom)
                if found is None:
                    moved[atom] = set(targets)
                else:
                    found.update(targets)
        finals = self.whole_word and self.pending(items)
        if finals:
            for atom in self.other_atoms:
                moved.setdefault(atom, set())
            moved.setdefault(self.atoms.end, set())
        kinds, index = self.atoms.kinds, self.index
        root = self.root_moves() if prev == 0 or not self.whole_word else {}
        prune = bool(model.exempt_final)
        for atom, new in moved.items():
            kind = kinds[atom]
            if kind == KIND_END or (finals and kind == KIND_OTHER) or not self.whole_word:
                row[atom] = self.id(self.step(new, prev, atom, finals))
                continue
            extra = root.get(atom)
            if extra:
                new.update(extra)
            if prune and new and max(new) < 0:
                new = set()  # see step(): exempt items with no list item left are dead weight
            next_key = ("S", frozenset(new), 1 if kind == KIND_WORD else 0)
            known = index.get(next_key)
            row[atom] = known if known is not None else self.id(next_key)
        return row

    def root_moves(self) -> dict[int, list[int]]:
        """The moves of the root item (a match may start here)."""
        return self.item_moves(0)

    def run(self, max_seconds: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        deadline = time.thread_time() + max_seconds
        begin = self.id(("S", frozenset(), 0))
        word = self.id(("S", frozenset(), 1 if self.whole_word else 0))
        rows: list[list[int]] = []
        # Invariant: rows[i] is the complete row of keys[i]; keys beyond len(rows) are queued.
        while len(rows) < len(self.keys):
            if len(rows) % 256 == 0 and time.thread_time() > deadline:
                raise CompileError(
                    f"{self.what}: the word automaton took more than max_rule_seconds="
                    f"{max_seconds:g} (at {len(self.keys)} letter states); use fewer words or "
                    "normalisations, or raise CompileLimits.max_rule_seconds"
                )
            rows.append(self.row(self.keys[len(rows)]))
        table = np.array(rows, dtype=np.int64)
        accepting = np.array([k[0] in ("D", "ED") for k in self.keys], dtype=bool)
        return table, accepting, (begin, word, begin)
