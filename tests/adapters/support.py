"""Torch models for the adapter tests: scripted (logits follow a table) and tiny random ones.

:func:`scripted_llama` is the torch twin of ``tests/decoders/scripted.py``: a real transformers
``LlamaForCausalLM`` whose embeddings are one-hot rows, whose attention output and MLP down
projections are zero (each block adds exactly nothing to the residual stream) and whose untied
head holds the table. So its logits after token ``t`` are ``c * table[t]`` for one positive
constant ``c`` (the final RMSNorm's scale of a one-hot row), exactly, whatever the cache holds:
scenario tables drive the adapter's loop and the reference machine alike. Cache cropping is
checked separately on tiny *random* models (:func:`tiny_random`), where it matters.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

__all__ = ["full_logits", "scripted_llama", "tiny_random", "token_encoder"]


def scripted_llama(table: np.ndarray, eos: tuple[int, ...]) -> LlamaForCausalLM:
    """A one-block Llama whose logits after token ``t`` are ``c * table[t]`` (``c > 0``).

    Args:
        table: float32 ``[V, V]``.
        eos: the end-of-sequence ids (its generation config's).

    Returns:
        The model, in eval mode, float32.
    """
    vocab = table.shape[0]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=vocab,
        intermediate_size=4,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        tie_word_embeddings=False,
        eos_token_id=list(eos),
        bos_token_id=None,
        pad_token_id=eos[0],
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(vocab))
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()  # attention adds nothing to the residual
        layer.mlp.down_proj.weight.zero_()  # nor does the MLP
        model.lm_head.weight.copy_(
            torch.from_numpy(np.asarray(table, np.float32).T.copy())
        )  # [out, in]
    model.generation_config.eos_token_id = list(eos)
    model.generation_config.pad_token_id = eos[0]
    return model


def tiny_random(family: str, vocab: int, *, sliding_window: int | None = None) -> Any:
    """A tiny random causal LM of ``family`` (``"llama"`` or ``"qwen2"``), written by transformers.

    Args:
        family: the architecture.
        vocab: the vocabulary size.
        sliding_window: Qwen2 only: a sliding-window attention of this many tokens on every layer.

    Returns:
        The model, in eval mode, float32, seeded (the same weights every call).
    """
    torch.manual_seed(0)
    shapes = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shapes))
    elif family == "qwen2":
        extra: dict[str, Any] = {}
        if sliding_window is not None:
            extra = dict(
                use_sliding_window=True, sliding_window=sliding_window, max_window_layers=0
            )
        model = Qwen2ForCausalLM(Qwen2Config(**shapes, **extra))
    else:
        raise ValueError(f"family: expected 'llama' or 'qwen2', received {family!r}")
    return model.eval()


@torch.no_grad()
def full_logits(model: Any, prefix: list[int] | tuple[int, ...]) -> np.ndarray:
    """float32 ``[V]``: the logits after ``prefix`` from a fresh forward (no cache)."""
    out = model(input_ids=torch.tensor([list(prefix)]), use_cache=False)
    return out.logits[0, -1].numpy()


def token_encoder(encode: Any) -> Any:
    """A stand-in tokenizer whose ``encode(text, add_special_tokens=False)`` calls ``encode``."""
    return SimpleNamespace(encode=lambda text, add_special_tokens=False: encode(text))
