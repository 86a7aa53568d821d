"""The GGUF block formats the decoder computes with as stored: their sizes and their decoding.

A quantised GGUF tensor ``[out, in]`` is stored row by row, each row a run of blocks along the
input dimension: 32 weights per block (Q4_0, Q4_1, Q8_0) or 256 (the K-quants Q4_K, Q6_K). A
:class:`BlockFormat` names one format, its GGML type number (the native kernel's switch) and its
block size in weights and bytes. :func:`dequantize_rows` decodes rows of blocks in pure
``jax.numpy``, the accelerators' path and the embedding lookup; it computes exactly what
``gguf.quants.dequantize`` computes, operation for operation in float32 (the differential tests in
``tests/decoders/test_gguf_formats.py`` compare the bits).

Example:
    >>> FORMATS["Q4_1"].row_bytes(576)
    360
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from shield.errors import DecoderError

__all__ = ["FORMATS", "BlockFormat", "dequantize_rows"]

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BlockFormat:
    """One GGUF block format.

    Attributes:
        name: the GGML name (``"Q4_K"``).
        ggml_type: its GGML type number (what the native kernel dispatches on).
        block_weights: weights per block along the input dimension.
        block_bytes: bytes per block.
    """

    name: str
    ggml_type: int
    block_weights: int
    block_bytes: int

    def row_bytes(self, in_features: int) -> int:
        """Bytes of one stored row of ``in_features`` weights.

        Raises:
            DecoderError: ``in_features`` is not a whole number of blocks.
        """
        if in_features <= 0 or in_features % self.block_weights:
            raise DecoderError(
                f"{self.name}: rows of {in_features} weights are not whole blocks of "
                f"{self.block_weights}; a {self.name} tensor's input size must be a multiple of it."
            )
        return in_features // self.block_weights * self.block_bytes


#: The formats decoded inside the product, by GGML name.
FORMATS: dict[str, BlockFormat] = {
    f.name: f
    for f in (
        BlockFormat("Q4_0", 2, 32, 18),
        BlockFormat("Q4_1", 3, 32, 20),
        BlockFormat("Q8_0", 8, 32, 34),
        BlockFormat("Q4_K", 12, 256, 144),
        BlockFormat("Q6_K", 14, 256, 210),
    )
}


def _half(pair: Array) -> Array:
    # [..., 2] uint8 (little-endian float16) -> [..., 1] float32, exactly.
    return jax.lax.bitcast_convert_type(pair, jnp.float16).astype(jnp.float32)[..., None]


def _nibbles(qs: Array) -> Array:
    # [..., n] bytes -> [..., 2, n]: the low nibbles, then the high ones.
    return jnp.stack([qs & 0x0F, qs >> 4], axis=-2)


def _q4_0(b: Array) -> Array:
    q = _nibbles(b[..., 2:]).astype(jnp.int8) - jnp.int8(8)  # [..., 2, 16]
    return _half(b[..., 0:2]) * q.reshape(*q.shape[:-2], 32).astype(jnp.float32)


def _q4_1(b: Array) -> Array:
    q = _nibbles(b[..., 4:]).astype(jnp.float32)
    return _half(b[..., 0:2]) * q.reshape(*q.shape[:-2], 32) + _half(b[..., 2:4])


def _q8_0(b: Array) -> Array:
    q = jax.lax.bitcast_convert_type(b[..., 2:], jnp.int8).astype(jnp.float32)
    return q * _half(b[..., 0:2])


def _q4_k(b: Array) -> Array:
    s = b[..., 4:16].astype(jnp.int32)  # 6-bit scales and mins of the eight groups
    low, mid, high = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    scale = jnp.concatenate([low & 0x3F, (high & 0x0F) | ((low >> 2) & 0x30)], axis=-1)
    least = jnp.concatenate([mid & 0x3F, (high >> 4) | ((mid >> 2) & 0x30)], axis=-1)
    d = _half(b[..., 0:2]) * scale.astype(jnp.float32)  # [..., 8]
    dm = _half(b[..., 2:4]) * least.astype(jnp.float32)
    qs = b[..., 16:].reshape(*b.shape[:-1], 4, 32)
    q = _nibbles(qs).reshape(*b.shape[:-1], 8, 32).astype(jnp.float32)
    return (d[..., None] * q - dm[..., None]).reshape(*b.shape[:-1], 256)


def _q6_k(b: Array) -> Array:
    lead = b.shape[:-1]
    ql = b[..., 0:128].reshape(*lead, 2, 64)
    qh = b[..., 128:192].reshape(*lead, 2, 1, 32)
    scales = jax.lax.bitcast_convert_type(b[..., 192:208], jnp.int8).astype(jnp.float32)
    d = (_half(b[..., 208:210]) * scales).reshape(*lead, 16, 1)
    low = _nibbles(ql).reshape(*lead, 8, 32)
    shifts = jnp.asarray([0, 2, 4, 6], jnp.uint8).reshape(*(1 for _ in lead), 1, 4, 1)
    high = ((qh >> shifts) & 0x03).reshape(*lead, 8, 32)
    q = (low | (high << 4)).astype(jnp.int8) - jnp.int8(32)
    return (d * q.reshape(*lead, 16, 16).astype(jnp.float32)).reshape(*lead, 256)


_DECODERS: dict[str, Callable[[Array], Array]] = {
    "Q4_0": _q4_0,
    "Q4_1": _q4_1,
    "Q8_0": _q8_0,
    "Q4_K": _q4_k,
    "Q6_K": _q6_k,
}


def dequantize_rows(blocks: Array, name: str) -> Array:
    """Float32 weights of rows of blocks, equal to ``gguf.quants.dequantize`` bit for bit.

    Args:
        blocks: ``[..., row_bytes]`` uint8, each row a whole number of blocks.
        name: the format, a key of :data:`FORMATS`.

    Returns:
        ``[..., in_features]`` float32.

    Raises:
        DecoderError: an unknown format, or rows that are not whole blocks.
    """
    if name not in _DECODERS:
        raise DecoderError(
            f"GGUF format {name!r} is not supported; expected one of {list(FORMATS)}."
        )
    fmt = FORMATS[name]
    row_bytes = blocks.shape[-1]
    if row_bytes % fmt.block_bytes:
        raise DecoderError(
            f"{name}: rows of {row_bytes} bytes are not whole blocks of {fmt.block_bytes} bytes."
        )
    lead = blocks.shape[:-1]
    grouped = jnp.asarray(blocks, jnp.uint8).reshape(*lead, -1, fmt.block_bytes)
    return _DECODERS[name](grouped).reshape(*lead, -1)
