"""Symbol kinds around a position, by byte (regexes) or by character (word lists' whole words)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shield.automata.alphabet import KIND_END, KIND_OTHER, KIND_WORD, WORD_BYTES
from shield.automata.boundaries import char_start, next_kind, prev_kind
from shield.automata.syntax import PREV_BEGIN, PREV_OTHER, PREV_WORD

RHO = frozenset({0x3C1})


def test_characters_decide_with_word_characters_and_bytes_without() -> None:
    data = "a\u03c1\u4e2d".encode()  # a, rho (2 bytes), CJK (3 bytes)
    assert [next_kind(data, i, RHO) for i in (0, 1, 3, 6)] == [
        KIND_WORD,
        KIND_WORD,
        KIND_OTHER,
        KIND_END,
    ]
    assert [prev_kind(data, i, RHO) for i in (0, 1, 3, 6)] == [
        PREV_BEGIN,
        PREV_WORD,
        PREV_WORD,
        PREV_OTHER,
    ]
    assert next_kind(data, 1, frozenset()) == KIND_OTHER
    assert prev_kind(data, 3, frozenset()) == PREV_OTHER


def test_char_start_finds_the_lead_byte() -> None:
    data = "x\u4e2d\U0001d41f".encode()
    assert [char_start(data, i) for i in range(len(data) + 1)] == [0, 1, 1, 1, 4, 4, 4, 4, 8]
    assert char_start(b"\x80\x80", 1) == 1  # no lead byte: a continuation byte is its own start
    assert char_start(b"\xc3\x80\x80", 2) == 2  # past the end of a 2-byte character


@given(st.binary(max_size=12), st.integers(0, 12))
def test_without_word_characters_kinds_are_the_bytes(data: bytes, position: int) -> None:
    position = min(position, len(data))
    expected_next = (
        KIND_END
        if position == len(data)
        else (KIND_WORD if WORD_BYTES[data[position]] else KIND_OTHER)
    )
    assert next_kind(data, position, frozenset()) == expected_next
    expected_prev = (
        PREV_BEGIN
        if position == 0
        else (PREV_WORD if WORD_BYTES[data[position - 1]] else PREV_OTHER)
    )
    assert prev_kind(data, position, frozenset()) == expected_prev


@given(st.text(alphabet="a \u03c1\u4e2d\U0001d41f", max_size=8))
def test_with_word_characters_kinds_are_the_characters(text: str) -> None:
    words = frozenset({0x3C1, 0x1D41F})
    data = text.encode()
    offsets = [len(text[:i].encode()) for i in range(len(text) + 1)]
    for i, offset in enumerate(offsets):
        after = text[i] if i < len(text) else None
        before = text[i - 1] if i else None
        is_word = lambda c: c == "a" or ord(c) in words  # noqa: E731
        assert next_kind(data, offset, words) == (
            KIND_END if after is None else KIND_WORD if is_word(after) else KIND_OTHER
        )
        assert prev_kind(data, offset, words) == (
            PREV_BEGIN if before is None else PREV_WORD if is_word(before) else PREV_OTHER
        )
