"""The batch sharded over four host CPU devices decodes the same tokens as one device."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from decoders.loading import Model
from decoders.plain import generate_plain
from decoders.sampling import SamplingConfig
from decoders.sharding import batch_mesh, replicate, shard_state
from decoders.step import run
from decoders.tokenizer import Tokenizer
from shield.errors import DecoderError
from tests.decoders.conftest import prefilled, with_eos


def test_four_host_devices_are_configured() -> None:
    """tests/conftest.py asks XLA for 4 CPU devices; every test below relies on them."""
    assert jax.device_count() >= 4


def test_sharded_equals_single_device(tiny_model_any: Model) -> None:
    model = with_eos(tiny_model_any, ())
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]
    sampling = SamplingConfig(temperature=1.0, top_p=0.9)
    single = run(
        model.params,
        model.config,
        sampling,
        prefilled(model, prompts, seeds=[1, 2, 3, 4]),
        max_new_tokens=10,
    )
    mesh = batch_mesh(jax.devices()[:4])
    state = shard_state(prefilled(model, prompts, seeds=[1, 2, 3, 4]), mesh)
    sharded = run(replicate(model.params, mesh), model.config, sampling, state, max_new_tokens=10)
    assert len(sharded.cache.k.sharding.device_set) == 4
    np.testing.assert_array_equal(single.tokens, sharded.tokens)
    np.testing.assert_array_equal(single.cursor, sharded.cursor)


def test_generate_pads_the_batch_to_the_mesh(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    prompts = ["the cat", "hello world", "or"]
    plain = generate_plain(tiny_model, tiny_tokenizer, prompts, max_new_tokens=6, seed=3)
    sharded = generate_plain(
        tiny_model, tiny_tokenizer, prompts, max_new_tokens=6, seed=3, mesh=True
    )
    assert [r.tokens for r in plain] == [r.tokens for r in sharded]


def test_uneven_batch_is_rejected(tiny_model: Model) -> None:
    with pytest.raises(DecoderError, match="multiple"):
        shard_state(prefilled(tiny_model, [[5], [6], [7]]), batch_mesh(jax.devices()[:4]))
