"""Readers of model files: a GGUF file (llama.cpp) and a Hugging Face directory.

Each reader returns a :class:`Converted`: the :class:`ModelConfig`, float32 arrays under Hugging
Face Llama names and layouts, the tokenizer JSON and the chat template. GGUF tensors are
dequantised with the ``gguf`` package (Q4_0, Q4_1, Q8_0, F16, F32) and the Q/K projections, which
llama.cpp stores permuted for its interleaved rotary layout, are permuted back to the half-split
layout of Hugging Face. Any missing, corrupt or unsupported file raises ``ModelLoadError`` naming it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from decoders.config import ModelConfig
from decoders.tokenizer import tokenizer_json_from_gguf
from shield.errors import ModelLoadError

__all__ = ["SUPPORTED_GGUF_TYPES", "Converted", "read_gguf", "read_hf_directory", "unpermute_qk"]

#: GGUF tensor types this loader dequantises.
SUPPORTED_GGUF_TYPES: tuple[str, ...] = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")

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
    """A model file read into host memory, ready for :func:`decoders.weights.params_from_named`."""

    config: ModelConfig
    named: dict[str, np.ndarray]
    tokenizer_json: str
    chat_template: str | None


def unpermute_qk(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary permutation of a Q or K projection ``[heads * D, in]``."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _field(reader: Any, key: str, path: Path, default: Any = ...) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is ...:
            raise ModelLoadError(f"{path}: GGUF metadata key {key!r} is missing.")
        return default
    return field.contents()


def read_gguf(path: Path) -> Converted:
    """Read a llama-architecture GGUF file.

    Args:
        path: the ``.gguf`` file.

    Returns:
        The converted model.

    Raises:
        ModelLoadError: the file is missing, not a GGUF file, not a llama model, or holds a tensor
            type outside :data:`SUPPORTED_GGUF_TYPES`.
    """
    import gguf

    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file; pass an existing .gguf path.")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # the reader raises ValueError, struct.error, IndexError, ...
        raise ModelLoadError(f"{path}: not a readable GGUF file ({error}).") from error
    arch = _field(reader, "general.architecture", path)
    if arch != "llama":
        raise ModelLoadError(
            f"{path}: expected a 'llama' architecture GGUF, received {arch!r}; only Llama-family "
            "models are supported."
        )
    heads = int(_field(reader, "llama.attention.head_count", path))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv", path, heads))
    hidden = int(_field(reader, "llama.embedding_length", path))
    tokens = list(_field(reader, "tokenizer.ggml.tokens", path))
    names = {t.name for t in reader.tensors}
    eos = int(_field(reader, "tokenizer.ggml.eos_token_id", path))
    end_of_text = [i for i, t in enumerate(tokens[:64]) if t == "<|endoftext|>" and i != eos]
    bos = int(_field(reader, "tokenizer.ggml.bos_token_id", path, -1))
    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", path, False))
    config = ModelConfig(
        vocab_size=len(tokens),
        hidden_size=hidden,
        intermediate_size=int(_field(reader, "llama.feed_forward_length", path)),
        num_layers=int(_field(reader, "llama.block_count", path)),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=int(_field(reader, "llama.rope.dimension_count", path, hidden // heads)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", path, 10000.0)),
        rms_norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", path)),
        tie_embeddings="output.weight" not in names,
        max_position=int(_field(reader, "llama.context_length", path, 8192)),
        bos_token_id=bos if add_bos and bos >= 0 else None,
        eos_token_ids=(eos, *end_of_text),
    )
    named = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        if kind not in SUPPORTED_GGUF_TYPES:
            raise ModelLoadError(
                f"{path}: tensor {tensor.name!r} has type {kind}; supported: "
                f"{', '.join(SUPPORTED_GGUF_TYPES)}. Re-quantise the model to one of them."
            )
        try:
            array = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), np.float32)
        except Exception as error:
            raise ModelLoadError(f"{path}: tensor {tensor.name!r} is corrupt ({error}).") from error
        named[_hf_name(tensor.name)] = array
    for name, tensor_heads in (("q_proj", heads), ("k_proj", kv_heads)):
        for layer in range(config.num_layers):
            key = f"model.layers.{layer}.self_attn.{name}.weight"
            if key in named:
                named[key] = unpermute_qk(named[key], tensor_heads)
    tokenizer_json = tokenizer_json_from_gguf(
        tokens,
        list(_field(reader, "tokenizer.ggml.merges", path)),
        list(_field(reader, "tokenizer.ggml.token_type", path)),
    )
    template = _field(reader, "tokenizer.chat_template", path, None)
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


def _config_from_hf(values: dict[str, Any], path: Path) -> ModelConfig:
    if values.get("model_type") not in ("llama", "mistral", None):
        raise ModelLoadError(
            f"{path}: model_type {values.get('model_type')!r} is not supported; expected llama "
            "or mistral."
        )
    rope = values.get("rope_scaling") or values.get("rope_parameters") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ModelLoadError(
            f"{path}: rope scaling {rope!r} is not supported; only plain RoPE is implemented."
        )
    eos = values.get("eos_token_id")
    eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
    try:
        heads = int(values["num_attention_heads"])
        return ModelConfig(
            vocab_size=int(values["vocab_size"]),
            hidden_size=int(values["hidden_size"]),
            intermediate_size=int(values["intermediate_size"]),
            num_layers=int(values["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(values.get("num_key_value_heads") or heads),
            head_dim=int(values.get("head_dim") or values["hidden_size"] // heads),
            rope_theta=float(values.get("rope_theta", rope.get("rope_theta", 10000.0))),
            rms_norm_eps=float(values.get("rms_norm_eps", 1e-5)),
            tie_embeddings=bool(values.get("tie_word_embeddings", False)),
            max_position=int(values.get("max_position_embeddings", 8192)),
            eos_token_ids=eos_ids,
        )
    except KeyError as error:
        raise ModelLoadError(f"{path}: required key {error} is missing.") from error


def read_hf_directory(directory: Path) -> Converted:
    """Read a local Hugging Face model directory (config.json, *.safetensors, tokenizer.json).

    Raises:
        ModelLoadError: a required file is missing or unreadable, or the model is unsupported.
    """
    from safetensors import SafetensorError
    from safetensors.flax import load_file

    config = _config_from_hf(_read_json(directory / "config.json"), directory / "config.json")
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"{directory}: no *.safetensors weight file in the directory.")
    named: dict[str, np.ndarray] = {}
    for file in files:
        try:
            named.update({k: np.asarray(v, np.float32) for k, v in load_file(str(file)).items()})
        except (OSError, SafetensorError, ValueError) as error:
            raise ModelLoadError(f"{file}: not a readable safetensors file ({error}).") from error
    tokenizer_path = directory / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelLoadError(f"{tokenizer_path}: file is missing from the model directory.")
    tokenizer_config = directory / "tokenizer_config.json"
    template = None
    if tokenizer_config.is_file():
        template = _read_json(tokenizer_config).get("chat_template")
    if template is None and (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
    return Converted(
        config=config,
        named=named,
        tokenizer_json=tokenizer_path.read_text(encoding="utf-8"),
        chat_template=template,
    )
