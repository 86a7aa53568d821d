"""From named host arrays to :class:`decoders.model.Params`, and the on-disk weight cache.

Both loaders (GGUF and Hugging Face directories) produce the same thing: a :class:`ModelConfig`
and a dict of float32 numpy arrays under Hugging Face Llama names with Hugging Face layouts
(``[out, in]`` projections, half-split RoPE). :func:`params_from_named` is the one place that
knows how those names map onto :class:`Params`; the cache stores the named arrays as one ``.npz``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decoders.config import ModelConfig
from decoders.linear import quantize_linear
from decoders.model import LayerParams, Params
from shield.errors import ModelLoadError

__all__ = [
    "expected_shapes",
    "named_from_params",
    "params_from_named",
    "read_cache",
    "write_cache",
]

#: Hugging Face name of each per-layer tensor (``{i}`` = layer index); :class:`LayerParams` fuses
#: q/k/v into ``wqkv`` and gate/up into ``w_gate_up``.
_LAYER_NAMES: dict[str, str] = {
    "attn_norm": "model.layers.{i}.input_layernorm.weight",
    "wq": "model.layers.{i}.self_attn.q_proj.weight",
    "wk": "model.layers.{i}.self_attn.k_proj.weight",
    "wv": "model.layers.{i}.self_attn.v_proj.weight",
    "wo": "model.layers.{i}.self_attn.o_proj.weight",
    "mlp_norm": "model.layers.{i}.post_attention_layernorm.weight",
    "w_gate": "model.layers.{i}.mlp.gate_proj.weight",
    "w_up": "model.layers.{i}.mlp.up_proj.weight",
    "w_down": "model.layers.{i}.mlp.down_proj.weight",
}
_EMBED, _NORM, _HEAD = "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a model of ``config`` needs, by Hugging Face name, in HF layout."""
    c = config
    h, n, k, d, i = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    per_layer = {
        "attn_norm": (h,),
        "wq": (n * d, h),
        "wk": (k * d, h),
        "wv": (k * d, h),
        "wo": (h, n * d),
        "mlp_norm": (h,),
        "w_gate": (i, h),
        "w_up": (i, h),
        "w_down": (h, i),
    }
    shapes = {_EMBED: (c.vocab_size, h), _NORM: (h,)}
    if not c.tie_embeddings:
        shapes[_HEAD] = (c.vocab_size, h)
    for layer in range(c.num_layers):
        for field, name in _LAYER_NAMES.items():
            shapes[name.format(i=layer)] = per_layer[field]
    return shapes


def params_from_named(
    config: ModelConfig,
    named: Mapping[str, np.ndarray],
    source: str | os.PathLike[str],
    *,
    int8: bool = False,
) -> Params:
    """Check every tensor's presence and shape, then build :class:`Params` in ``config.dtype``.

    Args:
        config: the model shapes.
        named: arrays by Hugging Face name (extra names, e.g. rotary caches, are ignored).
        source: the file the arrays came from, named in errors.
        int8: quantise projections and embeddings straight from ``named``
            (:func:`decoders.linear.quantize_linear`), never holding their dense device copy.

    Returns:
        The parameters; dense projections are transposed to ``[in, out]``.

    Raises:
        ModelLoadError: a tensor is missing or has the wrong shape.
    """
    for name, shape in expected_shapes(config).items():
        if name not in named:
            raise ModelLoadError(
                f"{source}: tensor {name!r} is missing (expected shape {shape}); the file is "
                "incomplete or not a Llama-family model."
            )
        if tuple(named[name].shape) != shape:
            raise ModelLoadError(
                f"{source}: tensor {name!r} has shape {tuple(named[name].shape)}, expected "
                f"{shape}; the file does not match its own configuration."
            )
    dtype = config.jnp_dtype

    def put(array: np.ndarray, transpose: bool) -> Any:
        return jnp.asarray(np.ascontiguousarray(array.T if transpose else array), dtype=dtype)

    def linear(rows: np.ndarray) -> Any:
        # rows: HF layout [out, in]; dense ours is [in, out].
        return quantize_linear(rows.T) if int8 else put(rows, True)

    def projection(layer: int, *fields: str) -> Any:
        # Fused projections side by side: their output rows concatenated.
        return linear(np.concatenate([named[_LAYER_NAMES[f].format(i=layer)] for f in fields]))

    layers = tuple(
        LayerParams(
            attn_norm=put(named[_LAYER_NAMES["attn_norm"].format(i=layer)], False),
            wqkv=projection(layer, "wq", "wk", "wv"),
            wo=projection(layer, "wo"),
            mlp_norm=put(named[_LAYER_NAMES["mlp_norm"].format(i=layer)], False),
            w_gate_up=projection(layer, "w_gate", "w_up"),
            w_down=projection(layer, "w_down"),
        )
        for layer in range(config.num_layers)
    )
    head = None if config.tie_embeddings else linear(named[_HEAD])
    return Params(
        embed=linear(named[_EMBED]) if int8 else put(named[_EMBED], False),
        layers=layers,
        final_norm=put(named[_NORM], False),
        lm_head=head,
    )


