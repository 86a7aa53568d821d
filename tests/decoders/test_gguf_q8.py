"""GGUF blocks against 8-bit activations (``activations="int8"``, ``gguf_q8_matmul.cc``).

The kernel must equal, bit for bit, the numpy statement of its scheme
(:mod:`tests.decoders.q8_reference`) for every format, batch 1..9 and row counts off every tile
edge; a row's result must not depend on its batch neighbours; and the product must stay within
the quantisation bound of the exact float path:

    |y_int8 - x . w| <= sum_b d_b * (1/2 + 1e-4) * sum_{t in b} |w_t|  +  1e-5 * |x| . |w|

Why: the activation q = rint(x * e) with e = fl(1 / d) is within 1/2 + 127 * 2^-23 of x / d,
so each activation is off by at most d * (1/2 + 2e-5) (d = max |x| / 127 of its block); the block
products are exact integers, and the float32 combination (a few roundings per block, blocks
summed in order, at most 48 blocks here) adds well under 1e-5 of sum |x| |w|.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoders.gguf_formats import FORMATS
from decoders.gguf_linear import (
    ACTIVATIONS,
    INT8_ACTIVATION_FORMATS,
    BlockLinear,
    project_blocks,
    with_activations,
)
from decoders.loading import load_model
from shield.errors import DecoderError
from tests.decoders.kernel_support import run_variant
from tests.decoders.q8_reference import BLOCK, block_integers, q8_product, quantise_activations
from tests.decoders.test_gguf_formats import random_blocks, reference

#: (rows, blocks): one row, a tile's edge (16) and one past it, a chunk's (32) remainder.
ROWS = [(1, 2), (16, 1), (17, 3), (37, 2)]


def activations_for(batch: int, width: int, seed: int) -> np.ndarray:
    """Random rows, with an all-zero block (d = 0; when rows have two blocks) and a block of
    exact rounding ties (when there are two rows)."""
    x = np.random.default_rng(seed).standard_normal((batch, width)).astype(np.float32)
    if width > BLOCK:
        x[0, -BLOCK:] = 0.0
    if batch > 1:  # max 127 gives d = 1, e = 1: x * e = x, and the halves are ties
        x[1, :BLOCK] = np.linspace(-15.5, 15.5, BLOCK, dtype=np.float32)
        x[1, 0] = 127.0
    return x


def q8_layer(packed: np.ndarray, name: str, width: int) -> BlockLinear:
    return BlockLinear(
        parts=(jnp.asarray(packed),), formats=(name,), in_features=width, activations="int8"
    )


@pytest.mark.parametrize("name", INT8_ACTIVATION_FORMATS)
def test_the_kernel_is_the_numpy_scheme_bit_for_bit(name: str) -> None:
    for rows, blocks in ROWS:
        packed = random_blocks(name, rows, blocks, seed=rows)
        width = blocks * FORMATS[name].block_weights
        layer = q8_layer(packed, name, width)
        for batch in range(1, 10):
            x = activations_for(batch, width, seed=batch + rows)
            got = np.asarray(jax.jit(project_blocks)(jnp.asarray(x), layer))
            expected = q8_product(x, packed, name)
            assert got.shape == (batch, rows) and np.abs(expected).max() > 0
            np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_the_special_blocks_happen() -> None:
    """The scenario of the test above: d = 0 quantises to zeros, and ties round half to even."""
    x = activations_for(2, 64, seed=0)
    q, d, _ = quantise_activations(x)
    assert d[0, 1] == 0 and not q[0, 1].any()
    assert d[1, 0] == 1 and q[1, 0, 1] == -14 and q[1, 0, 2] == -14  # -14.5 and -13.5 -> -14


@pytest.mark.parametrize("name", INT8_ACTIVATION_FORMATS)
def test_the_references_weight_integers_rebuild_gguf_dequantisation(name: str) -> None:
    """The scheme's q_w, dw and mw are the file's weights: dw * q_w + mw is gguf's decoding."""
    packed = random_blocks(name, 6, 2, seed=14)
    qw, dw, mw = block_integers(packed, name)
    weights = dw[..., None] * qw.astype(np.float32)
    if name in ("Q4_1", "Q4_K"):
        weights = weights + mw[..., None]
    rebuilt = weights.reshape(6, -1)
    np.testing.assert_array_equal(rebuilt.view(np.uint32), reference(packed, name).view(np.uint32))


@pytest.mark.parametrize("name", ["Q4_1", "Q8_0"])
def test_non_finite_activations_give_nan_not_a_silent_number(name: str) -> None:
    packed = random_blocks(name, 17, 2, seed=15)
    x = activations_for(3, 64, seed=16)
    x[0, 5], x[2, 40] = np.nan, np.inf  # row 1 stays finite
    got = np.asarray(project_blocks(jnp.asarray(x), q8_layer(packed, name, 64)))
    expected = q8_product(x, packed, name)
    assert np.isnan(got[[0, 2]]).all() and np.isfinite(got[1]).all()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", INT8_ACTIVATION_FORMATS)
def test_a_rows_result_does_not_depend_on_its_batch(name: str) -> None:
    packed = random_blocks(name, 21, 2, seed=5)
    width = 2 * FORMATS[name].block_weights
    layer = q8_layer(packed, name, width)
    x = activations_for(9, width, seed=6)
    together = np.asarray(project_blocks(jnp.asarray(x), layer))
    for row in (0, 4, 8):  # first, middle, and the row past the 8-row tile
        alone = np.asarray(project_blocks(jnp.asarray(x[row : row + 1]), layer))[0]
        np.testing.assert_array_equal(alone.view(np.uint32), together[row].view(np.uint32))


