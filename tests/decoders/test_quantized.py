"""int8 weights: the quantiser's error bound, the native kernel against a float64 reference and
against XLA's dense product, the quantised model against the dense model it rounds to, and the
build's errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from decoders.linear import BLOCK, LEVELS, QuantizedLinear, dequantize, project, quantize_linear
from decoders.loading import Model, load_model
from decoders.model import Params, forward, init_cache, logits
from decoders.native import NativeKernelError, build_kernel, compiler_command
from decoders.quantize import quantize_params, weight_format
from decoders.weights import named_from_params
from shield.errors import DecoderError
from tests.decoders.kernel_support import run_check, variant_compiler

finite = st.floats(-4.0, 4.0, allow_nan=False, width=32)


@settings(deadline=None)
@given(
    weight=hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=70), elements=finite
    )
)
def test_quantisation_error_is_at_most_half_a_level(weight: np.ndarray) -> None:
    restored = np.asarray(dequantize(quantize_linear(weight)))
    rows = weight.T
    for block in range(0, rows.shape[1], BLOCK):
        part = rows[:, block : block + BLOCK]
        span = part.max(axis=1) - part.min(axis=1)
        error = np.abs(restored.T[:, block : block + BLOCK] - part).max(axis=1)
        # Half a level, plus float32 rounding of the offset and scale.
        bound = span / (2 * LEVELS) + 1e-6 * (1.0 + np.abs(part).max(axis=1))
        assert (error <= bound).all()


def test_constant_and_zero_blocks_are_exact() -> None:
    weight = np.zeros((40, 3), np.float32)
    weight[:, 1] = 0.75
    weight[:32, 2] = -2.0
    np.testing.assert_array_equal(np.asarray(dequantize(quantize_linear(weight))), weight)


def _reference(x: np.ndarray, weight: QuantizedLinear) -> np.ndarray:
    dense = np.asarray(dequantize(weight)).astype(np.float64)
    return x.astype(np.float64) @ dense


@settings(deadline=None, max_examples=60)
@given(
    m=st.integers(1, 9),
    k=st.integers(1, 80),
    n=st.sampled_from([1, 3, 4, 5, 17, 64, 65, 200]),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_kernel_matches_float64(m: int, k: int, n: int, seed: int) -> None:
    """Shapes off every tile edge: k not a multiple of 16 or 32, n not of 4 or of a chunk."""
    rng = np.random.default_rng(seed)
    weight = quantize_linear(rng.standard_normal((k, n)).astype(np.float32))
    x = rng.standard_normal((m, k)).astype(np.float32)
    got = np.asarray(jax.jit(project)(jnp.asarray(x), weight))
    expected = _reference(x, weight)
    scale = np.abs(x).astype(np.float64) @ np.abs(np.asarray(dequantize(weight)))
    assert (np.abs(got - expected) <= 1e-5 * (scale + 1.0)).all()


def test_native_kernel_on_leading_axes_and_large_products() -> None:
    rng = np.random.default_rng(0)
    weight = quantize_linear(rng.standard_normal((576, 3072)).astype(np.float32))
    x = rng.standard_normal((2, 3, 576)).astype(np.float32)
    got = np.asarray(jax.jit(project)(jnp.asarray(x), weight))
    assert got.shape == (2, 3, 3072)
    expected = _reference(x.reshape(6, 576), weight).reshape(2, 3, 3072)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_bfloat16_activations_take_the_portable_path() -> None:
    rng = np.random.default_rng(1)
    weight = quantize_linear(rng.standard_normal((64, 8)).astype(np.float32))
    x = rng.standard_normal((2, 64)).astype(np.float32)
    got = np.asarray(project(jnp.asarray(x, jnp.bfloat16), weight)).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _reference(x, weight), rtol=0.05, atol=0.5)


def _dequantized_params(params: Params) -> Params:
    """Dense parameters holding exactly the values the quantised ones compute with."""

    def dense(value: object) -> object:
        return dequantize(value) if isinstance(value, QuantizedLinear) else value

    layers = tuple(
        dataclasses.replace(
            layer, **{f: dense(getattr(layer, f)) for f in ("wqkv", "wo", "w_gate_up", "w_down")}
        )
        for layer in params.layers
    )
    embed = params.embed
    return Params(
        embed=dequantize(embed).T if isinstance(embed, QuantizedLinear) else embed,
        layers=layers,
        final_norm=params.final_norm,
        lm_head=None if params.lm_head is None else dense(params.lm_head),
    )


@pytest.mark.parametrize("tie", [False, True])
def test_quantised_model_equals_its_dequantised_dense_model(tiny_model: Model, tie: bool) -> None:
    """Differential: kernel and quantised embeddings vs XLA's dense path on the same values."""
    config = dataclasses.replace(tiny_model.config, tie_embeddings=tie)
    params = tiny_model.params
    if tie:
        params = dataclasses.replace(params, lm_head=None)
    quantised = quantize_params(params)
    assert weight_format(quantised) == "int8" and weight_format(params) == "dense"
    dense = _dequantized_params(quantised)
    tokens = jnp.asarray([[5, 40, 7, 90, 11], [12, 13, 14, 15, 16]], jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(5, dtype=jnp.int32), (2, 5))

    def run(p: Params) -> np.ndarray:
        hidden, _ = forward(p, config, init_cache(config, 2, 16), tokens, positions, 16)
        return np.asarray(logits(p, config, hidden))

    np.testing.assert_allclose(run(quantised), run(dense), rtol=1e-4, atol=1e-4)