def named_from_params(config: ModelConfig, params: Params) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_named`: float32 arrays by Hugging Face name and layout.

    Args:
        config: the model shapes.
        params: dense parameters (quantised ones have no exact Hugging Face form).

    Returns:
        Arrays by Hugging Face name (fused projections split again, ``[out, in]`` layouts).

    Raises:
        TypeError: ``params`` holds quantised weights.
    """
    c = config
    splits = {
        "wqkv": (("wq", c.num_heads * c.head_dim), ("wk", c.num_kv_heads * c.head_dim), ("wv", 0)),
        "wo": (("wo", 0),),
        "w_gate_up": (("w_gate", c.intermediate_size), ("w_up", 0)),
        "w_down": (("w_down", 0),),
    }

    def host(array: Any) -> np.ndarray:
        if not isinstance(array, jax.Array | np.ndarray):
            raise TypeError(f"named_from_params: expected dense arrays, received {type(array)}")
        return np.asarray(array, dtype=np.float32)

    named = {_EMBED: host(params.embed), _NORM: host(params.final_norm)}
    if params.lm_head is not None:
        named[_HEAD] = np.ascontiguousarray(host(params.lm_head).T)
    for i, layer in enumerate(params.layers):
        for norm in ("attn_norm", "mlp_norm"):
            named[_LAYER_NAMES[norm].format(i=i)] = host(getattr(layer, norm))
        for fused, parts in splits.items():
            rows = host(getattr(layer, fused)).T  # [out, in]
            start = 0
            for field, size in parts:
                stop = start + size if size else rows.shape[0]
                named[_LAYER_NAMES[field].format(i=i)] = np.ascontiguousarray(rows[start:stop])
                start = stop
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
        named: float32 arrays by Hugging Face name (stored uncompressed for fast reads).
        tokenizer_json: the ``tokenizers`` JSON of the tokenizer.
        extra: other JSON-ready metadata (e.g. the chat template).
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    try:
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in named.items()}
        save: Any = np.savez  # numpy's stub types **kwargs as bool
        save(staging / "weights.npz", **arrays)
        (staging / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        meta = {"config": config.to_dict(), **extra}
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
        ``(config, named_arrays, tokenizer_json, meta)``.

    Raises:
        ModelLoadError: the entry is missing or unreadable (callers rebuild it).
    """
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        tokenizer_json = (directory / "tokenizer.json").read_text(encoding="utf-8")
        with np.load(directory / "weights.npz") as archive:
            named = {name: archive[name] for name in archive.files}
        config = ModelConfig.from_dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise ModelLoadError(
            f"{directory}: the converted-model cache entry is unreadable ({error}); delete it to "
            "rebuild."
        ) from error
    return config, named, tokenizer_json, meta
