"""Tiny random Hugging Face checkpoints of every supported family, written by transformers itself.

:data:`FAMILIES` names the families the decoder supports; :func:`hf_config` builds a tiny float32
transformers config for one (hidden 64, 2–4 layers, a vocabulary equal to the tiny tokenizer's,
sliding windows of 8 so that 64-token tests cross them), and :func:`write_checkpoint` writes a
directory a user would download: ``config.json``, ``model.safetensors``, ``tokenizer.json`` and
``tokenizer_config.json`` (ChatML template). Weights are random (``torch.manual_seed``); nothing is
downloaded. ``overrides`` replace config keys, e.g. for checkpoints of realistic shape:

Example:
    >>> path = write_checkpoint("gemma2", tmp / "g2", dtype="bfloat16",
    ...                         overrides={"hidden_size": 1024})  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from decoders.tokenizer import tokenizer_json_from_gguf
from shield.lifting import unicode_to_byte

__all__ = [
    "CHAT_TEMPLATE",
    "FAMILIES",
    "hf_config",
    "hf_model",
    "tokenizer_json",
    "tokenizer_tokens",
    "write_checkpoint",
]

#: The families every test covers, in a fixed order.
FAMILIES: tuple[str, ...] = (
    "llama",
    "llama3_rope",
    "qwen2",
    "qwen3",
    "mistral_sliding",
    "gemma2",
    "gemma3",
    "phi3",
)

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_MERGES = ("Ġ t", "h e", "Ġt he", "l l", "o r")
#: ChatML, the template written into ``tokenizer_config.json``.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_BASE_VOCAB = len(SPECIALS) + 256 + len(_MERGES)  # 264
_WINDOW = 8

# Shapes shared by every family: 4 query heads over 2 key/value heads of width 16.
_COMMON: dict[str, Any] = {
    "vocab_size": _BASE_VOCAB,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "tie_word_embeddings": False,
    # Weights large enough that every feature (soft-caps, windows, RoPE scaling) moves the logits.
    "initializer_range": 0.1,
}

# (transformers config class name, keys on top of _COMMON) per family.
_FAMILY_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", {"rope_parameters": {"rope_type": "default", "rope_theta": 1000.0}}),
    "llama3_rope": (
        "LlamaConfig",
        {
            "num_hidden_layers": 2,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        },
    ),
    "qwen2": (
        "Qwen2Config",
        {
            "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
    ),
    "qwen3": (
        "Qwen3Config",
        {"head_dim": 32, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}},
    ),
    "mistral_sliding": (
        "MistralConfig",
        {"sliding_window": _WINDOW, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}},
    ),
    "gemma2": (
        "Gemma2Config",
        {
            "num_hidden_layers": 4,
            "head_dim": 16,
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 24,
            "sliding_window": _WINDOW,
            # Small caps so random weights reach them (the real models use 50 and 30).
            "attn_logit_softcapping": 5.0,
            "final_logit_softcapping": 3.0,
            "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e4},
        },
    ),
    "gemma3": (
        "Gemma3TextConfig",
        {
            "num_hidden_layers": 4,
            "head_dim": 16,
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 16,
            "sliding_window": _WINDOW,
            "layer_types": [
                "sliding_attention",
                "sliding_attention",
                "full_attention",
                "sliding_attention",
            ],
            "tie_word_embeddings": True,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            },
        },
    ),
    "phi3": (
        "Phi3Config",
        {
            "sliding_window": 2 * _WINDOW,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e4},
        },
    ),
}


def tokenizer_tokens(vocab_size: int = _BASE_VOCAB) -> tuple[list[str], list[str], list[int]]:
    """Specials, the 256 byte symbols, the merged tokens, then ``<|extra_N|>`` up to ``vocab_size``.

    Returns:
        ``(tokens, merges, token_types)`` in GGUF metadata form (type 3 = special).
    """
    if vocab_size < _BASE_VOCAB:
        raise ValueError(f"vocab_size must be at least {_BASE_VOCAB}, received {vocab_size}")
    byte_symbols = sorted(unicode_to_byte(), key=lambda ch: unicode_to_byte()[ch])
    merged = ["".join(m.split(" ")) for m in _MERGES]
    extra = [f"<|extra_{i}|>" for i in range(vocab_size - _BASE_VOCAB)]
    tokens = [*SPECIALS, *byte_symbols, *merged, *extra]
    types = [3] * len(SPECIALS) + [1] * (len(byte_symbols) + len(merged)) + [3] * len(extra)
    return tokens, list(_MERGES), types


def tokenizer_json(vocab_size: int = _BASE_VOCAB) -> str:
    """The ``tokenizers`` JSON of the byte-level BPE whose vocabulary is exactly ``vocab_size``."""
    return tokenizer_json_from_gguf(*tokenizer_tokens(vocab_size))


def hf_config(
    family: str, *, dtype: str = "float32", overrides: Mapping[str, Any] | None = None
) -> Any:
    """The tiny transformers config of ``family`` (eager attention, so soft-capping applies).

    Args:
        family: one of :data:`FAMILIES`.
        dtype: ``"float32"`` or ``"bfloat16"`` (stored as the config's ``dtype``).
        overrides: config keys replacing the tiny defaults.

    Returns:
        A ``transformers.PretrainedConfig``.
    """
    import transformers

    if family not in _FAMILY_CONFIGS:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    class_name, keys = _FAMILY_CONFIGS[family]
    values = {**_COMMON, **json.loads(json.dumps(keys)), **dict(overrides or {})}
    config = getattr(transformers, class_name)(**values)
    config.dtype = dtype
    config._attn_implementation = "eager"
    return config


def hf_model(
    family: str,
    *,
    dtype: str = "float32",
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Any:
    """The transformers causal LM of ``family`` with random weights (``torch.manual_seed(seed)``).

    Norm weights are randomised too (transformers initialises them to a constant, which would
    hide a wrong ``1 + w`` convention), then the model is cast to ``dtype`` and put in eval mode.
    """
    import torch
    import transformers

    config = hf_config(family, dtype=dtype, overrides=overrides)
    torch.manual_seed(seed)
    if family == "gemma3":
        model = transformers.Gemma3ForCausalLM(config)
    else:
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.add_(0.2 * torch.randn_like(parameter))
            elif parameter.ndim == 1:  # biases
                parameter.copy_(0.1 * torch.randn_like(parameter))
    return model.to(getattr(torch, dtype)).eval()


def write_checkpoint(
    family: str,
    directory: Path,
    *,
    dtype: str = "float32",
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Write a random checkpoint of ``family`` as transformers saves one, plus its tokenizer.

    Args:
        family: one of :data:`FAMILIES`.
        directory: created if missing.
        dtype: the weights' dtype on disk (``"float32"`` or ``"bfloat16"``).
        overrides: config keys replacing the tiny defaults (``vocab_size`` also sizes the
            tokenizer, padded with ``<|extra_N|>`` special tokens).
        seed: the torch seed of the random weights.

    Returns:
        ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = hf_model(family, dtype=dtype, overrides=overrides, seed=seed)
    model.save_pretrained(directory)
    vocab = int(model.config.vocab_size)
    (directory / "tokenizer.json").write_text(tokenizer_json(vocab), encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIALS[1],
        "eos_token": SPECIALS[2],
        "pad_token": SPECIALS[0],
        "chat_template": CHAT_TEMPLATE,
    }
    (directory / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config, indent=2), encoding="utf-8"
    )
    return directory
