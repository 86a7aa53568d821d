"""The input alphabet of every automaton: the 256 byte values plus an END symbol.

Automata read the UTF-8 bytes of generated text. End of text is an input of its own (``END``),
so that a rule can wait for it (``$``, or a whole-word match confirmed by the end of the text).

Word bytes (used by ``\\b``, ``\\w`` and whole-word matching) are the ASCII bytes ``[A-Za-z0-9_]``.
Every other byte, including every byte of a non-ASCII character, is a non-word byte. This is the
fail-closed choice: a forbidden word next to a non-ASCII character is still a whole word, so it is
caught; it is also exactly Python's ``re.ASCII`` notion of a word character.

Byte classes compress tables: two symbols are in the same class when every automaton involved
treats them alike. :func:`refine` computes the coarsest such partition from a family of symbol sets
or table columns (partition refinement).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "END",
    "KIND_END",
    "KIND_OTHER",
    "KIND_WORD",
    "N_SYMBOLS",
    "WORD_BYTES",
    "classes_from_table",
    "kind_of",
    "refine",
    "symbol_kinds",
]

#: The end-of-text symbol; bytes are 0..255.
END = 256
#: Number of input symbols (256 bytes and END).
N_SYMBOLS = 257

#: Kinds of symbols as seen by assertions (``\\b``, ``$``, whole word).
KIND_END = 0
KIND_WORD = 1
KIND_OTHER = 2

#: bool[257]: True for the ASCII word bytes ``[A-Za-z0-9_]``.
WORD_BYTES: np.ndarray = np.zeros(N_SYMBOLS, dtype=bool)
for _b in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    WORD_BYTES[_b] = True
WORD_BYTES.setflags(write=False)


def kind_of(symbol: int) -> int:
    """The assertion kind of one symbol.

    Args:
        symbol: a byte value 0..255 or :data:`END`.

    Returns:
        :data:`KIND_END`, :data:`KIND_WORD` or :data:`KIND_OTHER`.

    Raises:
        ValueError: ``symbol`` is outside 0..256.
    """
    if not 0 <= symbol < N_SYMBOLS:
        raise ValueError(f"symbol must be in 0..256; got {symbol}")
    if symbol == END:
        return KIND_END
    return KIND_WORD if WORD_BYTES[symbol] else KIND_OTHER


def symbol_kinds() -> np.ndarray:
    """The kind of every symbol.

    Returns:
        int8[257], entry ``s`` is :func:`kind_of` of ``s``.
    """
    kinds = np.where(WORD_BYTES, KIND_WORD, KIND_OTHER).astype(np.int8)
    kinds[END] = KIND_END
    return kinds


def refine(sets: Iterable[Iterable[int]]) -> np.ndarray:
    """Coarsest partition of the symbols that separates every given set from its complement.

    Args:
        sets: symbol sets (values in 0..256); END always gets a class of its own.

    Returns:
        int32[257] class ids numbered 0..k-1 in order of first appearance.

    Raises:
        ValueError: a set holds a value outside 0..256.
    """
    columns = [np.zeros(N_SYMBOLS, dtype=np.int64)]
    end_column = np.zeros(N_SYMBOLS, dtype=np.int64)
    end_column[END] = 1
    columns.append(end_column)
    for symbol_set in sets:
        column = np.zeros(N_SYMBOLS, dtype=np.int64)
        members = np.fromiter(symbol_set, dtype=np.int64)
        if members.size and (members.min() < 0 or members.max() >= N_SYMBOLS):
            raise ValueError(f"symbols must be in 0..256; got a set with {members.max()}")
        column[members] = 1
        columns.append(column)
    return classes_from_table(np.stack(columns, axis=1))


def classes_from_table(table: np.ndarray) -> np.ndarray:
    """Classes of symbols whose rows of ``table`` are equal.

    Args:
        table: [257, m] integer array; row ``s`` describes symbol ``s``.

    Returns:
        int32[257] class ids numbered 0..k-1 in order of first appearance.

    Raises:
        ValueError: ``table`` does not have 257 rows.
    """
    if table.ndim != 2 or table.shape[0] != N_SYMBOLS:
        raise ValueError(f"table must have shape [257, m]; got {table.shape}")
    _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # Renumber classes by first appearance so that class ids are stable and readable.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse].astype(np.int32)
