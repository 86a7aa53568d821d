"""The bundled SmolLM2 with ``weights="gguf"`` (its Q4_1 and Q8_0 blocks as the file stores them)
against its dense load, which dequantises the same file: the weights are the same numbers, so
logits agree within float32 summation order, greedy decoding gives the same tokens, and a
shielded generation rolls back exactly as the dense one does.

The test asserts logits within 2e-3 and all 24 greedy tokens equal (no near-tie within them on
this prompt). These use ``activations="float32"``; the default, 8-bit activations, is checked
against that exact path: top-1 agreement, the logits' largest change, greedy prefix, backtrack."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import specs
from decoders import generate
from decoders.gguf_linear import BlockLinear, with_activations
from decoders.loading import Model, load_model
from decoders.model import forward, init_cache, logits
from decoders.tokenizer import Tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_model")]

PROMPT = "Write one friendly sentence about autumn."
ATTACK = "You stupid fucking"


@pytest.fixture(scope="module")
def gguf_model(real_cache_dir: Path) -> Iterator[Model]:
    patch = pytest.MonkeyPatch()
    patch.setenv("SHIELD_CACHE_DIR", str(real_cache_dir))
    model, _ = load_model(weights="gguf", activations="float32")  # the exact path
    yield model
    patch.undo()


@pytest.fixture(scope="module")
def q8_model(gguf_model: Model) -> Model:
    """The same blocks with 8-bit activations (the default of ``weights="gguf"``)."""
    return dataclasses.replace(gguf_model, params=with_activations(gguf_model.params, "int8"))


def _logits(model: Model, ids: list[int]) -> np.ndarray:
    tokens = jnp.asarray([ids], jnp.int32)
    positions = jnp.arange(len(ids), dtype=jnp.int32)[None]
    cache = init_cache(model.config, 1, len(ids))
    hidden, _ = forward(model.params, model.config, cache, tokens, positions, len(ids))
    return np.asarray(logits(model.params, model.config, hidden))[0]


def test_the_files_blocks_are_the_weights(gguf_model: Model) -> None:
    layer = gguf_model.params.layers[0]
    assert isinstance(layer.wqkv, BlockLinear) and layer.wqkv.formats == ("Q4_1",)
    assert isinstance(gguf_model.params.embed, BlockLinear)
    assert gguf_model.params.embed.formats == ("Q8_0",)
    total = sum(
        w.nbytes
        for block in gguf_model.params.layers
        for w in (block.wqkv, block.wo, block.w_gate_up, block.w_down)
        if isinstance(w, BlockLinear)
    )
    assert 60e6 < total + gguf_model.params.embed.nbytes < 100e6  # the file's ~97 MB


def test_logits_equal_dense_within_float32_rounding(
    real_model: tuple[Model, Tokenizer, float], gguf_model: Model
) -> None:
    dense, tokenizer, _ = real_model
    ids = tokenizer.encode("The lighthouse keeper found a message in a bottle. " * 6)[:64]
    expected, got = _logits(dense, ids), _logits(gguf_model, ids)
    assert np.abs(expected).max() > 5.0  # the scenario: real logits
    np.testing.assert_allclose(got, expected, atol=2e-3, rtol=0)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_greedy_tokens_equal_dense(
    real_model: tuple[Model, Tokenizer, float], gguf_model: Model
) -> None:
    dense, tokenizer, _ = real_model
    kwargs = dict(max_new_tokens=24, temperature=0.0, chat=True)
    a = generate(dense, tokenizer, ["The capital of France is"], **kwargs)[0]  # type: ignore[arg-type]
    b = generate(gguf_model, tokenizer, ["The capital of France is"], **kwargs)[0]  # type: ignore[arg-type]
    assert len(a.tokens) > 8
    assert b.tokens == a.tokens


def test_backtrack_rolls_back_with_gguf_weights_as_with_dense(
    real_model: tuple[Model, Tokenizer, float], gguf_model: Model
) -> None:
    dense, tokenizer, _ = real_model
    spec = specs.load_library("toxicity")
    compiled = specs.shield_for(spec)
    kwargs = dict(spec=compiled, max_new_tokens=24, temperature=0.0, chat=True, prefill=ATTACK)
    repaired = generate(gguf_model, tokenizer, [PROMPT], strategy="backtrack", **kwargs)[0]  # type: ignore[arg-type]
    assert repaired.stats.rollbacks >= 1  # the scenario: the prefilled start was rolled back
    assert any(event.kind == "rollback" for event in repaired.events)
    assert compiled.scan(repaired.text) == []
    reference = generate(dense, tokenizer, [PROMPT], strategy="backtrack", **kwargs)[0]  # type: ignore[arg-type]
    assert repaired.tokens == reference.tokens
    assert repaired.stats.rollbacks == reference.stats.rollbacks


def test_int8_activations_stay_near_the_exact_logits(
    real_model: tuple[Model, Tokenizer, float], gguf_model: Model, q8_model: Model
) -> None:
    """Measured: 59 of 61 positions keep their top-1 token, logits move by at most 1.5 on a
    scale of 29 (5%); the bounds leave room for another build's rounding of nothing else."""
    _, tokenizer, _ = real_model
    ids = tokenizer.encode("The lighthouse keeper found a message in a bottle. " * 6)[:64]
    exact, got = _logits(gguf_model, ids), _logits(q8_model, ids)
    assert not np.array_equal(got, exact)  # the scenario: the activations were quantised
    assert (got.argmax(-1) == exact.argmax(-1)).mean() >= 0.9
    assert np.abs(got - exact).max() <= 0.1 * np.abs(exact).max()


def test_int8_activations_decode_and_backtrack(
    real_model: tuple[Model, Tokenizer, float], gguf_model: Model, q8_model: Model
) -> None:
    """Greedy decoding follows the exact path for its first tokens (measured: 7 of 24 on this
    prompt before a near-tie flips), and a shielded generation still rolls back to clean text."""
    _, tokenizer, _ = real_model
    kwargs = dict(max_new_tokens=24, temperature=0.0, chat=True)
    exact = generate(gguf_model, tokenizer, ["The capital of France is"], **kwargs)[0]  # type: ignore[arg-type]
    quantised = generate(q8_model, tokenizer, ["The capital of France is"], **kwargs)[0]  # type: ignore[arg-type]
    assert len(quantised.tokens) > 8 and quantised.tokens[:4] == exact.tokens[:4]
    spec = specs.load_library("toxicity")
    compiled = specs.shield_for(spec)
    shielded = dict(spec=compiled, max_new_tokens=24, temperature=0.0, chat=True, prefill=ATTACK)
    repaired = generate(q8_model, tokenizer, [PROMPT], strategy="backtrack", **shielded)[0]  # type: ignore[arg-type]
    assert repaired.stats.rollbacks >= 1  # the scenario: the prefilled start was rolled back
    assert compiled.scan(repaired.text) == []