@pytest.mark.parametrize("name", INT8_ACTIVATION_FORMATS)
def test_the_layer_is_the_exact_path_within_the_quantisation_bound(name: str) -> None:
    width = 768 if name == "Q4_K" else 576  # the bundled model's 576 inputs; Q4_K: 3 blocks
    rows, blocks = 40, width // BLOCK
    packed = random_blocks(name, rows, width // FORMATS[name].block_weights, seed=9)
    x = np.random.default_rng(10).standard_normal((3, width)).astype(np.float32)
    got = np.asarray(project_blocks(jnp.asarray(x), q8_layer(packed, name, width)), np.float64)
    weights = reference(packed, name).astype(np.float64)  # [rows, width]
    exact = x.astype(np.float64) @ weights.T
    _, d, _ = quantise_activations(x)
    block_mass = np.abs(weights).reshape(rows, blocks, BLOCK).sum(-1)  # [rows, blocks]
    bound = (d.astype(np.float64) * (0.5 + 1e-4)) @ block_mass.T
    bound += 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(weights).T)
    error = np.abs(got - exact)
    assert error.max() > 1e-4 * np.abs(exact).max()  # the scenario: quantisation shows
    np.testing.assert_array_less(error, bound)


def test_q6_k_parts_keep_the_exact_float_kernel() -> None:
    q6k, q41 = random_blocks("Q6_K", 5, 1, seed=11), random_blocks("Q4_1", 4, 8, seed=12)
    mixed = BlockLinear(
        parts=(jnp.asarray(q6k), jnp.asarray(q41)), formats=("Q6_K", "Q4_1"), in_features=256
    )
    x = np.random.default_rng(13).standard_normal((2, 256)).astype(np.float32)
    exact = np.asarray(project_blocks(jnp.asarray(x), mixed))
    quantised = np.asarray(project_blocks(jnp.asarray(x), with_activations(mixed, "int8")))
    assert "Q6_K" not in INT8_ACTIVATION_FORMATS
    np.testing.assert_array_equal(quantised[:, :5], exact[:, :5])  # Q6_K: the float kernel
    np.testing.assert_array_equal(quantised[:, 5:], q8_product(x, q41, "Q4_1"))
    assert not np.array_equal(quantised[:, 5:], exact[:, 5:])


def test_with_activations_switches_every_block_map_and_shares_the_blocks() -> None:
    layer = BlockLinear(
        parts=(jnp.asarray(random_blocks("Q8_0", 3, 1)),), formats=("Q8_0",), in_features=32
    )
    tree = {"a": layer, "b": [layer], "c": jnp.zeros(2)}
    switched = with_activations(tree, "int8")
    assert switched["a"].activations == switched["b"][0].activations == "int8"
    assert layer.activations == "float32" and switched["a"].parts[0] is layer.parts[0]


def test_unknown_activations_are_refused_by_name(tmp_path: Path) -> None:
    assert ACTIVATIONS == ("int8", "float32")
    blocks = jnp.asarray(random_blocks("Q4_0", 2, 1))
    with pytest.raises(DecoderError, match=r"activations must be one of .*'int4'"):
        BlockLinear(parts=(blocks,), formats=("Q4_0",), in_features=32, activations="int4")
    with pytest.raises(DecoderError, match=r"received 'fp8'"):
        with_activations({}, "fp8")
    with pytest.raises(DecoderError, match=r"activations='int8' applies to weights='gguf' only"):
        load_model(weights="dense", activations="int8")
    with pytest.raises(DecoderError, match=r"activations must be one of .*'bf16'"):
        load_model(weights="gguf", activations="bf16")


#: Run in a fresh process (the kernel library is registered once per process): every format,
#: batch 1..9 and the row counts of ROWS against the numpy scheme, bit for bit, and non-finite
#: activations giving NaN.
_VARIANT_CHECK = """
import numpy as np, jax.numpy as jnp
from decoders.gguf_linear import INT8_ACTIVATION_FORMATS, project_blocks
from tests.decoders.q8_reference import q8_product
from tests.decoders.test_gguf_formats import random_blocks
from decoders.gguf_formats import FORMATS
from tests.decoders.test_gguf_q8 import ROWS, activations_for, q8_layer
checked = 0
for name in INT8_ACTIVATION_FORMATS:
    for rows, blocks in ROWS:
        packed = random_blocks(name, rows, blocks, seed=rows)
        width = blocks * FORMATS[name].block_weights
        for batch in range(1, 10):
            x = activations_for(batch, width, seed=batch + rows)
            got = np.asarray(project_blocks(jnp.asarray(x), q8_layer(packed, name, width)))
            assert np.array_equal(got.view(np.uint32), q8_product(x, packed, name).view(np.uint32))
            checked += 1
x = activations_for(3, 64, seed=16)
x[0, 5], x[2, 40] = np.nan, np.inf
packed = random_blocks("Q4_1", 17, 2, seed=15)
got = np.asarray(project_blocks(jnp.asarray(x), q8_layer(packed, "Q4_1", 64)))
np.testing.assert_array_equal(got, q8_product(x, packed, "Q4_1"))  # NaN where non-finite
print(checked)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    ["-mno-avx512vnni", "-mno-avx512f", "-mno-avx512f -mno-avx2 -mno-fma"],
    ids=["avx512-without-vnni", "avx2", "portable"],
)
def test_every_instruction_set_variant_gives_the_same_bits(tmp_path: Path, flags: str) -> None:
    """The builds this CPU would not choose, forced by disabling the wider units."""
    checked = run_variant(_VARIANT_CHECK, flags, tmp_path)
    assert checked == str(len(INT8_ACTIVATION_FORMATS) * len(ROWS) * 9)
