"""A compiled shield bound to a Hugging Face tokenizer, and the model facts the adapters read.

The adapters judge exactly the bytes our own decoder judges: the token byte strings come from the
tokenizer's ``tokenizers`` backend (byte-level BPE or SentencePiece with byte fallback), lifted by
:meth:`shield.Shield.lift`, so a spec protects a transformers model with the same automata, the
same :class:`~shield.judge.Judge` and the same controller as the JAX decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shield.errors import DecoderError
from shield.judge import Judge
from shield.monitor import Shield

__all__ = ["eos_ids_of", "judge_for", "refusal_encoder"]


def judge_for(compiled: Shield, tokenizer: Any) -> Judge:
    """Bind a compiled shield to a Hugging Face tokenizer's vocabulary.

    Args:
        compiled: a :class:`shield.Shield` from ``shield.compile(spec)``.
        tokenizer: a transformers tokenizer with a ``tokenizers`` backend (``backend_tokenizer``),
            or a ``tokenizers.Tokenizer``.

    Returns:
        The :class:`~shield.judge.Judge` (special tokens carry no text and are never sampled).

    Raises:
        DecoderError: the tokenizer has no ``tokenizers`` backend (a slow, Python-only
            tokenizer); load it with ``use_fast=True``.
        ModelLoadError: the vocabulary is neither byte-level BPE nor SentencePiece with byte
            fallback.

    Example:
        >>> judge = judge_for(shield.compile(specs.load_library("pii")), tokenizer)  # doctest: +SKIP
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "to_str"):
        backend = tokenizer
    if backend is None:
        raise DecoderError(
            f"judge_for: expected a tokenizer with a `tokenizers` backend, received "
            f"{type(tokenizer).__name__}; load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    return Judge(compiled, compiled.lift(backend), decode=None)


def refusal_encoder(tokenizer: Any) -> Any:
    """A function that turns the refusal text into token ids (no special tokens added).

    Args:
        tokenizer: a transformers tokenizer.

    Returns:
        ``encode(text) -> list[int]``.
    """

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    return encode


def eos_ids_of(eos_token_id: int | Sequence[int] | None, model: Any) -> tuple[int, ...]:
    """The end-of-sequence ids: the given ones, else the model's generation config's.

    Args:
        eos_token_id: an id, several ids, or None.
        model: a transformers model (its ``generation_config.eos_token_id`` is the fallback).

    Returns:
        The ids, at least one.

    Raises:
        DecoderError: neither the call nor the model names an end-of-sequence token.
    """
    if eos_token_id is None:
        config = getattr(model, "generation_config", None)
        eos_token_id = getattr(config, "eos_token_id", None)
    if eos_token_id is None:
        raise DecoderError(
            "expected an end-of-sequence token id (eos_token_id=...), received none and the "
            "model's generation_config names none; pass eos_token_id."
        )
    ids = (eos_token_id,) if isinstance(eos_token_id, int) else tuple(int(t) for t in eos_token_id)
    if not ids:
        raise DecoderError(
            "expected at least one end-of-sequence token id, received an empty list."
        )
    return ids
