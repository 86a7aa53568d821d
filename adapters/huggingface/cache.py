"""Next-token logits of a growing, rewinding prefix, computed with the model's own KV cache.

The reference machine asks for the logits after ``prompt + kept`` at every choice. A
:class:`CachedPrefix` answers from a transformers ``DynamicCache`` that holds the keys and values
of the prefix it saw last: when the new prefix extends it, only the new tokens are fed (one token
per step, a forced prefill in one forward); when a rewind shortened it, the cache is cropped to
the common prefix (``DynamicCache.crop``, a slice of every layer's tensors) and the tokens after
the crop point are fed again. So a rewind costs one decode step, never a new prefill.

Some caches cannot be cropped: a sliding-window layer that has passed its window has dropped the
keys a rewind needs, and static, quantized, offloaded and linear-attention (recurrent) layers
keep state that a slice cannot restore. Rewinding strategies refuse such caches before decoding
(:func:`require_croppable`), and every crop checks again: decoding on with wrong keys is never an
option.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

from shield.errors import DecoderError

__all__ = ["CachedPrefix", "new_cache", "require_croppable"]


def new_cache(model: Any) -> DynamicCache:
    """An empty ``DynamicCache`` laid out for ``model`` (sliding-window layers where it has them)."""
    return DynamicCache(config=model.config)


def require_croppable(cache: Any, length: int) -> None:
    """Refuse a cache that could not be cropped back after holding ``length`` tokens.

    Args:
        cache: a transformers cache.
        length: the most tokens the cache will hold (prompt and response).

    Raises:
        DecoderError: a layer is not a plain dynamic layer, or a sliding-window layer whose
            window (minus the one slot it keeps free) is shorter than ``length``.
    """
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, DynamicCache) or layers is None:
        raise DecoderError(
            f"rewinding needs a transformers DynamicCache, received {type(cache).__name__}; "
            "use the default cache (do not pass cache_implementation or a static cache)."
        )
    for index, layer in enumerate(layers):
        kind = type(layer)
        if kind is DynamicSlidingWindowLayer:
            window = int(layer.sliding_window)
            if length > window - 1:
                raise DecoderError(
                    f"cannot rewind: layer {index} is a sliding-window layer of {window} tokens, "
                    f"which keeps only the last {window - 1} and so cannot be cropped after "
                    f"{length} tokens (prompt + response); shorten the prompt or max_new_tokens to "
                    f"at most {window - 1} tokens in all, or use strategy 'mask'."
                )
        elif kind is not DynamicLayer:
            raise DecoderError(
                f"cannot rewind: cache layer {index} is a {kind.__name__}, which cannot be cropped "
                "exactly (only DynamicLayer and DynamicSlidingWindowLayer within its window can); "
                "use strategy 'mask' with this model."
            )


def _cache_argument(model: Any) -> str:
    """The name of the forward's cache argument (``cache`` in transformers 5, ``past_key_values`` before)."""
    names = inspect.signature(model.forward).parameters
    if "cache" in names:
        return "cache"
    if "past_key_values" in names:
        return "past_key_values"
    raise DecoderError(
        f"{type(model).__name__}.forward takes no KV cache (neither `cache` nor `past_key_values`); "
        "expected a transformers causal language model."
    )


class CachedPrefix:
    """Logits after any prefix, reusing and cropping one KV cache (a single row).

    Args:
        model: a transformers causal LM in eval mode.
        vocab_size: the judge's vocabulary size; logits are cut to it (ids past the tokenizer's
            vocabulary are padding rows of the head and are never produced).
        capacity: the most tokens the cache will hold (checked for croppability once).
        rewinds: whether the prefix may shrink (strategies ``backtrack`` and ``reset``).

    Raises:
        DecoderError: the model's head is smaller than the vocabulary, or its cache cannot be
            cropped while ``rewinds``.
    """

    def __init__(self, model: Any, *, vocab_size: int, capacity: int, rewinds: bool) -> None:
        self.model = model
        self.vocab_size = vocab_size
        self.cache = new_cache(model)
        self.rewinds = rewinds
        if rewinds:
            require_croppable(self.cache, capacity)
        self._argument = _cache_argument(model)
        # Only the last position's logits are needed (saves the head's product over a prefill).
        self._extra = (
            {"logits_to_keep": 1}
            if "logits_to_keep" in inspect.signature(model.forward).parameters
            else {}
        )
        self._device = next(model.parameters()).device
        self.tokens: list[int] = []
        self.logits: np.ndarray | None = None
        self.forwards = 0
        self.crops = 0

    def __call__(self, prefix: Sequence[int]) -> np.ndarray:
        """float32 ``[V]``: the logits after ``prefix`` (at least one token).

        Raises:
            DecoderError: ``prefix`` is empty, or a crop would need keys the cache dropped.
        """
        tokens = self.tokens
        if not prefix:
            raise DecoderError("expected a non-empty prefix (the prompt), received none.")
        if self.logits is not None and len(prefix) == len(tokens) and list(prefix) == tokens:
            return self.logits
        common = _common_prefix(tokens, prefix)
        keep = min(common, len(prefix) - 1)  # the last token is fed again to get its logits
        if keep < len(tokens):
            self._crop(keep)
        self._feed(prefix[keep:])
        self.tokens = list(prefix)
        return self.logits  # type: ignore[return-value]

    def _crop(self, keep: int) -> None:
        if not self.rewinds:
            raise DecoderError(
                "the prefix shrank in a strategy that never rewinds; this is a bug in the caller."
            )
        require_croppable(self.cache, self.cache.get_seq_length())
        self.cache.crop(keep - self.cache.get_seq_length())
        self.crops += 1

    @torch.no_grad()
    def _feed(self, tokens: Sequence[int]) -> None:
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self._device)
        out = self.model(
            input_ids=ids, use_cache=True, **{self._argument: self.cache}, **self._extra
        )
        logits = out.logits[0, -1].to(dtype=torch.float32, device="cpu").numpy()
        if logits.shape[0] < self.vocab_size:
            raise DecoderError(
                f"the model's head has {logits.shape[0]} logits, fewer than the tokenizer's "
                f"{self.vocab_size} tokens; pass the tokenizer that belongs to this model."
            )
        self.logits = logits[: self.vocab_size]
        self.forwards += 1


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if list(a[:n]) == list(b[:n]):
        return n
    for index in range(n):  # bounded by n
        if a[index] != b[index]:
            return index
    return n
