"""Token lifting: token walks equal byte walks; rows, masks and tokenizer byte maps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import shield
from shield.lifting import byte_level_decode
from shield.rules import MatchOptions, RegexRule, WordsRule
from tests.shield.helpers import Spec

VOCAB = (
    b"",
    b"f",
    b"u",
    b"ck",
    b"fu",
    b"fuck",
    b" ",
    b"!",
    b"a",
    b"cat",
    b"s",
    b"\xc3",
    b"\xa9",
    b"123",
    b"4",
)


def _guard() -> shield.Shield:
    rules = (
        WordsRule(
            id="w",
            words=("fuck", "cat"),
            match=MatchOptions(case_insensitive=True, whole_word=True),
        ),
        RegexRule(id="d", pattern=r"\d{4}"),
    )
    return shield.compile(Spec("t", rules))


GUARD = _guard()
TOKENS = GUARD.lift(VOCAB, special=[i == 0 for i in range(len(VOCAB))])


@given(st.lists(st.integers(1, len(VOCAB) - 1), max_size=12))
@settings(max_examples=60)
def test_token_walk_equals_byte_walk(ids: list[int]) -> None:
    states = TOKENS.initial.copy()
    for t in ids:
        states = TOKENS.step_token(states, t)
    data = b"".join(VOCAB[t] for t in ids)
    by_bytes = TOKENS.initial.copy()
    for c in range(len(by_bytes)):
        for byte in data:
            by_bytes[c] = TOKENS.byte_transitions[c, by_bytes[c], byte]
    assert np.array_equal(states, by_bytes)
    # Components may merge several rules; together they violate exactly when some rule does.
    components = np.arange(len(states))
    some_rule = any(
        rule.dfa.accepting[rule.dfa.walk(rule.dfa.initial, data)] for rule in GUARD.compiled
    )
    assert bool(TOKENS.violating[components, states].any()) == some_rule


@given(st.lists(st.integers(1, len(VOCAB) - 1), max_size=8))
@settings(max_examples=40)
def test_next_state_row_agrees_with_step_token(ids: list[int]) -> None:
    states = TOKENS.initial.copy()
    for t in ids:
        states = TOKENS.step_token(states, t)
    row = TOKENS.next_state_row(states)
    components = TOKENS.byte_transitions.shape[0]
    assert row.shape == (len(VOCAB), components)
    for t in range(len(VOCAB)):
        assert np.array_equal(row[t], TOKENS.step_token(states, t))
    mask = TOKENS.allowed_mask(states)
    for t in range(len(VOCAB)):
        after = TOKENS.step_token(states, t)
        assert mask[t] == (not TOKENS.violating[np.arange(components), after].any())


def test_tables_have_the_device_shapes() -> None:
    c, s, k = TOKENS.byte_transitions.shape
    assert 1 <= c <= 2 and k == 257 and TOKENS.violating.shape == (c, s)
    assert TOKENS.token_matrix.shape[0] == len(VOCAB) and TOKENS.token_lengths[5] == 4
    assert TOKENS.byte_transitions.dtype == np.int32 and TOKENS.initial.dtype == np.int32


def test_whole_word_blocks_the_confirming_token() -> None:
    fu = TOKENS.step_token(TOKENS.initial, 4)
    fuck = TOKENS.step_token(fu, 3)
    mask = TOKENS.allowed_mask(fuck)
    assert not mask[6] and not mask[7] and mask[10]
    assert TOKENS.end_violates(fuck)


def test_byte_level_decoding() -> None:
    assert byte_level_decode("\u0120hello") == b" hello"
    assert byte_level_decode("\u010a") == b"\n"
    assert byte_level_decode("\u00c3\u00a9") == "é".encode()


def test_tokenizers_byte_level_bpe() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"a": 0, "b": 1, "\u0120": 2, "\u0120a": 3, "<eos>": 4}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("\u0120", "a")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>"])
    data, special = shield.token_bytes(tok)
    assert data == (b"a", b"b", b" ", b" a", b"")
    assert special == (False, False, False, False, True)
