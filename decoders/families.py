"""Model families: a Hugging Face ``config.json`` read into a :class:`ModelConfig`, or refused.

One model definition (:mod:`decoders.model`) serves every family; a family is a configuration of
it plus the tensor names of its checkpoints. :func:`config_from_hf` reads a ``config.json`` of a
supported ``model_type`` (:data:`MODEL_TYPES`) as transformers 5 would, defaults included, in both
the v5 (``rope_parameters``) and v4 (``rope_scaling`` + ``rope_theta``) spellings. Every key of
the file is either read, known not to change the math (:data:`IRRELEVANT_KEYS`), or set to the
value that turns its feature off; anything else raises :class:`ModelLoadError` naming the key and
its value, so a model is never loaded and then decoded differently from its definition.

:data:`TENSOR_NAMES` maps each :class:`decoders.model.LayerParams` field to the tensors under
``model.layers.{i}.`` it is made of, per checkpoint layout.

Example:
    >>> config = config_from_hf(json.load(open("config.json")), Path("config.json"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from decoders.config import ModelConfig
from decoders.rope import ROPE_KINDS, RopeScaling
from shield.errors import ModelLoadError

__all__ = ["IRRELEVANT_KEYS", "MODEL_TYPES", "TENSOR_NAMES", "config_from_hf"]

#: Keys that never change the computed logits (bookkeeping, training-only, tokenizer ids we do
#: not use). Any key outside these and the ones a family reads is refused.
IRRELEVANT_KEYS: frozenset[str] = frozenset(
    {
        "_name_or_path", "architectures", "auto_map", "transformers_version", "torch_dtype",
        "dtype", "use_cache", "initializer_range", "attention_dropout", "hidden_dropout",
        "resid_pdrop", "embd_pdrop", "pad_token_id", "output_attentions", "output_hidden_states",
        "return_dict", "id2label", "label2id", "problem_type", "chunk_size_feed_forward",
        "is_encoder_decoder", "tokenizer_class", "cache_implementation", "pretraining_tp",
        "tie_encoder_decoder", "add_cross_attention", "model_type", "bos_token_id",
    }
)  # fmt: skip

#: Checkpoint tensor names of each layer field, per layout; several names are concatenated
#: along their output rows (fused on the host, one layer at a time).
TENSOR_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "llama": {
        "attn_norm": ("input_layernorm.weight",),
        "wqkv": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
        "bqkv": ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
        "q_norm": ("self_attn.q_norm.weight",),
        "k_norm": ("self_attn.k_norm.weight",),
        "wo": ("self_attn.o_proj.weight",),
        "mlp_norm": ("post_attention_layernorm.weight",),
        "w_gate_up": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
        "w_down": ("mlp.down_proj.weight",),
    },
}
TENSOR_NAMES["gemma"] = {
    **TENSOR_NAMES["llama"],
    "post_attn_norm": ("post_attention_layernorm.weight",),
    "mlp_norm": ("pre_feedforward_layernorm.weight",),
    "post_mlp_norm": ("post_feedforward_layernorm.weight",),
}
TENSOR_NAMES["phi3"] = {
    **TENSOR_NAMES["llama"],
    "wqkv": ("self_attn.qkv_proj.weight",),
    "w_gate_up": ("mlp.gate_up_proj.weight",),
}

_ROPE_KEYS = frozenset(
    {
        "rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
        "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor",
        "mscale", "mscale_all_dim", "truncate", "partial_rotary_factor",
    }
)  # fmt: skip
_SLIDING, _FULL = "sliding_attention", "full_attention"
_ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


class _Keys:
    """The keys of one ``config.json``, recording which were read."""

    def __init__(self, values: Mapping[str, Any], path: Path) -> None:
        self.values, self.path, self.read = dict(values), path, set[str]()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        value = self.values.get(key)
        return default if value is None else value

    def require(self, key: str) -> Any:
        self.read.add(key)
        if key not in self.values or self.values[key] is None:
            raise ModelLoadError(f"{self.path}: required key {key!r} is missing.")
        return self.values[key]

    def off(self, key: str, *off: Any) -> None:
        """Accept ``key`` only at a value that turns its feature off (or absent)."""
        self.read.add(key)
        if key in self.values and self.values[key] not in (None, *off):
            self.refuse(key, self.values[key])

    def refuse(self, key: str, value: Any, why: str = "is not implemented") -> NoReturn:
        model_type = self.values.get("model_type")
        raise ModelLoadError(
            f"{self.path}: {key}={value!r} {why} for model_type {model_type!r}; decoding it "
            "would differ from the model's definition, so the model is refused. Use a "
            "checkpoint without it, or remove the key if it does not apply."
        )

    def check_all_read(self) -> None:
        for key in sorted(self.values):
            if key not in self.read and key not in IRRELEVANT_KEYS:
                self.refuse(key, self.values[key], "is an unknown config key")


def _rope(
    keys: _Keys, params: Mapping[str, Any], theta: float, where: str
) -> tuple[float, RopeScaling]:
    """One (not nested) RoPE dict, with defaults filled as transformers' standardisation does."""
    for name in params:
        if name not in _ROPE_KEYS:
            keys.refuse(f"{where}.{name}", params[name])
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_KINDS:
        keys.refuse(f"{where}.rope_type", kind, f"(implemented: {', '.join(ROPE_KINDS)})")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        keys.refuse(f"{where}.partial_rotary_factor", params["partial_rotary_factor"])
    theta = float(params.get("rope_theta", theta))
    if kind == "default":
        return theta, RopeScaling()
    context = keys.get("max_position_embeddings")
    original = keys.get("original_max_position_embeddings") or params.get(
        "original_max_position_embeddings", context
    )
    factor = params.get("factor")
    if factor is None and kind == "yarn" and context and original:
        factor = context / original
    if factor is None:
        keys.refuse(f"{where}.factor", None, f"is required by rope_type {kind!r}")

    def number(name: str, default: float | None) -> Any:
        value = params.get(name)
        return default if value is None else float(value)

    try:
        scaling = RopeScaling(
            kind=kind,
            factor=float(factor),
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_max_position=int(original or 0),
            beta_fast=number("beta_fast", 32.0) or 32.0,
            beta_slow=number("beta_slow", 1.0) or 1.0,
            attention_factor=number("attention_factor", None),
            mscale=number("mscale", None),
            mscale_all_dim=number("mscale_all_dim", None),
            truncate=bool(params.get("truncate", True)),
        )
    except Exception as error:  # DecoderError from validation, or a non-numeric value
        raise ModelLoadError(
            f"{keys.path}: {where} = {dict(params)!r} is invalid ({error})."
        ) from error
    return theta, scaling


