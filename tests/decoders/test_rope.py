"""RoPE variants against transformers' own: inverse frequencies and attention factors from
``ROPE_INIT_FUNCTIONS`` (default, linear, dynamic, llama3, yarn), and rotated queries from
``LlamaRotaryEmbedding`` + ``apply_rotary_pos_emb``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.rope import ROPE_KINDS, RopeScaling, apply_rope, inverse_frequencies

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

THETAS = (1e4, 5e5, 1e6, 1234.5)
HEAD_DIMS = (8, 16, 64, 128)


def hf_config(head_dim: int, params: dict[str, Any], context: int = 4096) -> Any:
    return transformers.LlamaConfig(
        hidden_size=4 * head_dim,
        num_attention_heads=4,
        head_dim=head_dim,
        max_position_embeddings=context,
        rope_parameters=params,
    )


def hf_frequencies(head_dim: int, params: dict[str, Any]) -> tuple[np.ndarray, float]:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = hf_config(head_dim, dict(params))
    kind = params["rope_type"]
    if kind == "default":
        freq, factor = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        freq, factor = ROPE_INIT_FUNCTIONS[kind](config, "cpu")
    return freq.numpy(), float(factor)


def scaling_of(params: dict[str, Any]) -> RopeScaling:
    names = {"original_max_position_embeddings": "original_max_position"}
    fields = {names.get(k, k): v for k, v in params.items() if k not in ("rope_type", "rope_theta")}
    return RopeScaling(kind=params["rope_type"], **fields)


CASES: list[dict[str, Any]] = [
    {"rope_type": "default"},
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "dynamic", "factor": 2.0},
    {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024},
    {
        "rope_type": "yarn",
        "factor": 8.0,
        "original_max_position_embeddings": 512,
        "beta_fast": 16.0,
        "beta_slow": 2.0,
        "truncate": False,
    },
    {
        "rope_type": "yarn",
        "factor": 40.0,
        "original_max_position_embeddings": 4096,
        "mscale": 1.0,
        "mscale_all_dim": 0.707,
    },
    {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 2048,
        "attention_factor": 1.5,
    },
]


def test_every_kind_is_covered() -> None:
    assert {case["rope_type"] for case in CASES} == set(ROPE_KINDS)


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("theta", THETAS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c["rope_type"])
def test_frequencies_equal_transformers(case: dict[str, Any], theta: float, head_dim: int) -> None:
    params = {**case, "rope_theta": theta}
    want, want_factor = hf_frequencies(head_dim, params)
    got, factor = inverse_frequencies(theta, scaling_of(case), head_dim)
    assert got.shape == want.shape == (head_dim // 2,)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)
    assert factor == pytest.approx(want_factor, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    theta=st.sampled_from(THETAS),
    head_dim=st.sampled_from(HEAD_DIMS),
    factor=st.sampled_from((2.0, 4.0, 8.0, 16.0, 3.0)),
    low=st.sampled_from((0.5, 1.0, 2.0)),
    high=st.sampled_from((3.0, 4.0, 8.0)),
    context=st.sampled_from((32, 100, 2048, 8192)),
    beta=st.sampled_from(((32.0, 1.0), (16.0, 2.0), (64.0, 0.5))),
)
def test_scaled_frequencies_equal_transformers_for_drawn_parameters(
    theta: float,
    head_dim: int,
    factor: float,
    low: float,
    high: float,
    context: int,
    beta: tuple[float, float],
) -> None:
    llama3 = {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": context,
    }
    yarn = {
        "rope_type": "yarn",
        "factor": factor,
        "original_max_position_embeddings": context,
        "beta_fast": beta[0],
        "beta_slow": beta[1],
    }
    for case in (llama3, yarn):
        want, want_factor = hf_frequencies(head_dim, {**case, "rope_theta": theta})
        got, got_factor = inverse_frequencies(theta, scaling_of(case), head_dim)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)
        assert got_factor == pytest.approx(want_factor, rel=1e-12)


def test_rotation_equals_transformers_with_an_attention_factor() -> None:
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    case = {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64}
    config = hf_config(16, {**case, "rope_theta": 1e4}, context=512)
    rotary = LlamaRotaryEmbedding(config)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 16)).astype(np.float32)  # [B, heads, T, D] (torch layout)
    positions = np.array([[0, 1, 2, 90, 300], [7, 8, 9, 10, 500]])
    with torch.no_grad():
        cos, sin = rotary(torch.tensor(x), torch.tensor(positions))
        want, _ = apply_rotary_pos_emb(torch.tensor(x), torch.tensor(x), cos, sin)
    freq, factor = inverse_frequencies(1e4, scaling_of(case), 16)
    assert factor > 1.0  # the scenario: cos and sin are scaled
    ours = apply_rope(
        jnp.asarray(x.transpose(0, 2, 1, 3)), jnp.asarray(positions, jnp.int32), freq, factor
    )
    np.testing.assert_allclose(
        np.asarray(ours).transpose(0, 2, 1, 3), want.numpy(), rtol=1e-5, atol=1e-5
    )
