"""Where a response may be cut: checkpoint positions at token, word or sentence granularity.

Positions count tokens of the response (the prompt is never part of it): position ``p`` is the
boundary before ``tokens[p]``, so ``0`` is the start of the response and ``len(tokens)`` its end.
Position 0 is a checkpoint at every granularity, so a rewind always has somewhere to go.

Word and sentence boundaries are decided from the bytes on both sides of the boundary, which is why
the token *at* ``p`` must be known: with byte-level BPE the space that separates two words travels
at the start of the second word's token (``" word"``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "SENTENCE_END_BYTES",
    "WHITESPACE_BYTES",
    "checkpoint_positions",
    "closes_sentence",
    "is_checkpoint",
    "is_word_byte",
]

#: Bytes that close a sentence (and so a classifier window of scope "sentence").
SENTENCE_END_BYTES = frozenset(b".!?\n")
WHITESPACE_BYTES = frozenset(b" \t\r\n\x0b\x0c")


def is_word_byte(byte: int) -> bool:
    """Whether ``byte`` can be part of a word: ASCII letters, digits, ``_`` and any non-ASCII byte.

    Non-ASCII bytes count as word bytes so that a boundary is never placed inside a multi-byte
    UTF-8 character, and letters of other scripts join words.

    Args:
        byte: an integer in 0..255.

    Returns:
        True for word bytes.
    """
    return (
        byte >= 0x80
        or byte == 0x5F
        or 0x30 <= byte <= 0x39
        or 0x41 <= byte <= 0x5A
        or 0x61 <= byte <= 0x7A
    )


def closes_sentence(token: bytes) -> bool:
    """Whether a token contains a byte that ends a sentence (``.``, ``!``, ``?`` or a newline).

    Args:
        token: the token's bytes.

    Returns:
        True when a sentence window closes with this token.
    """
    return any(byte in SENTENCE_END_BYTES for byte in token)


def is_checkpoint(tokens: Sequence[bytes], position: int, granularity: str) -> bool:
    """Whether ``position`` is a checkpoint of the response ``tokens`` at ``granularity``.

    Args:
        tokens: the byte strings of the response tokens; ``tokens[position]`` must exist unless
            ``position`` is 0.
        position: a boundary, ``0 <= position < len(tokens)`` (or 0 for an empty response).
        granularity: ``"token"``, ``"word"`` or ``"sentence"``.

    Returns:
        True when the response may be cut at ``position``.

    Raises:
        ValueError: the position is out of range or the granularity unknown.
    """
    if position == 0:
        return True
    if not 0 < position < len(tokens):
        raise ValueError(
            f"checkpoint position must be in 0..{max(len(tokens) - 1, 0)} (the token after it must "
            f"be known); got {position}"
        )
    if granularity == "token":
        return True
    before, after = tokens[position - 1], tokens[position]
    if granularity == "word":
        last = before[-1:] or b" "
        first = after[:1] or b" "
        return not is_word_byte(last[0]) or not is_word_byte(first[0])
    if granularity == "sentence":
        return closes_sentence(before) and (
            not after or after[0] in WHITESPACE_BYTES or before[-1:] in (b" ", b"\n")
        )
    raise ValueError(f"granularity must be 'token', 'word' or 'sentence'; got {granularity!r}")


def checkpoint_positions(tokens: Sequence[bytes], granularity: str) -> list[int]:
    """All checkpoint positions of ``tokens`` whose following token is known, ascending.

    Args:
        tokens: the byte strings of the response tokens.
        granularity: ``"token"``, ``"word"`` or ``"sentence"``.

    Returns:
        Positions ``p`` in ``0..len(tokens) - 1`` (and ``[0]`` for an empty response).
    """
    if not tokens:
        return [0]
    return [p for p in range(len(tokens)) if is_checkpoint(tokens, p, granularity)]
