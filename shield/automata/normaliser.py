"""The normaliser: a small byte transducer from text to a stream of normal-form classes (atoms).

Normalisation as its own stage. Instead of multiplying every stand-in of every letter into a
byte-level automaton (a *middle state* per letter state and partly read character, see
:mod:`shield.automata.expand`), the text is first read by a transducer ``N`` shared by every
letter state: its states are the proper UTF-8 prefixes of the characters some atom names (a few
hundred), and on the byte that completes a character it emits that character's *atom*, the
normal-form class of :func:`shield.automata.letters.make_atoms` (``a``, ``{i, l}`` for ``1``,
``{s}`` for ``5`` and ``ſ``, a separator, a look-alike word character, other, END). The letter
automaton ``P`` (:mod:`shield.automata.letters`) then reads atoms; the two are composed at run
time (:mod:`shield.automata.composed`).

The transducer emits 0, 1 or 2 atoms per byte, exactly the atoms the byte-level expansion reads:

- an ASCII byte emits its atom, END emits the END atom;
- the lead byte of a character some atom names starts a partial character (no output);
- a byte that completes such a character emits its atom; one that extends it, nothing;
- any other byte after a partial character emits ``other`` for the partial character and is then
  read afresh (malformed text, or a character no atom names); any other byte elsewhere emits
  ``other``.

*Invisible* characters are the one normalisation the transducer applies itself: with
``zero_width`` the zero-width characters, with ``diacritics`` the combining marks emit nothing,
so the letter automaton never sees them (the normal form is the text as displayed; see
:func:`strip_invisible`). Everything else (leetspeak, look-alikes, repeats, separators) stays a
matter of the letter automaton, whose atoms already are the canonical classes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from shield.automata.alphabet import END, N_SYMBOLS, WORD_BYTES
from shield.automata.letters import Atoms

__all__ = [
    "NO_ATOM",
    "Normaliser",
    "Visible",
    "build_normaliser",
    "strip_invisible",
    "visible_bytes",
]

#: Emission slot with no atom.
NO_ATOM = -1
#: Most atoms one byte emits (the partial character's ``other``, then the byte's own atom).
MAX_EMITTED = 2


@dataclass(frozen=True, eq=False)
class Normaliser:
    """A deterministic byte transducer to atoms.

    Attributes:
        next_state: int32 [n_states, 257]: the state after each byte (state 0: between
            characters).
        emitted: int32 [n_states, 257, 2]: the atoms each byte emits, in order, ``NO_ATOM``
            where fewer.
        n_atoms: the number of atoms it emits into (END included).
    """

    next_state: np.ndarray
    emitted: np.ndarray
    n_atoms: int

    def __post_init__(self) -> None:
        n = self.next_state.shape[0]
        if self.next_state.shape != (n, N_SYMBOLS) or self.emitted.shape != (
            n,
            N_SYMBOLS,
            MAX_EMITTED,
        ):
            raise ValueError(
                f"normaliser tables must be [n, 257] and [n, 257, 2]; got "
                f"{self.next_state.shape} and {self.emitted.shape}"
            )
        if self.emitted.max() >= self.n_atoms or self.emitted.min() < NO_ATOM:
            raise ValueError(f"emitted atoms must lie in -1..{self.n_atoms - 1}")
        if self.next_state.min() < 0 or self.next_state.max() >= n:
            raise ValueError(f"normaliser states must lie in 0..{n - 1}")
        for name in ("next_state", "emitted"):
            getattr(self, name).setflags(write=False)

    @property
    def n_states(self) -> int:
        """Number of states (partial characters, plus the state between characters)."""
        return int(self.next_state.shape[0])

    def atoms_of(self, data: bytes, *, final: bool = False) -> list[int]:
        """The atoms ``data`` normalises to (a reference walk for tests and tools).

        Args:
            data: the text's bytes.
            final: also read END.

        Returns:
            The emitted atoms, in order.
        """
        state, out = 0, list[int]()
        for symbol in [*data, *([END] if final else [])]:
            out.extend(a for a in self.emitted[state, symbol].tolist() if a != NO_ATOM)
            state = int(self.next_state[state, symbol])
        return out


def build_normaliser(atoms: Atoms, invisible: frozenset[int]) -> Normaliser:
    """The normaliser of a letter automaton's atoms.

    Args:
        atoms: the atoms of the letter automaton (every code point some atom names).
        invisible: non-ASCII code points that emit nothing (zero-width characters, combining
            marks), or the empty set.

    Returns:
        The transducer.

    Raises:
        ValueError: an invisible code point is ASCII (an ASCII byte always emits its atom).
    """
    if any(cp < 128 for cp in invisible):
        raise ValueError("invisible characters must be non-ASCII; got an ASCII code point")
    named: dict[int, int] = {cp: a for cp, a in atoms.of_cp.items() if cp >= 128}
    named.update(dict.fromkeys(invisible, NO_ATOM))
    index: dict[bytes, int] = {b"": 0}
    for cp in named:
        data = chr(cp).encode("utf-8", "surrogatepass")
        for i in range(1, len(data)):
            index.setdefault(data[:i], len(index))
    n = len(index)
    ascii_atom = [
        atoms.of_cp.get(b, atoms.other_word if WORD_BYTES[b] else atoms.other) for b in range(128)
    ]
    next_state = np.zeros((n, N_SYMBOLS), dtype=np.int32)
    emitted = np.full((n, N_SYMBOLS, MAX_EMITTED), NO_ATOM, dtype=np.int32)
    # Between characters: ASCII and END emit their atom; a lead byte waits; anything else is other.
    emitted[0, :128, 0] = ascii_atom
    emitted[0, 128:256, 0] = atoms.other
    emitted[0, END, 0] = atoms.end
    for prefix, pid in index.items():
        if len(prefix) == 1:
            next_state[0, prefix[0]] = pid
            emitted[0, prefix[0], 0] = NO_ATOM
    # A partial character: a byte that neither completes nor extends it makes it `other`, and is
    # then read between characters.
    for pid in range(1, n):
        next_state[pid] = next_state[0]
        emitted[pid, :, 0] = atoms.other
        emitted[pid, :, 1] = emitted[0, :, 0]
    for cp, atom in named.items():
        data = chr(cp).encode("utf-8", "surrogatepass")
        pid, last = index[data[:-1]], data[-1]
        next_state[pid, last] = 0
        emitted[pid, last] = (atom, NO_ATOM)
    for prefix, pid in index.items():
        if len(prefix) > 1:
            parent = index[prefix[:-1]]
            next_state[parent, prefix[-1]] = pid
            emitted[parent, prefix[-1]] = (NO_ATOM, NO_ATOM)
    return Normaliser(next_state, emitted, atoms.n_atoms)


def strip_invisible(text: str, invisible: frozenset[int]) -> str:
    """The text without its invisible characters: what the letter automaton reads of it.

    Args:
        text: a text.
        invisible: the invisible code points (see :func:`build_normaliser`).

    Returns:
        ``text`` with every code point of ``invisible`` removed.
    """
    return "".join(c for c in text if ord(c) not in invisible)


@dataclass(frozen=True)
class Visible:
    """What a span search reads of a text: its bytes without invisible characters, with look-alike
    characters folded (:mod:`shield.automata.fold`), and where each byte came from.

    Attributes:
        data: the kept bytes (folded characters spelled as their representatives).
        starts: per kept byte, the original offset of its source (the byte itself, or the first
            byte of the folded character it belongs to).
        ends: per kept byte, the original offset just after its source.
        length: the original text's length in bytes.
    """

    data: bytes
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    length: int

    def index(self, offset: int) -> int:
        """The offset in ``data`` of the symbol at original ``offset``: the last byte of the kept
        source containing it (``len(data)`` for END).

        Args:
            offset: a byte offset in the original text (its length for END).

        Returns:
            The corresponding offset in ``data``.
        """
        if offset >= self.length:
            return len(self.data)
        i = bisect.bisect_right(self.starts, offset) - 1
        return i if i >= 0 and self.ends[i] > offset else i + 1

    def lower(self, offset: int) -> int:
        """The first offset in ``data`` whose source starts at or after original ``offset``.

        Args:
            offset: a byte offset in the original text.

        Returns:
            The offset in ``data``.
        """
        return bisect.bisect_left(self.starts, offset)

    def span(self, span: tuple[int, int]) -> tuple[int, int]:
        """A span of ``data`` as original offsets: from its first source to after its last.

        Args:
            span: ``(start, end)`` offsets in ``data``.

        Returns:
            ``(start, end)`` in the original bytes (invisible characters inside it included,
            those around it not).
        """
        start, end = span
        first = self.starts[start] if start < len(self.data) else self.length
        return first, (self.ends[end - 1] if end > start else first)


def visible_bytes(
    data: bytes, invisible: frozenset[int], fold: dict[int, int] | None = None
) -> Visible:
    """What the letter automaton reads of ``data``: its bytes without complete invisible
    characters, and with ``fold``'s characters replaced by their representatives.

    The byte-level counterpart of :func:`strip_invisible`, for texts that may end inside a
    character or be malformed: a byte that does not start a complete character is kept as it
    is, as the normaliser reads it.

    Args:
        data: a text's bytes (possibly malformed or cut inside a character).
        invisible: the invisible code points (see :func:`build_normaliser`).
        fold: code point to representative (:func:`shield.automata.fold.fold_classes`).

    Returns:
        The kept bytes with their sources.
    """
    out, starts, ends, i = bytearray(), list[int](), list[int](), 0
    fold = fold or {}
    while i < len(data):  # fuel: every round moves i forward by at least one
        byte = data[i]
        size = 1 if byte < 0xC0 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        cp = byte if byte < 0x80 else -1
        if size > 1:
            try:
                char = data[i : i + size].decode("utf-8")
            except UnicodeDecodeError:
                char = ""
            cp = ord(char) if len(char) == 1 else -1
        if cp in invisible:
            i += size
            continue
        rep = fold.get(cp)
        if rep is not None:
            spelled = chr(rep).encode("utf-8")
            out += spelled
            starts += [i] * len(spelled)
            ends += [i + size] * len(spelled)
            i += size
            continue
        out.append(byte)
        starts.append(i)
        ends.append(i + 1)
        i += 1
    return Visible(bytes(out), tuple(starts), tuple(ends), len(data))
