"""The vocabulary cache: a hit equals the uncached build (and lifts to the same shield), another
tokenizer misses, a damaged entry is rebuilt, and the opt-outs write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

import shield.vocabulary as vocabulary
from shield.store import CACHE_DIR_ENV, NO_CACHE_ENV, caching, read_entry
from shield.vocabulary import Vocabulary, build_vocabulary, token_bytes, vocabulary_of
from tests.shield.helpers import words_shield


def _tokenizer(*extra: str) -> Tokenizer:
    """A byte-level BPE over every byte, a few merges and one special token."""
    alphabet = sorted(vocabulary.unicode_to_byte())  # the 256 byte-level characters
    merges = [("\u0120", "b"), ("\u0120b", "a"), ("\u0120ba", "d"), ("a", "d"), *extra]
    vocab = {c: i for i, c in enumerate(alphabet)}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>"])
    return tok


def _assert_equal(found: Vocabulary, expected: Vocabulary) -> None:
    assert found.tokens == expected.tokens
    assert found.special == expected.special
    for a, b in ((found.matrix, expected.matrix), (found.lengths, expected.lengths)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for a, b in zip(found.trie, expected.trie, strict=True):
        if isinstance(b, list):
            assert a == b
        else:
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    return tmp_path / "vocabulary"


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz"))


def test_a_hit_equals_the_uncached_build(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = _tokenizer()
    expected = build_vocabulary(*token_bytes(tok))
    with caching(True):
        first = vocabulary_of(tok)  # miss: builds and stores
        assert len(_entries(cache_dir)) == 1
        monkeypatch.setattr(vocabulary, "token_bytes", _never)
        second = vocabulary_of(tok)  # hit: nothing rebuilt (token_bytes would raise)
    _assert_equal(first, expected)
    _assert_equal(second, expected)


def _never(*_: object) -> None:
    raise AssertionError("rebuilt although the entry was valid")


def test_a_hit_lifts_to_the_same_shield(cache_dir: Path) -> None:
    compiled = words_shield(("bad", "ad"))
    tok = _tokenizer()
    fresh = compiled.lift(tok)
    with caching(True):
        compiled.lift(tok)
        assert len(_entries(cache_dir)) == 1
        cached = compiled.lift(tok)  # lifted through the stored vocabulary
    np.testing.assert_array_equal(cached.token_matrix, fresh.token_matrix)
    assert cached.token_bytes == fresh.token_bytes
    states = fresh.initial
    for token in tok.encode(" bad ad bad").ids:
        np.testing.assert_array_equal(cached.next_state_row(states), fresh.next_state_row(states))
        np.testing.assert_array_equal(cached.allowed_mask(states), fresh.allowed_mask(states))
        states = fresh.step_token(states, token)
        np.testing.assert_array_equal(
            cached.step_token(fresh.initial, token), fresh.step_token(fresh.initial, token)
        )
    assert fresh.violates(states)


def test_another_tokenizer_misses(cache_dir: Path) -> None:
    with caching(True):
        vocabulary_of(_tokenizer())
        other = vocabulary_of(_tokenizer(("b", "a")))  # one more merge: another key
    assert len(_entries(cache_dir)) == 2
    _assert_equal(other, build_vocabulary(*token_bytes(_tokenizer(("b", "a")))))


@pytest.mark.parametrize("how", ["truncated", "flipped", "garbage"])
def test_a_damaged_entry_is_rebuilt(cache_dir: Path, how: str) -> None:
    tok = _tokenizer()
    with caching(True):
        vocabulary_of(tok)
        (path,) = _entries(cache_dir)
        data = path.read_bytes()
        damaged = {
            "truncated": data[: len(data) // 2],
            "flipped": data[:-40] + bytes([data[-40] ^ 0xFF]) + data[-39:],
            "garbage": b"not an entry",
        }[how]
        path.write_bytes(damaged)
        assert read_entry(path, path.stem).status == "corrupt"  # the scenario: a bad file
        rebuilt = vocabulary_of(tok)
    _assert_equal(rebuilt, build_vocabulary(*token_bytes(tok)))
    assert read_entry(path, path.stem).status == "hit"  # rewritten whole


def test_the_opt_outs_write_nothing(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = _tokenizer()
    vocabulary_of(tok)  # a library call outside caching(True)
    with caching(False):
        vocabulary_of(tok)
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    with caching(True):
        vocabulary_of(tok)
    assert not cache_dir.exists()
