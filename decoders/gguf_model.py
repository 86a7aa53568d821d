"""``load_model(weights="gguf")``: a model built straight from a GGUF file's blocks.

The file is memory-mapped (:mod:`decoders.gguf_file`) and every projection and the embedding
table become :class:`~decoders.gguf_linear.BlockLinear` rows holding the file's own bytes: no
dequantisation, no conversion cache (only the tokenizer JSON is kept beside the other caches),
one copy of the blocks onto the device. Norms are read as
float values. llama.cpp stores the query and key rows permuted for its interleaved rotary
layout; since a block runs along the input dimension, undoing the permutation moves whole rows
of blocks (:func:`decoders.sources.unpermute_qk`), so the blocks stay the file's. A fused
projection (q, k, v; gate, up) joins its tensors' rows, one part per run of tensors in the same
format. A tensor in a type outside :data:`decoders.gguf_formats.FORMATS` is refused by name.

Example:
    >>> converted, params = read_gguf_blocks(bundled_model_path())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from decoders.gguf_file import GGUFFile, GGUFTensor
from decoders.gguf_formats import FORMATS
from decoders.gguf_linear import ACTIVATIONS, BlockLinear, with_activations
from decoders.model import LayerParams, Params
from decoders.paths import cache_root
from decoders.sources import (
    Converted,
    gguf_config,
    gguf_tokenizer,
    open_gguf_checked,
    unpermute_qk,
)
from shield.errors import DecoderError, ModelLoadError

__all__ = ["DEFAULT_ACTIVATIONS", "VECTOR_TYPES", "read_gguf_blocks"]

#: What ``weights="gguf"`` multiplies the blocks with unless told (one of
#: :data:`decoders.gguf_linear.ACTIVATIONS`).
DEFAULT_ACTIVATIONS = "int8"
#: Tensor types read as float values (norms): widened exactly to float32.
VECTOR_TYPES: tuple[str, ...] = ("F32", "F16")


def _tensor(gguf_file: GGUFFile, name: str, shape: tuple[int, ...]) -> GGUFTensor:
    tensor = gguf_file.tensors.get(name)
    if tensor is None:
        raise ModelLoadError(
            f"{gguf_file.path}: tensor {name!r} is missing (expected shape {shape}); the file is "
            "incomplete or not a llama model."
        )
    if tensor.shape != shape:
        raise ModelLoadError(
            f"{gguf_file.path}: tensor {name!r} has shape {tensor.shape}, expected {shape}; the "
            "file does not match its own configuration."
        )
    return tensor


def _blocks(gguf_file: GGUFFile, name: str, shape: tuple[int, int]) -> GGUFTensor:
    tensor = _tensor(gguf_file, name, shape)
    if tensor.type_name not in FORMATS:
        raise ModelLoadError(
            f"{gguf_file.path}: tensor {name!r} has type {tensor.type_name}; weights='gguf' "
            f"computes with {', '.join(FORMATS)} blocks. Load it with weights='dense' or 'int8' "
            "(F32, F16, Q4_0, Q4_1, Q8_0 files), or re-quantise it to one of these formats."
        )
    return tensor


def _linear(
    gguf_file: GGUFFile, specs: list[tuple[str, int, int | None]], width: int
) -> BlockLinear:
    """A map from tensors ``(name, rows, heads to un-permute or None)``, rows in order."""
    runs: list[tuple[str, list[np.ndarray]]] = []
    for name, rows, heads in specs:
        tensor = _blocks(gguf_file, name, (rows, width))
        data = tensor.data if heads is None else unpermute_qk(np.asarray(tensor.data), heads)
        if runs and runs[-1][0] == tensor.type_name:
            runs[-1][1].append(data)
        else:
            runs.append((tensor.type_name, [data]))
    parts = tuple(
        jax.device_put(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
        for _, arrays in runs
    )
    return BlockLinear(parts=parts, formats=tuple(kind for kind, _ in runs), in_features=width)


def _vector(gguf_file: GGUFFile, name: str, size: int, dtype: jnp.dtype) -> jnp.ndarray:
    tensor = _tensor(gguf_file, name, (size,))
    if tensor.type_name not in VECTOR_TYPES:
        raise ModelLoadError(
            f"{gguf_file.path}: tensor {name!r} has type {tensor.type_name}; expected one of "
            f"{', '.join(VECTOR_TYPES)} for a norm."
        )
    return jax.device_put(np.asarray(tensor.data, np.float32).astype(dtype))


def _cached_tokenizer(gguf_file: GGUFFile) -> tuple[str, str | None]:
    """:func:`~decoders.sources.gguf_tokenizer`, stored beside the other caches.

    Building the ``tokenizers`` JSON of a 49k-token vocabulary takes longer than the rest of
    the load; the entry is keyed by the file's resolved path, size and modification time, and an
    unreadable entry is rebuilt. Only the tokenizer is cached: the weights are the file's.
    """
    path = gguf_file.path.resolve()
    info = path.stat()
    key = hashlib.sha256(f"{path}|{info.st_size}|{info.st_mtime_ns}".encode()).hexdigest()[:20]
    entry = cache_root() / "gguf-tokenizers" / f"{path.stem}-{key}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        stored = json.loads(entry.read_text(encoding="utf-8"))
        return str(stored["tokenizer_json"]), stored["chat_template"]
    tokenizer_json, template = gguf_tokenizer(gguf_file)
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".staging-", dir=entry.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"tokenizer_json": tokenizer_json, "chat_template": template}, out)
        os.replace(staging, entry)
    return tokenizer_json, template


def read_gguf_blocks(
    path: Path, *, dtype: str | None = None, activations: str = DEFAULT_ACTIVATIONS
) -> tuple[Converted, Params]:
    """The configuration, tokenizer and block parameters of a llama-architecture GGUF file.

    Args:
        path: the ``.gguf`` file.
        dtype: the activations' dtype, ``"float32"`` (default; the native kernel's) or
            ``"bfloat16"`` (the dequantise-then-dot path).
        activations: what the CPU kernel multiplies float32 activations with, one of
            :data:`~decoders.gguf_linear.ACTIVATIONS` (see :mod:`decoders.gguf_linear`).

    Returns:
        ``(converted, params)``: ``converted.named`` is empty (the weights are in ``params``).

    Raises:
        ModelLoadError: the file is missing or unreadable, not a llama model, a tensor is missing,
            misshapen or of an unsupported type (named with its type).
        DecoderError: ``activations`` is not one of the known values.
    """
    if activations not in ACTIVATIONS:
        raise DecoderError(
            f"load_model: activations must be one of {ACTIVATIONS} with weights='gguf', "
            f"received {activations!r}."
        )
    gguf_file = open_gguf_checked(path)
    config = dataclasses.replace(gguf_config(gguf_file), dtype=dtype or "float32")
    c = config
    h, n, kv, d, inner = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    act = c.jnp_dtype

    def layer(i: int) -> LayerParams:
        blk = f"blk.{i}"
        return LayerParams(
            attn_norm=_vector(gguf_file, f"{blk}.attn_norm.weight", h, act),
            wqkv=_linear(
                gguf_file,
                [
                    (f"{blk}.attn_q.weight", n * d, n),
                    (f"{blk}.attn_k.weight", kv * d, kv),
                    (f"{blk}.attn_v.weight", kv * d, None),
                ],
                h,
            ),
            wo=_linear(gguf_file, [(f"{blk}.attn_output.weight", h, None)], n * d),
            mlp_norm=_vector(gguf_file, f"{blk}.ffn_norm.weight", h, act),
            w_gate_up=_linear(
                gguf_file,
                [(f"{blk}.ffn_gate.weight", inner, None), (f"{blk}.ffn_up.weight", inner, None)],
                h,
            ),
            w_down=_linear(gguf_file, [(f"{blk}.ffn_down.weight", h, None)], inner),
        )

    params = Params(
        embed=_linear(gguf_file, [("token_embd.weight", c.vocab_size, None)], h),
        layers=tuple(layer(i) for i in range(c.num_layers)),
        final_norm=_vector(gguf_file, "output_norm.weight", h, act),
        lm_head=None
        if c.tie_embeddings
        else _linear(gguf_file, [("output.weight", c.vocab_size, None)], h),
    )
    tokenizer_json, template = _cached_tokenizer(gguf_file)
    converted = Converted(
        config=config, named={}, tokenizer_json=tokenizer_json, chat_template=template
    )
    return converted, with_activations(params, activations)
