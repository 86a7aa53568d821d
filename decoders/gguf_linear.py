"""Projections whose weights are a GGUF file's own blocks, decoded inside the product.

A :class:`BlockLinear` holds the rows ``[out, in]`` of one or more GGUF tensors exactly as the
file stores them (``uint8 [rows, row_bytes]`` per part, see :mod:`decoders.gguf_formats`); parts
exist because a fused projection (q, k, v; gate, up) may join tensors of different formats, as
the K-quant mixes do. On the CPU each part's product runs in the native kernel
(``decoders/kernels/gguf_matmul.cc``), which reads each block once and decodes it in registers;
elsewhere in XLA's dequantise-then-dot, which accelerators fuse. Either way the weights are the
ones ``gguf.quants.dequantize`` gives, bit for bit.

``activations`` chooses what the CPU kernel multiplies them with (:data:`ACTIVATIONS`):
``"float32"``, the activations as they are (the product is exact up to float32 summation), or
``"int8"``, the activations quantised per block of 32 to 8 bits and the block products done in
integers, llama.cpp's scheme for these formats (``decoders/kernels/gguf_q8_matmul.cc``; Q4_0, Q4_1,
Q8_0 and Q4_K parts; Q6_K parts keep the float32 kernel). Accelerators always take the
dequantise-then-dot path with float activations.

The same rows serve as an embedding table: row ``t``, decoded, is token ``t``'s vector.

Example:
    >>> weight = BlockLinear(parts=(blocks,), formats=("Q4_1",), in_features=576)  # doctest: +SKIP
    >>> y = project_blocks(x, weight)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from decoders.gguf_formats import FORMATS, dequantize_rows
from decoders.native import GGUF_MATMUL_TARGET, GGUF_Q8_MATMUL_TARGET, require_kernel
from decoders.pytree import pytree_dataclass, static_field
from shield.errors import DecoderError

__all__ = [
    "ACTIVATIONS",
    "INT8_ACTIVATION_FORMATS",
    "BlockLinear",
    "dense_rows",
    "embed_block_rows",
    "project_blocks",
    "with_activations",
]

Array = jax.Array
Tree = TypeVar("Tree")

#: What the CPU kernel multiplies the blocks with: the float32 activations themselves (exact
#: weights, float products) or the activations quantised to 8 bits per block of 32 (integer
#: block products, as llama.cpp does).
ACTIVATIONS: tuple[str, ...] = ("int8", "float32")
#: The formats with an 8-bit-activation kernel; other formats keep the float32 kernel.
INT8_ACTIVATION_FORMATS: tuple[str, ...] = ("Q4_0", "Q4_1", "Q8_0", "Q4_K")


@pytree_dataclass
class BlockLinear:
    """A linear map ``[in, out]`` stored as GGUF block rows ``[out, in]``, in parts along ``out``.

    ``parts[p]`` is ``uint8 [rows_p, row_bytes_p]`` in format ``formats[p]``; the outputs are the
    parts' outputs concatenated in order. ``activations`` is one of :data:`ACTIVATIONS` (what the
    CPU kernel multiplies the blocks with).
    """

    parts: tuple[Array, ...]
    formats: tuple[str, ...] = static_field()
    in_features: int = static_field()
    activations: str = static_field(default="float32")

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATIONS:
            raise DecoderError(
                f"BlockLinear: activations must be one of {ACTIVATIONS}, received "
                f"{self.activations!r}."
            )
        if not self.parts or len(self.parts) != len(self.formats):
            raise DecoderError(
                f"BlockLinear: expected one format per part, received {len(self.parts)} parts "
                f"and formats {self.formats}."
            )
        for part, name in zip(self.parts, self.formats, strict=True):
            if name not in FORMATS:
                raise DecoderError(
                    f"BlockLinear: format {name!r} is not supported; expected one of "
                    f"{list(FORMATS)}."
                )
            if not hasattr(part, "shape"):  # tracers and placeholders inside transformations
                continue
            expected = FORMATS[name].row_bytes(self.in_features)
            if len(part.shape) != 2 or part.shape[1] != expected:
                raise DecoderError(
                    f"BlockLinear: a {name} part of {self.in_features} inputs must be "
                    f"[rows, {expected}] bytes, received {tuple(part.shape)}."
                )

    @property
    def shape(self) -> tuple[int, int]:
        """The dense ``[in, out]`` shape this map stands for."""
        return self.in_features, sum(int(part.shape[0]) for part in self.parts)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored blocks (what a batch-1 product reads)."""
        return sum(int(np.prod(part.shape)) for part in self.parts)


