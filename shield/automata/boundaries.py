"""Where words end in a text: the kinds of the symbols around a position.

Assertions (``^ $ \\b \\B``, whole word) look at the symbol before a position and the symbol at it.
Patterns read bytes, and for regexes the kind of a symbol is the kind of a *byte*: ``[A-Za-z0-9_]``
are word bytes, every other byte (every byte of a non-ASCII character included) is a non-word
byte, as in Python's ``re.ASCII``.

Word lists go further: a look-alike letter (``ρ`` for ``p``, ``𝐟``, ``é``) continues a word, so
``cockρit`` is one word. Their NFAs carry the non-ASCII word characters
(:func:`shield.automata.normalize.word_code_points`), and the kind of the symbol at a position is
then the kind of the *character* that starts there, the kind of the one before it the kind of the
character that ends there. With no word characters beyond ASCII the two readings agree: a
non-ASCII character is a non-word character either way. Malformed UTF-8 counts as non-word.
"""

from __future__ import annotations

from shield.automata.alphabet import KIND_END, KIND_OTHER, KIND_WORD, WORD_BYTES
from shield.automata.syntax import PREV_BEGIN, PREV_OTHER, PREV_WORD

__all__ = ["char_start", "next_kind", "prev_kind"]

#: The longest UTF-8 encoding of one code point.
_MAX_CHAR_BYTES = 4


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte < 0xC0


def _code_point(data: bytes, start: int, stop: int) -> int | None:
    """The code point encoded by exactly ``data[start:stop]``, or None when it is not one."""
    try:
        chars = data[start:stop].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return ord(chars) if len(chars) == 1 else None


def _encoded_length(lead: int) -> int:
    """The length of the encoding that ``lead`` starts (1 for a byte that starts none)."""
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    return 2 if lead >= 0xC0 else 1


def next_kind(data: bytes, position: int, word_chars: frozenset[int]) -> int:
    """The kind of the symbol at ``position``: END, or the character that starts there.

    Args:
        data: the text's bytes.
        position: an offset in ``0..len(data)``.
        word_chars: non-ASCII code points that are word characters (empty: bytes only).

    Returns:
        ``KIND_END``, ``KIND_WORD`` or ``KIND_OTHER``.
    """
    if position >= len(data):
        return KIND_END
    byte = data[position]
    if byte < 0x80 or not word_chars:
        return KIND_WORD if WORD_BYTES[byte] else KIND_OTHER
    cp = _code_point(data, position, position + _encoded_length(byte))
    return KIND_WORD if cp is not None and cp in word_chars else KIND_OTHER


def prev_kind(data: bytes, position: int, word_chars: frozenset[int]) -> int:
    """The kind of the symbol before ``position``: the beginning, or the character ending there.

    Args:
        data: the text's bytes.
        position: an offset in ``0..len(data)``.
        word_chars: non-ASCII code points that are word characters (empty: bytes only).

    Returns:
        ``PREV_BEGIN``, ``PREV_WORD`` or ``PREV_OTHER``.
    """
    if position == 0:
        return PREV_BEGIN
    byte = data[position - 1]
    if byte < 0x80 or not word_chars:
        return PREV_WORD if WORD_BYTES[byte] else PREV_OTHER
    start = char_start(data, position - 1)
    cp = _code_point(data, start, position)
    return PREV_WORD if cp is not None and cp in word_chars else PREV_OTHER


def char_start(data: bytes, index: int) -> int:
    """The offset of the lead byte of the character that byte ``index`` belongs to.

    Args:
        data: the text's bytes.
        index: an offset in ``0..len(data)`` (``len(data)`` is END and its own start).

    Returns:
        ``index`` itself unless it is a continuation byte of a character that starts at most
        three bytes earlier with a lead byte long enough to reach it.
    """
    if index >= len(data) or not _is_continuation(data[index]):
        return index
    for start in range(index - 1, max(-1, index - _MAX_CHAR_BYTES), -1):  # fuel: 3 bytes back
        byte = data[start]
        if not _is_continuation(byte):
            return start if byte >= 0xC0 and _encoded_length(byte) > index - start else index
    return index
