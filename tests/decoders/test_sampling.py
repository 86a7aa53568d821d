"""Sampling laws: greedy is argmax, draws stay in the top-k / top-p support, keys are a pure
function of (seed, position, attempt)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.sampling import SamplingConfig, row_keys, sample
from shield.errors import DecoderError

ROWS, VOCAB = 4, 32


def logits_for(seed: int) -> jax.Array:
    return 3.0 * jax.random.normal(jax.random.key(seed), (ROWS, VOCAB), jnp.float32)


def keys(seed: int, position: int = 0, attempt: int = 0) -> jax.Array:
    fill = jnp.ones((ROWS,), jnp.int32)
    return row_keys(jnp.full((ROWS,), seed, jnp.uint32), fill * position, fill * attempt)


@given(st.integers(0, 10_000))
def test_greedy_is_argmax(seed: int) -> None:
    logits = logits_for(seed)
    chosen = sample(logits, keys(seed), SamplingConfig(temperature=0.0))
    np.testing.assert_array_equal(chosen, jnp.argmax(logits, axis=-1))


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.integers(1, 8))
def test_top_k_draws_from_the_k_best(seed: int, k: int) -> None:
    logits = logits_for(seed)
    best = np.argsort(-np.asarray(logits), axis=-1)[:, :k]
    for position in range(5):
        chosen = np.asarray(sample(logits, keys(seed, position), SamplingConfig(top_k=k)))
        assert all(chosen[r] in best[r] for r in range(ROWS))


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.floats(0.05, 0.95))
def test_top_p_draws_from_the_nucleus(seed: int, p: float) -> None:
    logits = np.asarray(logits_for(seed))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for position in range(5):
        chosen = np.asarray(
            sample(jnp.asarray(logits), keys(seed, position), SamplingConfig(top_p=p))
        )
        for r in range(ROWS):
            above = probs[r][probs[r] > probs[r, chosen[r]]].sum()
            assert above < p + 1e-6  # the drawn token is inside the smallest set reaching p


def test_same_seed_same_tokens_and_keys_depend_on_all_three() -> None:
    logits = jnp.zeros((ROWS, VOCAB), jnp.float32)  # uniform: the key alone decides
    config = SamplingConfig(temperature=1.0)
    base = sample(logits, keys(1, 5, 0), config)
    np.testing.assert_array_equal(base, sample(logits, keys(1, 5, 0), config))
    data = jax.random.key_data(keys(1, 5, 0))
    assert not np.array_equal(data, jax.random.key_data(keys(1, 5, 1)))
    assert not np.array_equal(data, jax.random.key_data(keys(1, 6, 0)))
    assert not np.array_equal(data, jax.random.key_data(keys(2, 5, 0)))


def test_keys_do_not_depend_on_the_batch() -> None:
    one = row_keys(jnp.array([9], jnp.uint32), jnp.array([3], jnp.int32), jnp.array([0], jnp.int32))
    many = row_keys(
        jnp.array([1, 9], jnp.uint32), jnp.array([7, 3], jnp.int32), jnp.array([2, 0], jnp.int32)
    )
    np.testing.assert_array_equal(jax.random.key_data(one[0]), jax.random.key_data(many[1]))


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}]
)
def test_invalid_sampling_configs_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(DecoderError):
        SamplingConfig(**kwargs)  # type: ignore[arg-type]