def _rope_dicts(keys: _Keys) -> tuple[dict[str, Any], str]:
    """The RoPE dict transformers uses: ``rope_scaling`` (v4) wins over ``rope_parameters``."""
    scaling, parameters = keys.get("rope_scaling"), keys.get("rope_parameters")
    if scaling:
        return dict(scaling), "rope_scaling"
    return dict(parameters or {}), "rope_parameters"


def _layer_windows(
    keys: _Keys, layers: int, types: list[str] | None, window: Any
) -> tuple[int | None, ...]:
    if types is None:
        return ()
    if len(types) != layers or any(t not in (_SLIDING, _FULL) for t in types):
        keys.refuse("layer_types", types, f"(expected {layers} of {_SLIDING!r}/{_FULL!r})")
    if _SLIDING in types and not (isinstance(window, int) and window > 0):
        keys.refuse("sliding_window", window, "is not a positive int, yet layers slide,")
    return tuple(window if t == _SLIDING else None for t in types)


def _qwen_windows(keys: _Keys, layers: int) -> tuple[int | None, ...]:
    # Qwen2/3: the window applies only with use_sliding_window, from max_window_layers on.
    window, first = keys.get("sliding_window"), int(keys.get("max_window_layers", 28))
    if not keys.get("use_sliding_window", False):
        window = None
    types = keys.get("layer_types")
    if types is None and window is not None:
        types = [_SLIDING if i >= first else _FULL for i in range(layers)]
    return _layer_windows(keys, layers, types, window)


