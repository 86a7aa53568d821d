"""Projections with dense, int8 or GGUF-block weights: one :func:`project` serves all three.

A dense weight is an array ``[in, out]`` and a projection is ``x @ w``. A
:class:`QuantizedLinear` stores the same map as int8 rows ``[out, in]`` cut into blocks of
:data:`BLOCK` inputs, each block with a float32 scale and offset (affine, like the GGUF's own
Q4_1/Q8_0 blocks but with 256 levels): 1.25 bytes a weight instead of 4, so batch-1 decoding,
which reads every weight once per token, moves under a third of the data. A block's rounding
error is at most its range / 510. On the CPU the product runs in the native kernel
(:mod:`decoders.native`), which converts weights in registers; on other platforms in XLA's own
``dot`` of the converted weights, which accelerators fuse.

The same rows serve as an embedding table: row ``t``, dequantised, is token ``t``'s vector.
The third kind, a GGUF file's own blocks (:class:`decoders.gguf_linear.BlockLinear`), has its
products in :mod:`decoders.gguf_linear`; :func:`project` and :func:`embed_rows` hand them over.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from decoders.gguf_linear import BlockLinear, embed_block_rows, project_blocks
from decoders.native import INT8_MATMUL_TARGET, require_kernel
from decoders.pytree import pytree_dataclass

__all__ = [
    "Linear",
    "QuantizedLinear",
    "dequantize",
    "embed_rows",
    "project",
    "quantize_linear",
    "quantize_rows",
]

Array = jax.Array

#: Inputs per block sharing one scale and offset (the kernel's constant too).
BLOCK = 32
#: Quantised levels per block: int8, ``q`` in ``[-128, 127]``.
LEVELS = 255


@pytree_dataclass
class QuantizedLinear:
    """A linear map stored as int8 rows in blocks of :data:`BLOCK` with float32 scale and offset.

    ``w[i, o] == q[o, i] * scale[o, i // BLOCK] + offset[o, i // BLOCK]`` for the dense
    ``[in, out]`` weight ``w`` it approximates.
    """

    q: Array  # [out, in] int8
    scale: Array  # [out, ceil(in / BLOCK)] float32
    offset: Array  # [out, ceil(in / BLOCK)] float32

    @property
    def shape(self) -> tuple[int, int]:
        """The dense ``[in, out]`` shape this map stands for."""
        return int(self.q.shape[1]), int(self.q.shape[0])


#: A projection weight: dense ``[in, out]``, int8 rows or GGUF block rows.
Linear = Array | QuantizedLinear | BlockLinear


def quantize_linear(weight: np.ndarray | Array) -> QuantizedLinear:
    """Quantise a dense ``[in, out]`` weight to int8 blocks with a scale and offset each.

    A block's 256 levels span its smallest to its largest weight, so each weight moves by at most
    half a level (range / 510); a constant block is exact (scale 0).

    Args:
        weight: the dense weight, ``[in, out]``.

    Returns:
        The quantised map (on the default device).
    """
    q, scale, offset = quantize_rows(np.asarray(weight).T)
    return QuantizedLinear(q=jnp.asarray(q), scale=jnp.asarray(scale), offset=jnp.asarray(offset))


def quantize_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The host arrays of :func:`quantize_linear` for rows ``[out, in]`` (any float dtype).

    Returns:
        ``(q, scale, offset)``: int8 ``[out, in]`` and float32 ``[out, blocks]`` twice.
    """
    rows = np.asarray(rows, dtype=np.float32)  # [out, in]
    out_features, in_features = rows.shape
    blocks = -(-in_features // BLOCK)
    # Repeating the last input leaves the last block's range that of its real weights.
    padded = np.pad(rows, ((0, 0), (0, blocks * BLOCK - in_features)), mode="edge")
    grouped = padded.reshape(out_features, blocks, BLOCK)
    low, high = grouped.min(axis=2), grouped.max(axis=2)
    scale = ((high - low) / LEVELS).astype(np.float32)
    offset = (low + 128 * scale).astype(np.float32)  # q = -128 is the block's minimum
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.rint((grouped - offset[..., None]) / safe[..., None])
    q = np.clip(q, -128, 127).astype(np.int8).reshape(out_features, -1)[:, :in_features]
    return np.ascontiguousarray(q), scale, offset


def _expand(per_block: Array, width: int) -> Array:
    # [..., blocks] -> [..., width]: each block's value repeated over its inputs.
    return jnp.repeat(per_block, BLOCK, axis=-1)[..., :width]


def dequantize(weight: QuantizedLinear, dtype: jnp.dtype = jnp.float32) -> Array:
    """The dense ``[in, out]`` weight a quantised map computes with."""
    width = weight.q.shape[1]
    rows = weight.q.astype(jnp.float32) * _expand(weight.scale, width) + _expand(
        weight.offset, width
    )
    return rows.T.astype(dtype)


def _portable_int8_matmul(x: Array, q: Array, scale: Array, offset: Array) -> Array:
    dense = dequantize(QuantizedLinear(q=q, scale=scale, offset=offset), x.dtype)
    return jnp.einsum("mi,io->mo", x, dense, preferred_element_type=jnp.float32)


def _native_int8_matmul(x: Array, q: Array, scale: Array, offset: Array) -> Array:
    call = jax.ffi.ffi_call(
        INT8_MATMUL_TARGET, jax.ShapeDtypeStruct((x.shape[0], q.shape[0]), jnp.float32)
    )
    out: Array = call(x, q, scale, offset)
    return out


def project(x: Array, weight: Linear) -> Array:
    """``x @ w`` for a dense or quantised weight.

    Args:
        x: activations ``[..., in]``.
        weight: a dense ``[in, out]`` array, a :class:`QuantizedLinear` or a
            :class:`~decoders.gguf_linear.BlockLinear`.

    Returns:
        ``[..., out]`` in ``x.dtype``. Quantised products accumulate in float32.

    Raises:
        decoders.native.NativeKernelError: a quantised product on the CPU whose kernel cannot be
            built.
    """
    if isinstance(weight, BlockLinear):
        return project_blocks(x, weight)
    if not isinstance(weight, QuantizedLinear):
        return x @ weight
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    if rows.dtype == jnp.float32:
        require_kernel()
        out = jax.lax.platform_dependent(
            rows,
            weight.q,
            weight.scale,
            weight.offset,
            cpu=_native_int8_matmul,
            default=_portable_int8_matmul,
        )
    else:
        out = _portable_int8_matmul(rows, weight.q, weight.scale, weight.offset)
    return out.reshape(*lead, weight.q.shape[0]).astype(x.dtype)


def embed_rows(table: Linear, tokens: Array, dtype: jnp.dtype) -> Array:
    """Token vectors ``[..., H]`` from an embedding table ``[V, H]`` (dense or quantised rows)."""
    if isinstance(table, BlockLinear):
        return embed_block_rows(table, tokens, dtype)
    if isinstance(table, QuantizedLinear):
        width = table.q.shape[1]
        rows = table.q[tokens].astype(jnp.float32) * _expand(table.scale[tokens], width)
        return (rows + _expand(table.offset[tokens], width)).astype(dtype)
    return table[tokens]
