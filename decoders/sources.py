"""Readers of model files: a GGUF file (llama.cpp) and a Hugging Face directory.

Each reader returns a :class:`Converted`: the :class:`ModelConfig`, the tensors under their
checkpoint names and layouts, the tokenizer JSON and the chat template. A Hugging Face directory's
safetensors are not read here: :class:`~decoders.checkpoint.SafetensorsCheckpoint` indexes them and
each tensor is read in its own dtype when the loader places it. GGUF tensors are
dequantised with the ``gguf`` package (Q4_0, Q4_1, Q8_0, F16, F32; the header is parsed by
:mod:`decoders.gguf_file`) and the Q/K projections, which
llama.cpp stores permuted for its interleaved rotary layout, are permuted back to the half-split
layout of Hugging Face. Any missing, corrupt or unsupported file raises ``ModelLoadError`` naming it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from decoders.checkpoint import SafetensorsCheckpoint
from decoders.config import ModelConfig
from decoders.families import config_from_hf
from decoders.gguf_file import GGUFFile, open_gguf
from decoders.tokenizer import ChatSettings, tokenizer_json_from_gguf
from shield.errors import ModelLoadError

__all__ = [
    "SUPPORTED_GGUF_TYPES",
    "Converted",
    "gguf_config",
    "gguf_tokenizer",
    "open_gguf_checked",
    "read_gguf",
    "read_hf_directory",
    "unpermute_qk",
]

#: GGUF tensor types this loader dequantises.
SUPPORTED_GGUF_TYPES: tuple[str, ...] = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")

_GGUF_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Converted:
    """A model file, ready for :func:`decoders.weights.params_from_named`.

    ``named`` is a dict of host arrays for a GGUF file and a lazy
    :class:`~decoders.checkpoint.SafetensorsCheckpoint` (each tensor read when looked up, in the
    file's dtype) for a Hugging Face directory. ``chat`` holds the template and its special
    tokens; ``checkpoint_dtype`` the dtype the directory's ``config.json`` declares.
    """

    config: ModelConfig
    named: Mapping[str, np.ndarray]
    tokenizer_json: str
    chat_template: str | None
    chat: ChatSettings | None = None
    checkpoint_dtype: str | None = None
    #: ``named`` maps the converted-model cache, whose files are replaced and never rewritten in
    #: place, so a device may alias its pages (:func:`decoders.sharding.placer`'s ``adopt``).
    adoptable: bool = False


def unpermute_qk(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary permutation of a Q or K projection ``[heads * D, ...]``.

    Only whole rows move, so the rows may be float weights ``[heads * D, in]`` or the bytes of
    their blocks ``[heads * D, row_bytes]`` alike (blocks run along the input dimension).
    """
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _field(metadata: Mapping[str, Any], key: str, path: Path, default: Any = ...) -> Any:
    if key not in metadata:
        if default is ...:
            raise ModelLoadError(f"{path}: GGUF metadata key {key!r} is missing.")
        return default
    return metadata[key]


def gguf_config(gguf_file: GGUFFile) -> ModelConfig:
    """The :class:`ModelConfig` of a llama-architecture GGUF file (float32).

    Raises:
        ModelLoadError: not a llama model, or a required metadata key is missing.
    """
    meta, path = gguf_file.metadata, gguf_file.path
    arch = _field(meta, "general.architecture", path)
    if arch != "llama":
        raise ModelLoadError(
            f"{path}: expected a 'llama' architecture GGUF, received {arch!r}; only Llama-family "
            "models are supported."
        )
    heads = int(_field(meta, "llama.attention.head_count", path))
    hidden = int(_field(meta, "llama.embedding_length", path))
    tokens = _field(meta, "tokenizer.ggml.tokens", path)
    eos = int(_field(meta, "tokenizer.ggml.eos_token_id", path))
    # Index the first few ids one by one: a GGUF string array decodes them alone.
    head = (tokens[i] for i in range(min(64, len(tokens))))
    end_of_text = [i for i, t in enumerate(head) if t == "<|endoftext|>" and i != eos]
    bos = int(_field(meta, "tokenizer.ggml.bos_token_id", path, -1))
    add_bos = bool(_field(meta, "tokenizer.ggml.add_bos_token", path, False))
    return ModelConfig(
        vocab_size=len(tokens),
        hidden_size=hidden,
        intermediate_size=int(_field(meta, "llama.feed_forward_length", path)),
        num_layers=int(_field(meta, "llama.block_count", path)),
        num_heads=heads,
        num_kv_heads=int(_field(meta, "llama.attention.head_count_kv", path, heads)),
        head_dim=int(_field(meta, "llama.rope.dimension_count", path, hidden // heads)),
        rope_theta=float(_field(meta, "llama.rope.freq_base", path, 10000.0)),
        rms_norm_eps=float(_field(meta, "llama.attention.layer_norm_rms_epsilon", path)),
        tie_embeddings="output.weight" not in gguf_file.tensors,
        max_position=int(_field(meta, "llama.context_length", path, 8192)),
        bos_token_id=bos if add_bos and bos >= 0 else None,
        eos_token_ids=(eos, *end_of_text),
    )


def gguf_tokenizer(gguf_file: GGUFFile) -> tuple[str, str | None]:
    """``(tokenizer_json, chat_template)`` of a GGUF file's vocabulary and template.

    Raises:
        ModelLoadError: a tokenizer metadata key is missing.
    """
    meta, path = gguf_file.metadata, gguf_file.path
    tokenizer_json = tokenizer_json_from_gguf(
        list(_field(meta, "tokenizer.ggml.tokens", path)),
        list(_field(meta, "tokenizer.ggml.merges", path)),
        list(_field(meta, "tokenizer.ggml.token_type", path)),
    )
    return tokenizer_json, _field(meta, "tokenizer.chat_template", path, None)


def open_gguf_checked(path: Path) -> GGUFFile:
    """:func:`~decoders.gguf_file.open_gguf` after checking the file exists.

    Raises:
        ModelLoadError: the file is missing or not a readable GGUF file.
    """
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file; pass an existing .gguf path.")
    return open_gguf(path)


def read_gguf(path: Path) -> Converted:
    """Read a llama-architecture GGUF file, every tensor dequantised to float32.

    Args:
        path: the ``.gguf`` file.

    Returns:
        The converted model.

    Raises:
        ModelLoadError: the file is missing, not a GGUF file, not a llama model, or holds a tensor
            type outside :data:`SUPPORTED_GGUF_TYPES`.
    """
    import gguf

    gguf_file = open_gguf_checked(path)
    config = gguf_config(gguf_file)
    named = {}
    for tensor in gguf_file.tensors.values():
        if tensor.type_name not in SUPPORTED_GGUF_TYPES:
            raise ModelLoadError(
                f"{path}: tensor {tensor.name!r} has type {tensor.type_name}; supported: "
                f"{', '.join(SUPPORTED_GGUF_TYPES)}. Re-quantise the model to one of them."
            )
        kind = gguf.GGMLQuantizationType[tensor.type_name]
        try:
            array = np.asarray(gguf.quants.dequantize(tensor.data, kind), np.float32)
        except Exception as error:
            raise ModelLoadError(f"{path}: tensor {tensor.name!r} is corrupt ({error}).") from error
        named[_hf_name(tensor.name)] = array
    for name, tensor_heads in (("q_proj", config.num_heads), ("k_proj", config.num_kv_heads)):
        for layer in range(config.num_layers):
            key = f"model.layers.{layer}.self_attn.{name}.weight"
            if key in named:
                named[key] = unpermute_qk(named[key], tensor_heads)
    tokenizer_json, template = gguf_tokenizer(gguf_file)
    return Converted(
        config=config, named=named, tokenizer_json=tokenizer_json, chat_template=template
    )


def _hf_name(gguf_name: str) -> str:
    if gguf_name in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[gguf_name]
    parts = gguf_name.split(".")  # blk.{i}.{kind}.weight
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _GGUF_LAYER:
        return f"model.layers.{parts[1]}.{_GGUF_LAYER[parts[2]]}.{parts[3]}"
    return gguf_name  # unknown tensors pass through and are ignored


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{path}: file is missing from the model directory.") from error
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path}: not readable JSON ({error}).") from error


def read_hf_directory(directory: Path) -> Converted:
    """Read a local Hugging Face model directory (config.json, *.safetensors, tokenizer.json).

    Raises:
        ModelLoadError: a required file is missing or unreadable, or the model is unsupported.
    """
    values = _read_json(directory / "config.json")
    config = config_from_hf(values, directory / "config.json")
    named = SafetensorsCheckpoint.open(directory)  # headers only; tensors are read when placed
    tokenizer_path = directory / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelLoadError(f"{tokenizer_path}: file is missing from the model directory.")
    settings = ChatSettings.from_directory(directory)
    return Converted(
        config=config,
        named=named,
        tokenizer_json=tokenizer_path.read_text(encoding="utf-8"),
        chat_template=settings.template,
        chat=settings,
        checkpoint_dtype=checkpoint_dtype(values, directory / "config.json"),
    )


def checkpoint_dtype(values: Mapping[str, Any], path: Path) -> str | None:
    """The dtype a Hugging Face ``config.json`` declares for its weights (``dtype`` in
    transformers 5, ``torch_dtype`` before), as a :data:`decoders.config.DTYPES` name.

    ``float16`` maps to ``float32`` (exact widening: the decoder has no float16 mode).

    Returns:
        ``"float32"``, ``"bfloat16"``, or None when the config declares none.

    Raises:
        ModelLoadError: the declared dtype is not a floating-point dtype the decoder can hold.
    """
    declared = values.get("dtype") or values.get("torch_dtype")
    if declared is None:
        return None
    name = str(declared).removeprefix("torch.")
    mapped = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float32"}.get(name)
    if mapped is None:
        raise ModelLoadError(
            f"{path}: dtype {declared!r} is not supported; expected float32, bfloat16 or float16 "
            "(pass dtype= to load_model to choose the decoder's dtype)."
        )
    return mapped
