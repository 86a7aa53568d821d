"""Fixtures of the decoder tests: a tiny random Llama (dense and int8) with a tiny byte-level
tokenizer, and the real SmolLM2 loaded once per session (shared by every test of the
``real_model`` xdist group)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoders.config import DecodeConfig, ModelConfig
from decoders.loading import Model, load_model
from decoders.model import init_params
from decoders.quantize import quantize_params
from decoders.state import DecodeState, init_state
from decoders.step import prefill
from decoders.tokenizer import Tokenizer, tokenizer_json_from_gguf
from shield.lifting import unicode_to_byte

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MERGES = ("Ġ t", "h e", "Ġt he", "l l", "o r")


def tiny_vocabulary() -> tuple[list[str], list[str], list[int]]:
    """Specials, the 256 byte symbols, then one token per merge (GGUF metadata form)."""
    byte_symbols = sorted(unicode_to_byte(), key=lambda ch: unicode_to_byte()[ch])
    merged = ["".join(m.split(" ")) for m in MERGES]
    tokens = [*SPECIALS, *byte_symbols, *merged]
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return tokens, list(MERGES), types


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    tokens, merges, types = tiny_vocabulary()
    return Tokenizer(
        tokenizer_json_from_gguf(tokens, merges, types),
        eos_token_ids=(2, 0),
        chat_template=TEMPLATE,
    )


@pytest.fixture(scope="session")
def tiny_config(tiny_tokenizer: Tokenizer) -> ModelConfig:
    return ModelConfig(
        vocab_size=tiny_tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        rope_theta=1000.0,
        tie_embeddings=False,
        eos_token_ids=(2, 0),
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_config: ModelConfig) -> Model:
    params = init_params(tiny_config, jax.random.key(7), scale=0.3)
    return Model(config=tiny_config, params=params, source="tiny")


@pytest.fixture(scope="session")
def tiny_int8_model(tiny_model: Model) -> Model:
    """The tiny model with int8 weights (the native kernel on the CPU)."""
    return dataclasses.replace(tiny_model, params=quantize_params(tiny_model.params))


@pytest.fixture(scope="session", params=("dense", "int8"))
def tiny_model_any(
    request: pytest.FixtureRequest, tiny_model: Model, tiny_int8_model: Model
) -> Model:
    """The tiny model in each weight format, for laws that must hold for both."""
    return tiny_int8_model if request.param == "int8" else tiny_model


def prefilled(
    model: Model, prompts: list[list[int]], slots: int = 64, seeds: list[int] | None = None
) -> DecodeState:
    """A state with ``prompts`` (token lists of any lengths) prefilled."""
    lengths = np.array([len(p) for p in prompts], np.int32)
    tokens = np.zeros((len(prompts), int(lengths.max())), np.int32)
    for row, prompt in enumerate(prompts):
        tokens[row, : len(prompt)] = prompt
    decode = DecodeConfig(batch_size=len(prompts), max_slots=slots)
    state = init_state(model.config, decode, None if seeds is None else np.array(seeds, np.uint32))
    return prefill(
        model.params, model.config, state, jnp.asarray(tokens), jnp.asarray(lengths), window=slots
    )


def with_eos(model: Model, eos: tuple[int, ...]) -> Model:
    """The same model with other end-of-sequence ids."""
    return dataclasses.replace(model, config=dataclasses.replace(model.config, eos_token_ids=eos))


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shield-cache")


@pytest.fixture(scope="session")
def real_model(real_cache_dir: Path) -> Iterator[tuple[Model, Tokenizer, float]]:
    """The bundled SmolLM2 (float32), loaded cold once: (model, tokenizer, cold seconds)."""
    import time

    patch = pytest.MonkeyPatch()
    patch.setenv("SHIELD_CACHE_DIR", str(real_cache_dir))
    began = time.perf_counter()
    model, tokenizer = load_model()
    yield model, tokenizer, time.perf_counter() - began
    patch.undo()


@pytest.fixture(scope="session")
def real_int8_model(real_model: tuple[Model, Tokenizer, float]) -> Model:
    """The bundled SmolLM2 with int8 weights, quantised from the session's dense load."""
    return dataclasses.replace(real_model[0], params=quantize_params(real_model[0].params))