def dense_rows(weight: BlockLinear) -> Array:
    """The float32 rows ``[out, in]`` the blocks decode to (``gguf.quants.dequantize``'s)."""
    pairs = zip(weight.parts, weight.formats, strict=True)
    rows = [dequantize_rows(part, name) for part, name in pairs]
    return rows[0] if len(rows) == 1 else jnp.concatenate(rows, axis=0)


def _portable(x: Array, blocks: Array, name: str) -> Array:
    rows = dequantize_rows(blocks, name).astype(x.dtype)  # [out, in]
    return jnp.einsum("mi,oi->mo", x, rows, preferred_element_type=jnp.float32)


def _native(x: Array, blocks: Array, name: str, target: str) -> Array:
    call = jax.ffi.ffi_call(
        target, jax.ShapeDtypeStruct((x.shape[0], blocks.shape[0]), jnp.float32)
    )
    out: Array = call(x, blocks, format=np.int32(FORMATS[name].ggml_type))
    return out


def _part_product(rows: Array, blocks: Array, name: str, activations: str) -> Array:
    if rows.dtype != jnp.float32:
        return _portable(rows, blocks, name)
    require_kernel()
    quantised = activations == "int8" and name in INT8_ACTIVATION_FORMATS
    target = GGUF_Q8_MATMUL_TARGET if quantised else GGUF_MATMUL_TARGET
    return jax.lax.platform_dependent(
        rows,
        blocks,
        cpu=lambda x, b: _native(x, b, name, target),
        default=lambda x, b: _portable(x, b, name),
    )


def project_blocks(x: Array, weight: BlockLinear) -> Array:
    """``x @ w`` for block weights.

    Args:
        x: activations ``[..., in]``; float32 takes the native kernel on a CPU (quantising them
            per block of 32 when ``weight.activations`` is ``"int8"``), other dtypes the
            dequantise-then-dot path.
        weight: the block map.

    Returns:
        ``[..., out]`` in ``x.dtype``, accumulated in float32.

    Raises:
        DecoderError: ``x``'s last axis is not the map's input size.
        decoders.native.NativeKernelError: on a CPU, the kernel cannot be built.
    """
    if x.shape[-1] != weight.in_features:
        raise DecoderError(
            f"project_blocks: activations of width {x.shape[-1]} against a map of "
            f"{weight.in_features} inputs."
        )
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    outs = [
        _part_product(rows, part, name, weight.activations)
        for part, name in zip(weight.parts, weight.formats, strict=True)
    ]
    out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
    return out.reshape(*lead, out.shape[-1]).astype(x.dtype)


def embed_block_rows(table: BlockLinear, tokens: Array, dtype: jnp.dtype) -> Array:
    """Token vectors ``[..., H]`` from block rows ``[V, H]``: only the looked-up rows decode.

    Raises:
        DecoderError: the table has several parts (an embedding is one tensor).
    """
    if len(table.parts) != 1:
        raise DecoderError(
            f"embed_block_rows: an embedding table is one tensor, received {len(table.parts)} "
            "parts."
        )
    return dequantize_rows(table.parts[0][tokens], table.formats[0]).astype(dtype)


def with_activations(tree: Tree, activations: str) -> Tree:
    """``tree`` (a model's parameters, or any pytree) with every :class:`BlockLinear` switched to
    ``activations``; the blocks themselves are shared, not copied.

    Args:
        tree: a pytree holding block maps.
        activations: one of :data:`ACTIVATIONS`.

    Returns:
        The same tree, its block maps multiplying with ``activations``.

    Raises:
        DecoderError: ``activations`` is not one of :data:`ACTIVATIONS`.

    Example:
        >>> params = with_activations(model.params, "float32")  # doctest: +SKIP
    """
    if activations not in ACTIVATIONS:
        raise DecoderError(
            f"with_activations: activations must be one of {ACTIVATIONS}, received {activations!r}."
        )

    def switch(node: object) -> object:
        if isinstance(node, BlockLinear):
            return dataclasses.replace(node, activations=activations)
        return node

    switched: Tree = jax.tree.map(switch, tree, is_leaf=lambda node: isinstance(node, BlockLinear))
    return switched
