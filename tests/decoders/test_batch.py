"""Batch preparation: prompt-length buckets and shared prefills change no row's tokens.

The prefill's token width is rounded up to ``PROMPT_QUANTUM`` (one compilation for nearby prompt
lengths) and identical rows (the K samples of one prompt) are prefilled once. Both are checked
against the plain preparation (quantum 1, every row fed): the prepared states and the decoded
tokens must be equal, on dense and int8 weights, with sampling.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import pytest

import decoders.batch as batch
from decoders.batch import prepare
from decoders.loading import Model
from decoders.plain import generate_plain
from decoders.tokenizer import Tokenizer

PROMPTS = ["the cat", "the cat", "hello there, the", "the cat", "x", "hello there, the"]
SEEDS = [11, 12, 13, 14, 15, 16]


@pytest.fixture
def prefills(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Records the ``(rows, width)`` of every prefill call."""
    seen: list[tuple[int, int]] = []
    original = batch._prefill

    def spy(params: Any, config: Any, state: Any, tokens: Any, lengths: Any, **kw: Any) -> Any:
        seen.append(tuple(tokens.shape))
        return original(params, config, state, tokens, lengths, **kw)

    monkeypatch.setattr(batch, "_prefill", spy)
    yield seen


def _unbucketed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "PROMPT_QUANTUM", 1)
    monkeypatch.setattr(batch, "SHARE_PROMPTS", False)


@pytest.mark.parametrize("weights", ["dense", "int8"])
def test_buckets_and_shared_prefills_keep_every_rows_tokens(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    prefills: list[tuple[int, int]],
    tiny_tokenizer: Tokenizer,
    weights: str,
) -> None:
    model: Model = request.getfixturevalue(
        "tiny_model" if weights == "dense" else "tiny_int8_model"
    )
    settings: dict[str, Any] = {
        "max_new_tokens": 10,
        "temperature": 1.0,
        "top_p": 0.9,
        "seed": SEEDS,
    }
    shared = generate_plain(model, tiny_tokenizer, PROMPTS, **settings)
    longest = max(len(tiny_tokenizer.encode(p)) for p in PROMPTS)
    # The scenario: one prefill of the 3 distinct prompts, padded to the bucket.
    assert prefills == [(3, batch.PROMPT_QUANTUM)]
    assert longest < batch.PROMPT_QUANTUM
    _unbucketed(monkeypatch)
    plain = generate_plain(model, tiny_tokenizer, PROMPTS, **settings)
    assert prefills[1:] == [(len(PROMPTS), longest)]
    assert [r.tokens for r in shared] == [r.tokens for r in plain]
    assert [r.text for r in shared] == [r.text for r in plain]
    # Sampling differs between rows of one prompt (each keeps its own seed).
    assert len({shared[i].tokens for i in (0, 1, 3)}) > 1


def test_shared_prefill_prepares_the_same_state(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    shared = prepare(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=6, seed=SEEDS).state
    _unbucketed(monkeypatch)
    plain = prepare(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=6, seed=SEEDS).state
    for name in ("tokens", "cursor", "start", "seed", "attempt", "finish", "generated"):
        assert np.array_equal(jax.device_get(getattr(shared, name)), getattr(plain, name)), name
    cursor = np.asarray(plain.cursor)
    # The slots before the pending token hold real keys: equal up to float rounding (the
    # prefill's matrix shapes differ), which is why the decoded tokens are compared above.
    for row, end in enumerate(cursor):
        for got, want in ((shared.cache.k, plain.cache.k), (shared.cache.v, plain.cache.v)):
            np.testing.assert_allclose(
                np.asarray(got[:, row, :, : end - 1]), np.asarray(want[:, row, :, : end - 1]),
                rtol=1e-5, atol=1e-5,
            )  # fmt: skip


def test_distinct_prompts_are_padded_to_one_bucket(
    prefills: list[tuple[int, int]], tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    first = generate_plain(tiny_model, tiny_tokenizer, ["a b", "hello"], max_new_tokens=3, seed=1)
    second = generate_plain(tiny_model, tiny_tokenizer, ["x y z w", "v"], max_new_tokens=3, seed=1)
    assert len(first) == len(second) == 2
    assert prefills == [(2, batch.PROMPT_QUANTUM), (2, batch.PROMPT_QUANTUM)]
