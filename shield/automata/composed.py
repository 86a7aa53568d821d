"""A normaliser composed at run time with a letter automaton: the byte-level automaton, unexpanded.

:class:`Composed` reads bytes like a :class:`~shield.automata.dfa.DFA`, but holds two small
tables instead of their product: the normaliser ``N`` (:mod:`shield.automata.normaliser`, bytes
to atoms) and the letter automaton ``P`` (atoms to letter states). A byte steps ``N`` and then
``P`` once per emitted atom (0 to 2). The state is one integer, ``letter * n_norm + norm``, so
every consumer that keeps one int per component (the monitor, token walks, the decoder's state
pytree, rewinds) keeps working unchanged; the table sizes add (``N`` rows + ``P`` rows) where
the expansion multiplied them (:mod:`shield.automata.expand`: a middle state per letter state
and partial character).

A symbol *detects* when ``P`` enters an accepting state on an atom the symbol emitted (either
one), which is what the expanded byte DFA reports on that symbol. With ``absorb`` the
accepting letter states are absorbing (a forbid automaton: violations are sticky).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shield.automata.alphabet import END, N_SYMBOLS
from shield.automata.letters import LetterMatcher
from shield.automata.normaliser import NO_ATOM, Normaliser

__all__ = ["Composed", "compose"]


@dataclass(frozen=True, eq=False)
class Composed:
    """A byte automaton as normaliser × letter automaton, composed at run time.

    Attributes:
        normaliser: the byte transducer to atoms.
        letters: int32 [n_letters, n_atoms + 1]: the letter automaton; the last column is the
            identity (an emission slot with no atom).
        accepting: bool [n_letters]: letter states right after a detection (absorbing with
            ``absorb``).
        initial_letter: the letter state before any text.
        emitted: int32 [n_norm, 257, 2]: the normaliser's emissions as letter-table columns
            (derived: ``NO_ATOM`` becomes the identity column).
    """

    normaliser: Normaliser = field(repr=False)
    letters: np.ndarray = field(repr=False)
    accepting: np.ndarray = field(repr=False)
    initial_letter: int
    emitted: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n, width = self.letters.shape
        if width != self.normaliser.n_atoms + 1 or self.accepting.shape != (n,):
            raise ValueError(
                f"letter table must be [n, {self.normaliser.n_atoms + 1}] with n accepting flags; "
                f"got {self.letters.shape} and {self.accepting.shape}"
            )
        if n < 1 or self.letters.min() < 0 or self.letters.max() >= n:
            raise ValueError(f"letter table entries must lie in 0..{n - 1}")
        if not 0 <= self.initial_letter < n:
            raise ValueError(
                f"initial letter state must lie in 0..{n - 1}; got {self.initial_letter}"
            )
        for name in ("letters", "accepting"):
            getattr(self, name).setflags(write=False)
        emitted = np.where(
            self.normaliser.emitted == NO_ATOM, width - 1, self.normaliser.emitted
        ).astype(np.int32)
        emitted.setflags(write=False)
        object.__setattr__(self, "emitted", emitted)
        object.__setattr__(
            self,
            "_lists",
            (
                self.normaliser.next_state.ravel().tolist(),
                emitted[:, :, 0].ravel().tolist(),
                emitted[:, :, 1].ravel().tolist(),
                self.letters.ravel().tolist(),
                self.accepting.tolist(),
            ),
        )

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def n_norm(self) -> int:
        """States of the normaliser."""
        return self.normaliser.n_states

    @property
    def n_letters(self) -> int:
        """States of the letter automaton."""
        return int(self.letters.shape[0])

    @property
    def n_states(self) -> int:
        """Size of the packed state space (``n_letters * n_norm``; most pairs are unreachable)."""
        return self.n_letters * self.n_norm

    @property
    def initial(self) -> int:
        """The packed state before any text."""
        return self.initial_letter * self.n_norm

    def table_cells(self) -> int:
        """Entries of both tables together (what the composition stores instead of the product)."""
        return int(self.normaliser.next_state.size * 3 + self.letters.size)

    # -- walking -------------------------------------------------------------------------------
    def violating(self, state: int) -> bool:
        """Whether the letter part of packed ``state`` is accepting."""
        return bool(self.accepting[state // self.n_norm])

    def step(self, state: int, symbol: int) -> tuple[int, bool]:
        """Read one symbol.

        Args:
            state: a packed state.
            symbol: a byte 0..255 or END (256).

        Returns:
            The next packed state, and whether the symbol detected (``P`` entered an accepting
            state on an atom the symbol emitted).
        """
        nxt, first, second, letters, accepting = self._lists  # type: ignore[attr-defined]
        width = self.letters.shape[1]
        letter, norm = divmod(state, self.n_norm)
        cell = norm * N_SYMBOLS + symbol
        a, b = first[cell], second[cell]
        mid = letters[letter * width + a]
        letter = letters[mid * width + b]
        # Only an emitted atom can detect: a byte that emits nothing leaves P where it was.
        hit = (a != width - 1 and accepting[mid]) or (b != width - 1 and accepting[letter])
        return letter * self.n_norm + nxt[cell], hit

    def detections(self, data: bytes, *, final: bool = True) -> list[int]:
        """The symbol offsets that detect (``len(data)`` for END).

        Args:
            data: the text's bytes.
            final: also read END.

        Returns:
            The offsets, in order.
        """
        state, found = self.initial, []
        for index, symbol in enumerate([*data, *([END] if final else [])]):
            state, hit = self.step(state, symbol)
            if hit:
                found.append(index)
        return found

    def walk(self, state: int, data: bytes, *, final: bool = False) -> int:
        """Read ``data`` (then END when ``final``) from packed ``state``.

        Args:
            state: the start state.
            data: the bytes.
            final: also read END.

        Returns:
            The packed state reached.
        """
        nxt, first, second, letters, _ = self._lists  # type: ignore[attr-defined]
        width, size = self.letters.shape[1], self.n_norm
        letter, norm = divmod(state, size)
        for symbol in [*data, *([END] if final else [])]:  # step() inlined: the hot loop
            cell = norm * N_SYMBOLS + symbol
            letter = letters[letters[letter * width + first[cell]] * width + second[cell]]
            norm = nxt[cell]
        return letter * size + norm

    def step_many(self, states: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """Vectorised step of an absorbing automaton: packed ``states`` [n] on ``symbols`` [n].

        Args:
            states: packed states.
            symbols: one symbol per state.

        Returns:
            The packed states after them (int64).
        """
        letter, norm = np.divmod(np.asarray(states, dtype=np.int64), self.n_norm)
        mid = self.letters[letter, self.emitted[norm, symbols, 0]]
        letter = self.letters[mid, self.emitted[norm, symbols, 1]]
        return letter.astype(np.int64) * self.n_norm + self.normaliser.next_state[norm, symbols]


def compose(normaliser: Normaliser, letters: LetterMatcher, *, absorb: bool) -> Composed:
    """Compose a normaliser with a letter matcher.

    Args:
        normaliser: the transducer of the matcher's atoms.
        letters: the letter matcher.
        absorb: make accepting states absorbing (a forbid automaton) instead of restarting.

    Returns:
        The composed automaton; its initial letter state is the matcher's start state.

    Raises:
        ValueError: the matcher's table does not have one column per atom of the normaliser.
    """
    table = np.asarray(letters.table, dtype=np.int32)
    n, atoms = table.shape
    if atoms != normaliser.n_atoms:
        raise ValueError(
            f"letter table has {atoms} atoms; the normaliser emits {normaliser.n_atoms}"
        )
    rows = np.arange(n, dtype=np.int32)
    full = np.concatenate([table, rows[:, None]], axis=1)
    accepting = np.asarray(letters.accepting, dtype=bool)
    if absorb:
        full[accepting] = rows[accepting, None]
    return Composed(normaliser, full, accepting.copy(), int(letters.restart[0]))