def _base(keys: _Keys, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The keys every family shares, with that family's transformers defaults."""
    heads = int(keys.require("num_attention_heads"))
    hidden = int(keys.require("hidden_size"))
    eos = keys.get("eos_token_id")
    eos_ids = (
        tuple(int(i) for i in eos)
        if isinstance(eos, list)
        else (() if eos is None else (int(eos),))
    )
    return {
        "vocab_size": int(keys.require("vocab_size")),
        "hidden_size": hidden,
        "intermediate_size": int(keys.require("intermediate_size")),
        "num_layers": int(keys.require("num_hidden_layers")),
        "num_heads": heads,
        "num_kv_heads": int(keys.get("num_key_value_heads", heads)),
        "head_dim": int(keys.get("head_dim", defaults.get("head_dim") or hidden // heads)),
        "rms_norm_eps": float(keys.get("rms_norm_eps", defaults["rms_norm_eps"])),
        "tie_embeddings": bool(keys.get("tie_word_embeddings", defaults["tie"])),
        "max_position": int(keys.get("max_position_embeddings", defaults["context"])),
        "eos_token_ids": eos_ids,
    }


def _activation(keys: _Keys, key: str, default: str) -> str:
    name = keys.get(key, default)
    if name not in _ACTIVATIONS:
        keys.refuse(key, name, f"(implemented: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]


def _global_rope(keys: _Keys, values: dict[str, Any]) -> None:
    params, where = _rope_dicts(keys)
    theta, scaling = _rope(keys, params, float(keys.get("rope_theta", 10000.0)), where)
    values.update(rope_theta=theta, rope_scaling=scaling)


def _llama_like(keys: _Keys, context: int) -> dict[str, Any]:
    keys.off("attention_bias", False)  # a bias on q, k, v and o: not implemented
    keys.off("mlp_bias", False)
    values = _base(keys, {"rms_norm_eps": 1e-6, "tie": False, "context": context})
    values["activation"] = _activation(keys, "hidden_act", "silu")
    _global_rope(keys, values)
    return values


def _mistral(keys: _Keys) -> dict[str, Any]:
    values = _llama_like(keys, 131072)
    window = keys.get("sliding_window")
    if window is not None:
        values["layer_windows"] = (int(window),) * values["num_layers"]
    return values


def _qwen2(keys: _Keys) -> dict[str, Any]:
    if keys.values.get("attention_bias"):  # transformers' Qwen2 reads no such flag: q/k/v
        keys.values["attention_bias"] = False  # always have biases, o never
    keys.off("use_mrope", False)
    values = _llama_like(keys, 32768)
    values.update(qkv_bias=True, layer_windows=_qwen_windows(keys, values["num_layers"]))
    return values


def _qwen3(keys: _Keys) -> dict[str, Any]:
    values = _llama_like(keys, 32768)
    values["head_dim"] = int(keys.get("head_dim", 128))
    values.update(qk_norm=True, layer_windows=_qwen_windows(keys, values["num_layers"]))
    return values


def _phi3(keys: _Keys) -> dict[str, Any]:
    values = _base(keys, {"rms_norm_eps": 1e-5, "tie": False, "context": 4096})
    values.update(activation=_activation(keys, "hidden_act", "silu"), layout="phi3")
    keys.off("partial_rotary_factor", 1.0)
    keys.off("attention_bias", False)
    keys.get("original_max_position_embeddings")  # read by longrope only, which is refused
    params, where = _rope_dicts(keys)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":  # transformers' Phi-3 turns su/yarn into longrope and allows no other
        keys.refuse(f"{where}.rope_type", kind, "(Phi-3 scaling is longrope)")
    _global_rope(keys, values)
    window = keys.get("sliding_window")
    if window is not None:
        values["layer_windows"] = (int(window),) * values["num_layers"]
    return values


def _gemma(
    keys: _Keys, context: int, softcaps: tuple[float | None, float | None]
) -> dict[str, Any]:
    values = _base(keys, {"rms_norm_eps": 1e-6, "tie": True, "context": context, "head_dim": 256})
    keys.get("hidden_act")  # transformers' Gemma reads hidden_activation only
    keys.off("attention_bias", False)
    keys.off("use_bidirectional_attention", False)
    keys.get("sliding_window_size")  # Gemma 2's former name of sliding_window, unread in v5
    values.update(
        layout="gemma",
        activation=_activation(keys, "hidden_activation", "gelu_pytorch_tanh"),
        sandwich_norms=True,
        norm_offset=1.0,
        scale_embeddings=True,
        attention_scale=float(keys.get("query_pre_attn_scalar", 256)) ** -0.5,
    )
    for name, field, default in (
        ("attn_logit_softcapping", "attn_softcap", softcaps[0]),
        ("final_logit_softcapping", "final_softcap", softcaps[1]),
    ):
        keys.read.add(name)
        value = keys.values.get(name, default)  # an explicit null turns it off
        values[field] = None if value is None else float(value)
    return values


def _gemma2(keys: _Keys) -> dict[str, Any]:
    values = _gemma(keys, 8192, (50.0, 30.0))
    layers = values["num_layers"]
    types = keys.get("layer_types") or [_SLIDING if i % 2 == 0 else _FULL for i in range(layers)]
    values["layer_windows"] = _layer_windows(keys, layers, types, keys.get("sliding_window", 4096))
    _global_rope(keys, values)
    return values


def _gemma3(keys: _Keys) -> dict[str, Any]:
    values = _gemma(keys, 131072, (None, None))
    values["qk_norm"] = True
    layers = values["num_layers"]
    pattern = int(keys.get("sliding_window_pattern", keys.get("_sliding_window_pattern", 6)))
    types = keys.get("layer_types") or [
        _SLIDING if (i + 1) % pattern else _FULL for i in range(layers)
    ]
    values["layer_windows"] = _layer_windows(keys, layers, types, keys.get("sliding_window", 4096))
    scaling, parameters = keys.get("rope_scaling"), dict(keys.get("rope_parameters") or {})
    nested = set(parameters) & {_SLIDING, _FULL}
    if nested and set(parameters) - nested:
        keys.refuse("rope_parameters", parameters, "mixes per-layer-type and global entries")
    full = dict(parameters.get(_FULL) or {}) if nested else dict(parameters)
    if scaling:  # v4: rope_scaling applies to the global layers
        full.update(scaling)
    local = dict(parameters.get(_SLIDING) or {}) if nested else {}
    theta, rope = _rope(keys, full, float(keys.get("rope_theta", 1e6)), "rope_parameters.full")
    local_theta, local_rope = _rope(
        keys, local, float(keys.get("rope_local_base_freq", 1e4)), "rope_parameters.sliding"
    )
    values.update(
        rope_theta=theta,
        rope_scaling=rope,
        sliding_rope_theta=local_theta,
        sliding_rope_scaling=local_rope,
    )
    return values


#: The supported ``model_type`` values and how each is read.
MODEL_TYPES: dict[str, Callable[[_Keys], dict[str, Any]]] = {
    "llama": lambda keys: _llama_like(keys, 2048),
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma2": _gemma2,
    "gemma3_text": _gemma3,
    "phi3": _phi3,
}


def config_from_hf(values: Mapping[str, Any], path: Path) -> ModelConfig:
    """Read a Hugging Face ``config.json`` (parsed) of a supported family.

    Args:
        values: the parsed JSON object.
        path: the file, named in errors.

    Returns:
        The configuration (float32; callers replace the dtype).

    Raises:
        ModelLoadError: an unsupported ``model_type``, a missing required key, or any key whose
            value we do not implement (the message names the key and value).
    """
    keys = _Keys(values, path)
    model_type = values.get("model_type", "llama")
    if model_type not in MODEL_TYPES:
        raise ModelLoadError(
            f"{path}: model_type {model_type!r} is not supported; supported: "
            f"{', '.join(MODEL_TYPES)}."
        )
    fields = MODEL_TYPES[model_type](keys)
    keys.check_all_read()
    head_dim = fields["head_dim"]
    if head_dim % 2 or not math.isfinite(fields["rope_theta"]) or fields["rope_theta"] <= 0:
        raise ModelLoadError(
            f"{path}: head_dim={head_dim} and rope_theta={fields['rope_theta']}: expected an even "
            "head_dim and a positive rope_theta."
        )
    try:
        return ModelConfig(**fields)
    except Exception as error:  # DecoderError: shapes that do not fit together
        raise ModelLoadError(f"{path}: {error}") from error