def test_quantised_parameters_refuse_requantisation_and_export(tiny_int8_model: Model) -> None:
    with pytest.raises(DecoderError, match="already quantised"):
        quantize_params(tiny_int8_model.params)
    with pytest.raises(TypeError, match="dense"):
        named_from_params(tiny_int8_model.config, tiny_int8_model.params)


def test_unknown_weight_format_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DecoderError, match=r"weights must be one of \('dense', 'int8', 'gguf'\)"):
        load_model(tmp_path / "any.gguf", weights="int4")


def test_build_is_cached_per_source_and_compiler(tmp_path: Path) -> None:
    first = build_kernel(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert build_kernel(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".build-")]


@pytest.mark.parametrize(
    ("compiler", "message"), [("false", "exited with 1"), ("/nonexistent/c++", "failed")]
)
def test_a_broken_compiler_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiler: str, message: str
) -> None:
    monkeypatch.setenv("SHIELD_CXX", compiler)
    assert compiler_command() == [compiler]
    with pytest.raises(NativeKernelError, match=message) as caught:
        build_kernel(tmp_path)
    assert "SHIELD_CXX" in str(caught.value) and "weights='dense'" in str(caught.value)
    assert not [p for p in tmp_path.rglob("*.so")]


#: Run in a fresh process (the kernel is registered once per process): the kernel against a
#: float64 reference on shapes off every tile edge; prints the worst error and a checksum.
_VARIANT_CHECK = """
import numpy as np, jax, jax.numpy as jnp
from decoders.linear import dequantize, project, quantize_linear
rng = np.random.default_rng(0)
worst, checksum = 0.0, 0.0
for m, k, n in [(1, 576, 700), (3, 70, 37), (5, 33, 130), (8, 96, 64), (4, 7, 5)]:
    w = quantize_linear(rng.standard_normal((k, n)).astype(np.float32))
    x = rng.standard_normal((m, k)).astype(np.float32)
    got = np.asarray(jax.jit(project)(jnp.asarray(x), w))
    dense = np.asarray(dequantize(w)).astype(np.float64)
    bound = np.abs(x).astype(np.float64) @ np.abs(dense) + 1.0
    worst = max(worst, float((np.abs(got - x.astype(np.float64) @ dense) / bound).max()))
    checksum += float(got.astype(np.float64).sum())
print(worst, repr(checksum))
"""


def _variant(env: dict[str, str]) -> tuple[float, str]:

    worst, checksum = run_check(_VARIANT_CHECK, env).split()
    return float(worst), checksum


@pytest.mark.parametrize(
    "flags", ["-mno-avx512f", "-mno-avx512f -mno-avx2 -mno-fma"], ids=["avx2", "scalar"]
)
def test_every_instruction_set_variant_computes_the_same_products(
    tmp_path: Path, flags: str
) -> None:
    """The AVX2 and the portable builds, forced on this CPU by disabling the wider units.

    A system ``c++`` is preferred when there is one: zig rebuilds its C++ runtime (a minute) for
    every new set of CPU features, the system compiler does not.
    """
    worst, _ = _variant({"SHIELD_CXX": variant_compiler(flags), "SHIELD_CACHE_DIR": str(tmp_path)})
    assert worst <= 1e-5


def test_kernel_threads_can_be_capped() -> None:
    """SHIELD_KERNEL_THREADS=1 runs the caller alone; the results are bit for bit the same."""
    one = _variant({"SHIELD_KERNEL_THREADS": "1"})
    two = _variant({"SHIELD_KERNEL_THREADS": "2"})
    assert one == two and one[0] <= 1e-5


def test_no_compiler_at_all_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import decoders.native as native

    monkeypatch.delenv("SHIELD_CXX", raising=False)
    monkeypatch.setattr(native.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(NativeKernelError, match="none was found") as caught:
        compiler_command()
    assert "weights='dense'" in str(caught.value)
