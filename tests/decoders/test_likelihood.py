"""Teacher-forced likelihood against the decoder's own incremental path (prefill, then one step
per token through the KV cache), on a tiny random Llama with a tiny byte-level tokenizer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoders.config import ModelConfig
from decoders.likelihood import continuation_nll, prompt_ids
from decoders.loading import Model
from decoders.model import init_params
from decoders.state import append
from decoders.step import decode_logits
from decoders.tokenizer import Tokenizer, tokenizer_json_from_gguf
from shield.errors import BudgetError
from tests.decoders.conftest import TEMPLATE, prefilled, tiny_vocabulary


@pytest.fixture(scope="module")
def tiny() -> tuple[Model, Tokenizer]:
    tokens, merges, types = tiny_vocabulary()
    tokenizer = Tokenizer(
        tokenizer_json_from_gguf(tokens, merges, types),
        eos_token_ids=(2, 0),
        chat_template=TEMPLATE,
    )
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=48, num_layers=2,
        num_heads=4, num_kv_heads=2, head_dim=8, rope_theta=1000.0, tie_embeddings=False,
        eos_token_ids=(2, 0), max_position=96,
    )  # fmt: skip
    params = init_params(config, jax.random.key(3), scale=0.3)
    return Model(config=config, params=params, source="tiny"), tokenizer


def _incremental_nll(model: Model, prompt: list[int], continuation: list[int]) -> float:
    state = prefilled(model, [prompt], slots=64)
    total = 0.0
    for token in continuation:
        logits, state = decode_logits(model.params, model.config, state, window=64)
        total -= float(jax.nn.log_softmax(logits[0])[token])
        state = append(state, jnp.asarray([token], jnp.int32))
    return total


@pytest.mark.parametrize("chat", [False, True])
def test_matches_the_incremental_decoder(tiny: tuple[Model, Tokenizer], chat: bool) -> None:
    model, tokenizer = tiny
    prompts = ["the cat", "hello there, the", "x", "or"]
    continuations = [
        tokenizer.encode(t, add_bos=False) for t in (" the end", " ll", "", " a b c d")
    ]
    got = continuation_nll(model, tokenizer, prompts, continuations, chat=chat, batch_size=3)
    assert [count for _, count in got] == [len(c) for c in continuations]
    assert got[2] == (0.0, 0)
    for prompt, continuation, (nll, _) in zip(prompts, continuations, got, strict=True):
        if continuation:
            expected = _incremental_nll(
                model, prompt_ids(tokenizer, prompt, chat=chat), continuation
            )
            assert nll == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert all(np.isfinite(nll) and nll >= 0 for nll, _ in got)


def test_too_long_for_the_context(tiny: tuple[Model, Tokenizer]) -> None:
    model, tokenizer = tiny
    with pytest.raises(BudgetError, match="exceeds the model's context of 96 tokens"):
        continuation_nll(model, tokenizer, ["the"], [[5] * 100])


def test_rows_sharing_a_prompt_feed_it_once(
    tiny: tuple[Model, Tokenizer], monkeypatch: pytest.MonkeyPatch
) -> None:
    import decoders.likelihood as likelihood

    model, tokenizer = tiny
    passes: list[tuple[tuple[int, ...], int, int]] = []
    original = likelihood._pass

    def spy(model: Model, prompt: Any, continuations: Any, rows: int) -> Any:
        passes.append((tuple(prompt), len(continuations), rows))
        return original(model, prompt, continuations, rows)

    monkeypatch.setattr(likelihood, "_pass", spy)
    texts = (" the end", " ll", "", " a b c d", " or", " the", " x y z w v u t s r q p")
    prompts = ["the cat", "or", "the cat", "the cat", "or", "the cat", "the cat"]
    continuations = [tokenizer.encode(t, add_bos=False) for t in texts]
    got = continuation_nll(model, tokenizer, prompts, continuations, batch_size=3)
    cat, other = (
        prompt_ids(tokenizer, "the cat", chat=False),
        prompt_ids(tokenizer, "or", chat=False),
    )
    # The scenario: "the cat" (4 non-empty rows) in passes of 3 and 1, "or" in one pass of 2
    # (rows padded to a multiple of ROW_QUANTUM, at most batch_size).
    assert passes == [(tuple(cat), 3, 3), (tuple(cat), 1, 3), (tuple(other), 2, 3)]
    assert got[2] == (0.0, 0)
    for prompt, continuation, (nll, count) in zip(prompts, continuations, got, strict=True):
        assert count == len(continuation)
        if continuation:
            expected = _incremental_nll(
                model, prompt_ids(tokenizer, prompt, chat=False), continuation
            )
            assert nll == pytest.approx(expected, rel=1e-4, abs=1e-4)
