"""From named host arrays to :class:`decoders.model.Params`, and the on-disk weight cache.

Both loaders (GGUF and Hugging Face directories) produce the same thing: a :class:`ModelConfig`
and a mapping of numpy arrays under the checkpoint's own tensor names and layouts (``[out, in]``
projections, half-split RoPE), in the file's dtype. :func:`params_from_named` is the one place
that turns them into :class:`Params`: it reads the tensor names of the configuration's layout
(:data:`decoders.families.TENSOR_NAMES`) and the shapes of :func:`decoders.model.layer_shapes`,
converts each tensor on its own to the configuration's dtype (bfloat16 stays bfloat16; never a
float32 copy of the whole model), fuses q/k/v and gate/up on the host one layer at a time, and
hands each finished array to a placement callable (a device, or a mesh with its sharding).

The converted-model cache stores the arrays already in the device layout (fused, ``[in, out]``),
each 64-byte aligned in one uncompressed ``.npz`` (:func:`decoders.mapped_npz.save_aligned_npz`):
read back as views of one read-only mapping, a CPU device adopts them without a copy.
:func:`read_cache` also returns the checkpoint tensors as views of them, so the int8 and mesh
paths read the same entry.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from decoders.config import ModelConfig
from decoders.families import TENSOR_NAMES
from decoders.linear import QuantizedLinear, quantize_rows
from decoders.mapped_npz import map_npz, save_aligned_npz
from decoders.model import LayerParams, Params, layer_shapes
from shield.errors import ModelLoadError

__all__ = [
    "Put",
    "expected_shapes",
    "named_from_params",
    "params_from_named",
    "read_cache",
    "write_cache",
]

#: Places one finished host array: ``put(field_path, array)`` with ``field_path`` such as
#: ``"layers.3.wqkv"`` (int8 leaves add ``.q``, ``.scale``, ``.offset``), returning a device array.
Put = Callable[[str, np.ndarray], jax.Array]

#: Version of the stored configuration; entries of another version are rebuilt (version 1 had no
#: family fields, so a Mistral entry of it would silently drop its sliding window; version 2 stored
#: the checkpoint layout, which cost a transposing copy of every projection at each load).
_CONFIG_FORMAT = 3
_EMBED, _NORM, _HEAD = "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"
_NUMPY_DTYPES: dict[str, Any] = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}


def _parts(config: ModelConfig, field: str) -> tuple[int, ...]:
    """Output rows of each checkpoint tensor a fused field is made of (in the layout's order)."""
    c = config
    q, kv, inner = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size
    if len(TENSOR_NAMES[c.layout][field]) == 1:
        return (layer_shapes(c)[field][-1],)
    return {"wqkv": (q, kv, kv), "bqkv": (q, kv, kv), "w_gate_up": (inner, inner)}[field]


def _layer_tensors(config: ModelConfig, layer: int) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Per field of one layer: its checkpoint tensors with their (checkpoint-layout) shapes."""
    tensors: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for field, shape in layer_shapes(config).items():
        names = TENSOR_NAMES[config.layout][field]
        rows = _parts(config, field)
        tensors[field] = [
            (f"model.layers.{layer}.{name}", (size, shape[0]) if len(shape) == 2 else (size,))
            for name, size in zip(names, rows, strict=True)
        ]
    return tensors


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a model of ``config`` needs, by checkpoint name, in checkpoint layout."""
    c = config
    shapes = {_EMBED: (c.vocab_size, c.hidden_size), _NORM: (c.hidden_size,)}
    if not c.tie_embeddings:
        shapes[_HEAD] = (c.vocab_size, c.hidden_size)
    for layer in range(c.num_layers):
        for tensors in _layer_tensors(c, layer).values():
            shapes.update(tensors)
    return shapes


def _check(config: ModelConfig, named: Mapping[str, np.ndarray], source: Any) -> None:
    for name, shape in expected_shapes(config).items():
        if name not in named:
            raise ModelLoadError(
                f"{source}: tensor {name!r} is missing (expected shape {shape}); the file is "
                f"incomplete or not a {config.layout}-layout checkpoint."
            )
        if tuple(named[name].shape) != shape:
            raise ModelLoadError(
                f"{source}: tensor {name!r} has shape {tuple(named[name].shape)}, expected "
                f"{shape}; the file does not match its own configuration."
            )


def params_from_named(
    config: ModelConfig,
    named: Mapping[str, np.ndarray],
    source: str | os.PathLike[str],
    *,
    int8: bool = False,
    put: Put | None = None,
) -> Params:
    """Check every tensor's presence and shape, then build :class:`Params` in ``config.dtype``.

    Args:
        config: the model configuration (its ``layout`` names the tensors).
        named: arrays by checkpoint name in the file's dtype (float32, float16 or bfloat16);
            extra names (e.g. rotary caches) are ignored. Each is read once.
        source: the file the arrays came from, named in errors.
        int8: quantise projections and embeddings straight from ``named``
            (:func:`decoders.linear.quantize_rows`), never holding their dense device copy.
        put: places each finished host array (see :data:`Put`); default ``jnp.asarray``.

    Returns:
        The parameters; dense projections are transposed to ``[in, out]``.

    Raises:
        ModelLoadError: a tensor is missing or has the wrong shape.
    """
    _check(config, named, source)
    place: Put = put if put is not None else (lambda _path, array: jnp.asarray(array))
    dtype = _NUMPY_DTYPES[config.dtype]

    def converted(array: np.ndarray) -> np.ndarray:
        return np.asarray(array).astype(dtype, copy=False)

    def linear(path: str, rows: np.ndarray) -> Any:
        # rows: checkpoint layout [out, in] in the file's dtype; dense ours is [in, out].
        if int8:  # quantised from the file's values, not from a rounded copy
            q, scale, offset = quantize_rows(rows)
            return QuantizedLinear(
                q=place(f"{path}.q", q),
                scale=place(f"{path}.scale", scale),
                offset=place(f"{path}.offset", offset),
            )
        return place(path, converted(rows).T)  # put makes the one copy, already transposed

    def build_layer(layer: int) -> LayerParams:
        fields: dict[str, Any] = {}
        for field, tensors in _layer_tensors(config, layer).items():
            path = f"layers.{layer}.{field}"
            # Already fused and [in, out] when the converted-model cache stored it so. (Not
            # `.get`: a lazy checkpoint's missing name raises ModelLoadError, not KeyError.)
            stored = named[path] if path in named else None  # noqa: SIM401
            if stored is not None:
                joined = stored.T if stored.ndim == 2 else stored  # a view: `.T` again is stored
            else:
                parts = [np.asarray(named[name]) for name, _ in tensors]
                joined = parts[0] if len(parts) == 1 else np.concatenate(parts)  # fused on the host
            fields[field] = (
                linear(path, joined) if joined.ndim == 2 else place(path, converted(joined))
            )
        return LayerParams(**fields)

    layers = tuple(build_layer(layer) for layer in range(config.num_layers))
    rows = np.asarray(named[_EMBED])  # [V, H]: already the rows of the tied head
    embed = linear("embed", rows) if int8 else place("embed", converted(rows))
    del rows  # its pages are released before the head is read
    return Params(
        embed=embed,
        layers=layers,
        final_norm=place("final_norm", converted(named[_NORM])),
        lm_head=None if config.tie_embeddings else linear("lm_head", np.asarray(named[_HEAD])),
    )


def _device_layout(
    config: ModelConfig, named: Mapping[str, np.ndarray]
) -> Iterator[tuple[str, np.ndarray]]:
    """The arrays of :func:`params_from_named`'s dense path, by field path, one at a time.

    Fused fields are concatenated and projections transposed to ``[in, out]``, C-contiguous, in
    the arrays' own dtype; the embedding stays ``[V, H]``.
    """
    yield "embed", np.asarray(named[_EMBED])
    yield "final_norm", np.asarray(named[_NORM])
    if not config.tie_embeddings:
        yield "lm_head", np.ascontiguousarray(np.asarray(named[_HEAD]).T)
    for layer in range(config.num_layers):
        for field, tensors in _layer_tensors(config, layer).items():
            parts = [np.asarray(named[name]) for name, _ in tensors]
            joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
            yield (
                f"layers.{layer}.{field}",
                np.ascontiguousarray(joined.T if joined.ndim == 2 else joined),
            )


def _checkpoint_views(
    config: ModelConfig, stored: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The checkpoint tensors (names and ``[out, in]`` layouts) as views of device-layout arrays."""
    named = {_EMBED: stored["embed"], _NORM: stored["final_norm"]}
    if not config.tie_embeddings:
        named[_HEAD] = stored["lm_head"].T
    for layer in range(config.num_layers):
        for field, tensors in _layer_tensors(config, layer).items():
            fused = stored[f"layers.{layer}.{field}"]
            rows = fused.T if fused.ndim == 2 else fused  # [out, in] or [out]
            start = 0
            for name, shape in tensors:
                named[name] = rows[start : start + shape[0]]
                start += shape[0]
    return named


def named_from_params(config: ModelConfig, params: Params) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_named`: float32 arrays by checkpoint name and layout.

    Args:
        config: the model configuration.
        params: dense parameters (quantised ones have no exact checkpoint form).

    Returns:
        Arrays by checkpoint name (fused projections split as the layout stores them).

    Raises:
        TypeError: ``params`` holds quantised weights.
    """

    def host(array: Any) -> np.ndarray:
        if not isinstance(array, jax.Array | np.ndarray):
            raise TypeError(f"named_from_params: expected dense arrays, received {type(array)}")
        return np.asarray(array, dtype=np.float32)

    named = {_EMBED: host(params.embed), _NORM: host(params.final_norm)}
    if params.lm_head is not None:
        named[_HEAD] = np.ascontiguousarray(host(params.lm_head).T)
    for i, layer in enumerate(params.layers):
        for field, tensors in _layer_tensors(config, i).items():
            value = host(getattr(layer, field))
            rows = value.T if value.ndim == 2 else value  # [out, in] or [out]
            start = 0
            for name, shape in tensors:
                named[name] = np.ascontiguousarray(rows[start : start + shape[0]])
                start += shape[0]
    return named


def write_cache(
    directory: Path,
    config: ModelConfig,
    named: Mapping[str, np.ndarray],
    tokenizer_json: str,
    extra: Mapping[str, Any],
) -> None:
    """Store converted weights, config and tokenizer under ``directory`` (atomically).

    Args:
        directory: the cache entry to create (replaced if it exists).
        config: the model configuration (stored as JSON).
        named: float32 arrays by Hugging Face name (stored in the device layout, aligned and
            uncompressed, so that a load maps them without a copy).
        tokenizer_json: the ``tokenizers`` JSON of the tokenizer.
        extra: other JSON-ready metadata (e.g. the chat template).
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    try:
        _check(config, named, "write_cache")
        save_aligned_npz(staging / "weights.npz", dict(_device_layout(config, named)))
        (staging / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        meta = {"config": config.to_dict(), "config_format": _CONFIG_FORMAT, **extra}
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def read_cache(directory: Path) -> tuple[ModelConfig, dict[str, np.ndarray], str, dict[str, Any]]:
    """Read an entry written by :func:`write_cache`.

    Returns:
        ``(config, named_arrays, tokenizer_json, meta)``: the arrays under their field paths in
        the device layout (what :func:`params_from_named` takes as is) and under their checkpoint
        names (views of the same pages).

    Raises:
        ModelLoadError: the entry is missing or unreadable (callers rebuild it).
    """
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        tokenizer_json = (directory / "tokenizer.json").read_text(encoding="utf-8")
        stored = map_npz(directory / "weights.npz")  # read-only views of one mapping
        if meta.get("config_format") != _CONFIG_FORMAT:
            raise KeyError(f"config_format {meta.get('config_format')!r} != {_CONFIG_FORMAT}")
        config = ModelConfig.from_dict(meta["config"])
        named = {**stored, **_checkpoint_views(config, stored)}
        _check(config, named, directory)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise ModelLoadError(
            f"{directory}: the converted-model cache entry is unreadable ({error}); delete it to "
            "rebuild."
        ) from error
    return config, named, tokenizer_json, meta
