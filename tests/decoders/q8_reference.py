"""The 8-bit-activation scheme of ``decoders/kernels/gguf_q8_matmul.cc``, restated in numpy.

Activations are quantised per row and block of 32: ``d = max|x| / 127``, ``e = 1 / d`` (0 when
``d`` is 0), ``q = rint(x * e)`` (half to even), ``s = d * float(sum q)``. A weight block
contributes ``(dw * d) * float(sum q_w * q)`` (``+ mw * s`` for Q4_1 and Q4_K), summed into the
output in block order from 0. A Q4_K block is eight such groups of 32: ``dw = d * scale`` and
``mw = -(dmin * min)`` from its 6-bit scales and minima, as ``gguf.quants.dequantize`` computes them.
A block of activations holding an infinity or a NaN gets ``d = NaN`` and ``q = 0``, so the outputs
it reaches are NaN, as on the exact path. Every step is a float32 rounding (numpy float32
arithmetic), the integer sums are exact, so the kernel must give these bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK", "block_integers", "q8_product", "quantise_activations"]

BLOCK = 32  # weights and activations per block


def quantise_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q int32 [M, B, 32], d float32 [M, B], s float32 [M, B])`` of float32 rows ``[M, K]``."""
    rows, width = x.shape
    blocks = x.astype(np.float32).reshape(rows, width // BLOCK, BLOCK)
    finite = np.isfinite(blocks).all(axis=-1)
    clean = np.where(finite[..., None], blocks, np.float32(0))
    d = np.where(finite, np.abs(clean).max(axis=-1) / np.float32(127), np.float32(np.nan))
    safe = np.where(finite & (d != 0), d, np.float32(1))
    e = np.where(finite & (d != 0), np.float32(1) / safe, np.float32(0)).astype(np.float32)
    q = np.rint(clean * e[..., None]).astype(np.int32)
    s = d * q.sum(axis=-1).astype(np.float32)
    return q, d.astype(np.float32), s.astype(np.float32)


def _half(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view(np.float16)[..., 0].astype(np.float32)


def block_integers(blocks: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q_w int32 [N, B, 32], dw float32 [N, B], mw float32 [N, B])`` of ``uint8 [N, bytes]``."""
    sizes = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34, "Q4_K": 144}
    raw = blocks.reshape(blocks.shape[0], -1, sizes[name])
    if name == "Q4_K":
        return _q4_k_integers(raw)
    dw = _half(raw[..., 0:2])
    mw = _half(raw[..., 2:4]) if name == "Q4_1" else np.zeros_like(dw)
    if name == "Q8_0":
        qw = raw[..., 2:34].view(np.int8).astype(np.int32)
    else:
        packed = raw[..., 4:20] if name == "Q4_1" else raw[..., 2:18]
        qw = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).astype(np.int32)
        if name == "Q4_0":
            qw = qw - 8
    return qw, dw, mw


def _q4_k_integers(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, blocks = raw.shape[:2]
    d, dmin = _half(raw[..., 0:2]), _half(raw[..., 2:4])
    s = raw[..., 4:16].astype(np.int32)  # [N, B, 12]
    low = np.arange(4)
    scale = np.concatenate(
        [s[..., low] & 63, (s[..., low + 8] & 15) | ((s[..., low] >> 6) << 4)], -1
    )
    least = np.concatenate(
        [s[..., low + 4] & 63, (s[..., low + 8] >> 4) | ((s[..., low + 4] >> 6) << 4)], -1
    )
    qs = raw[..., 16:144].reshape(rows, blocks, 4, 32)  # pairs of groups share 32 bytes
    q = np.stack([qs & 15, qs >> 4], axis=3).reshape(rows, blocks * 8, 32).astype(np.int32)
    dw = (d[..., None] * scale.astype(np.float32)).reshape(rows, blocks * 8)
    mw = -(dmin[..., None] * least.astype(np.float32)).reshape(rows, blocks * 8)
    return q, dw.astype(np.float32), mw.astype(np.float32)


def q8_product(x: np.ndarray, blocks: np.ndarray, name: str) -> np.ndarray:
    """``y [M, N]``: float32 rows ``x [M, K]`` against block rows ``[N, bytes]``, by the scheme."""
    q, d, s = quantise_activations(x)
    qw, dw, mw = block_integers(blocks, name)
    sums = np.einsum("mbt,nbt->mnb", q.astype(np.int64), qw.astype(np.int64)).astype(np.float32)
    y = np.zeros((x.shape[0], blocks.shape[0]), np.float32)
    for b in range(q.shape[1]):
        term = (dw[None, :, b] * d[:, None, b]) * sums[:, :, b]
        if name in ("Q4_1", "Q4_K"):
            term = term + mw[None, :, b] * s[:, None, b]
        y = y + term
    return y
