"""GGUF block weights against the gguf package: the jnp decoder and the native kernel's weights
equal ``gguf.quants.dequantize`` bit for bit, products equal float64 products of those weights
within float32 rounding on shapes off every tile edge, and un-permuting whole block rows is
un-permuting the weights.

Blocks are random bytes with random finite float16 scales (every byte pattern of the quants is a
valid block), so the K-quants, which the gguf package cannot quantise, are covered the same way.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoders.gguf_formats import FORMATS, dequantize_rows
from decoders.gguf_linear import BlockLinear, dense_rows, embed_block_rows, project_blocks
from decoders.sources import unpermute_qk
from shield.errors import DecoderError
from tests.decoders.kernel_support import run_variant

#: Byte offsets of each format's float16 fields within a block.
HALVES = {"Q4_0": (0,), "Q4_1": (0, 2), "Q8_0": (0,), "Q4_K": (0, 2), "Q6_K": (208,)}
#: (batch, blocks per row, rows): batches below, at and above the kernel's 8-row tile, odd
#: row counts (the 2-row tile's edge) and chunks of 64 rows with a remainder.
SHAPES = [(1, 3, 37), (2, 1, 1), (8, 2, 64), (9, 2, 130), (5, 1, 3), (16, 1, 5)]


def random_blocks(name: str, rows: int, blocks: int, seed: int = 0) -> np.ndarray:
    """``uint8 [rows, blocks * block_bytes]``: random quants, random finite float16 scales."""
    rng = np.random.default_rng(seed)
    fmt = FORMATS[name]
    raw = rng.integers(0, 256, (rows, blocks, fmt.block_bytes), dtype=np.uint8)
    for offset in HALVES[name]:
        halves = rng.normal(0.0, 0.05, (rows, blocks)).astype(np.float16)
        raw[..., offset : offset + 2] = halves[..., None].view(np.uint8)
    return raw.reshape(rows, -1)


def reference(blocks: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[name]))


def bits(array: np.ndarray | jax.Array) -> np.ndarray:
    return np.asarray(array, np.float32).view(np.uint32)


@pytest.mark.parametrize("name", list(FORMATS))
def test_jnp_decoder_is_gguf_bit_for_bit(name: str) -> None:
    blocks = random_blocks(name, rows=6, blocks=3)
    expected = reference(blocks, name)
    assert expected.shape == (6, 3 * FORMATS[name].block_weights)  # the scenario: whole rows
    np.testing.assert_array_equal(bits(dequantize_rows(jnp.asarray(blocks), name)), bits(expected))
    jitted = jax.jit(dequantize_rows, static_argnums=1)(jnp.asarray(blocks), name)
    np.testing.assert_array_equal(bits(jitted), bits(expected))


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q8_0"])
def test_blocks_quantised_by_gguf_decode_as_gguf_decodes_them(name: str) -> None:
    weights = np.random.default_rng(1).standard_normal((5, 96)).astype(np.float32)
    blocks = gguf.quants.quantize(weights, gguf.GGMLQuantizationType[name])
    assert blocks.dtype == np.uint8 and blocks.shape == (5, FORMATS[name].row_bytes(96))
    got = dense_rows(BlockLinear(parts=(jnp.asarray(blocks),), formats=(name,), in_features=96))
    np.testing.assert_array_equal(bits(got), bits(reference(blocks, name)))


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize(("batch", "blocks", "rows"), SHAPES)
def test_native_products_match_float64_off_every_tile_edge(
    name: str, batch: int, blocks: int, rows: int
) -> None:
    packed = random_blocks(name, rows, blocks, seed=batch * 100 + rows)
    width = blocks * FORMATS[name].block_weights
    weight = BlockLinear(parts=(jnp.asarray(packed),), formats=(name,), in_features=width)
    x = np.random.default_rng(rows).standard_normal((batch, width)).astype(np.float32)
    got = np.asarray(jax.jit(project_blocks)(jnp.asarray(x), weight))
    dense = reference(packed, name).astype(np.float64)  # [rows, width]
    assert got.shape == (batch, rows)
    bound = np.abs(x).astype(np.float64) @ np.abs(dense).T
    np.testing.assert_array_less(np.abs(got - x.astype(np.float64) @ dense.T), 1e-6 * bound + 1e-30)


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_kernels_weights_are_gguf_bit_for_bit(name: str) -> None:
    """x = I makes every product one weight (1 * w + 0s is exact): the decoded weights show."""
    packed = random_blocks(name, rows=7, blocks=2, seed=3)
    width = 2 * FORMATS[name].block_weights
    weight = BlockLinear(parts=(jnp.asarray(packed),), formats=(name,), in_features=width)
    eye = jnp.eye(width, dtype=jnp.float32)
    got = np.asarray(jax.jit(project_blocks)(eye, weight)).T  # [rows, width]
    np.testing.assert_array_equal(got, reference(packed, name))


def test_bfloat16_activations_take_the_dequantise_then_dot_path() -> None:
    packed = random_blocks("Q4_K", rows=9, blocks=1)
    weight = BlockLinear(parts=(jnp.asarray(packed),), formats=("Q4_K",), in_features=256)
    x = jnp.asarray(np.random.default_rng(2).standard_normal((3, 256)), jnp.bfloat16)
    got = project_blocks(x, weight)
    assert got.dtype == jnp.bfloat16
    dense = reference(packed, "Q4_K").astype(np.float32)
    expected = (
        np.asarray(x, np.float32) @ np.asarray(jnp.asarray(dense, jnp.bfloat16), np.float32).T
    )
    np.testing.assert_allclose(np.asarray(got, np.float32), expected, rtol=2e-2, atol=2e-2)


def test_parts_of_mixed_formats_concatenate_their_outputs() -> None:
    q4k, q6k = random_blocks("Q4_K", 5, 1, seed=4), random_blocks("Q6_K", 3, 1, seed=5)
    weight = BlockLinear(
        parts=(jnp.asarray(q4k), jnp.asarray(q6k)), formats=("Q4_K", "Q6_K"), in_features=256
    )
    assert weight.shape == (256, 8) and weight.nbytes == q4k.nbytes + q6k.nbytes
    x = np.random.default_rng(6).standard_normal((2, 256)).astype(np.float32)
    dense = np.concatenate([reference(q4k, "Q4_K"), reference(q6k, "Q6_K")]).astype(np.float64)
    got = np.asarray(project_blocks(jnp.asarray(x), weight))
    np.testing.assert_allclose(got, x @ dense.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(dense_rows(weight)), dense.astype(np.float32))


def test_embedding_rows_decode_only_the_looked_up_tokens() -> None:
    packed = random_blocks("Q8_0", rows=11, blocks=2, seed=7)
    table = BlockLinear(parts=(jnp.asarray(packed),), formats=("Q8_0",), in_features=64)
    tokens = jnp.asarray([[3, 0, 10]])
    got = embed_block_rows(table, tokens, jnp.float32)
    np.testing.assert_array_equal(np.asarray(got), reference(packed, "Q8_0")[[[3, 0, 10]]])


@pytest.mark.parametrize("name", ["Q4_0", "Q6_K"])
def test_unpermuting_whole_block_rows_unpermutes_the_weights(name: str) -> None:
    """Blocks run along the input dimension, so q/k rows move as whole rows of blocks."""
    heads, head_dim = 2, 8
    packed = random_blocks(name, rows=heads * head_dim, blocks=1, seed=8)
    moved = unpermute_qk(packed, heads)
    assert not np.array_equal(moved, packed)  # the scenario: rows really move
    np.testing.assert_array_equal(
        reference(moved, name), unpermute_qk(reference(packed, name), heads)
    )


def test_malformed_block_maps_are_refused() -> None:
    with pytest.raises(DecoderError, match="Q5_K"):
        BlockLinear(parts=(jnp.zeros((2, 176), jnp.uint8),), formats=("Q5_K",), in_features=256)
    with pytest.raises(DecoderError, match=r"\[rows, 144\]"):
        BlockLinear(parts=(jnp.zeros((2, 100), jnp.uint8),), formats=("Q4_K",), in_features=256)
    with pytest.raises(DecoderError, match="whole blocks"):
        FORMATS["Q4_K"].row_bytes(576)


#: Run in a fresh process (the kernel is registered once per process): every format against
#: float64 on shapes off the tile edges, and the identity product against gguf's weights.
_VARIANT_CHECK = """
import numpy as np, jax, jax.numpy as jnp
from decoders.gguf_formats import FORMATS
from decoders.gguf_linear import BlockLinear, project_blocks
from tests.decoders.test_gguf_formats import SHAPES, random_blocks, reference
worst, exact = 0.0, True
for name, fmt in FORMATS.items():
    for batch, blocks, rows in SHAPES:
        packed = random_blocks(name, rows, blocks, seed=batch)
        width = blocks * fmt.block_weights
        w = BlockLinear(parts=(jnp.asarray(packed),), formats=(name,), in_features=width)
        x = np.random.default_rng(rows).standard_normal((batch, width)).astype(np.float32)
        got = np.asarray(jax.jit(project_blocks)(jnp.asarray(x), w))
        dense = reference(packed, name).astype(np.float64)
        bound = np.abs(x) @ np.abs(dense).T + 1e-30
        worst = max(worst, float((np.abs(got - x @ dense.T) / bound).max()))
        eye = np.asarray(project_blocks(jnp.eye(width, dtype=jnp.float32), w)).T
        exact = exact and np.array_equal(eye, reference(packed, name))
print(worst, exact)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags", ["-mno-avx512f", "-mno-avx512f -mno-avx2 -mno-fma"], ids=["avx2", "portable"]
)
def test_every_instruction_set_variant_decodes_the_same_weights(tmp_path: Path, flags: str) -> None:
    """The AVX2 and the portable builds, forced on this CPU by disabling the wider units."""
    worst, exact = run_variant(_VARIANT_CHECK, flags, tmp_path).split()
    assert float(worst) <= 1e-6 and exact == "True"
