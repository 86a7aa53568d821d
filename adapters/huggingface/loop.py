"""Shielded generation with any transformers causal LM: ``backtrack``, ``reset``, ``mask``, ``none``.

The loop *is* the reference decoder: each row runs a :class:`shield.reference.Machine`, the
executable semantics that the JAX decoder's host loop (``decoders/host_loop.py``) replays event
by event, with a next-token function that answers from the model's own KV cache
(:class:`~adapters.huggingface.cache.CachedPrefix`). So bans, retries, the discard budget,
checkpoints, classifier rules, the refusal, the END check and the streamed (committed) text are
decided by the same :class:`~shield.reference.Machine` and :func:`~shield.controller.plan_rewind`
as in ``decoders.generate``; only where the logits come from differs. A rewind crops the cache to
the kept prefix and feeds one token again; it never re-reads the prompt.

Rows decode one after another (``DynamicCache.crop`` cuts every row of a batch at once, and rows
rewind independently), each with its own cache. Random draws are keyed by
``(seed + row, position, attempt)`` exactly as in the reference decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from adapters.huggingface.binding import eos_ids_of, refusal_encoder
from adapters.huggingface.cache import CachedPrefix
from adapters.huggingface.streaming import text_sink
from shield.errors import DecoderError
from shield.judge import Judge
from shield.reference import Machine, ReferenceSettings, drive
from shield.result import (
    REWINDING_STRATEGIES,
    STRATEGIES,
    GenerationResult,
)
from shield.sampling import SamplingConfig

__all__ = ["drive", "generate", "prompt_rows"]


def prompt_rows(input_ids: Any, attention_mask: Any = None) -> list[list[int]]:
    """The prompt of each row without its padding.

    Args:
        input_ids: ``[B, L]`` token ids (a tensor or nested lists).
        attention_mask: ``[B, L]``, 1 on real tokens; padding must be on the left.

    Returns:
        One list of token ids per row.

    Raises:
        DecoderError: a row is empty, or its padding is not on the left.
    """
    ids = torch.as_tensor(input_ids)
    if ids.dim() != 2:
        raise DecoderError(
            f"expected input_ids of shape [batch, length], received {tuple(ids.shape)}."
        )
    mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask)
    if mask.shape != ids.shape:
        raise DecoderError(
            f"expected an attention mask of shape {tuple(ids.shape)}, received {tuple(mask.shape)}."
        )
    rows = []
    for b in range(ids.shape[0]):
        real = mask[b].bool()
        count = int(real.sum())
        if count == 0:
            raise DecoderError(f"row {b}: the prompt is empty (its attention mask is all 0).")
        if not bool(real[ids.shape[1] - count :].all()):
            raise DecoderError(
                f"row {b}: expected left padding (real tokens last), received a mask with padding "
                "on the right or inside; tokenize with padding_side='left'."
            )
        rows.append([int(t) for t in ids[b, ids.shape[1] - count :].tolist()])
    return rows


def generate(
    model: Any,
    input_ids: Any,
    *,
    judge: Judge,
    strategy: str = "backtrack",
    attention_mask: Any = None,
    max_new_tokens: int = 64,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
    prefill_ids: Sequence[int] = (),
    eos_token_id: int | Sequence[int] | None = None,
    tokenizer: Any = None,
    stream: Any = None,
    repair_mask: bool = True,
) -> list[GenerationResult]:
    """Generate one shielded response per row of ``input_ids`` with a transformers causal LM.

    Args:
        model: a transformers causal LM (``AutoModelForCausalLM``), in eval mode.
        input_ids: ``[B, L]`` prompt token ids, left-padded (a tensor or nested lists). The prompt
            is context: it is never judged and never rolled back.
        judge: the compiled shield bound to the model's tokenizer
            (:func:`~adapters.huggingface.judge_for`).
        strategy: ``backtrack``, ``reset``, ``mask`` or ``none``.
        attention_mask: ``[B, L]``, 0 on left padding (None: no padding).
        max_new_tokens: N: the response holds at most ``len(prefill_ids) + N`` tokens.
        sampling: temperature, top-k, top-p (default greedy).
        seed: row ``b`` draws with seed ``seed + b``.
        prefill_ids: token ids forced at the start of every response (part of the response:
            judged, and rolled back when it violates).
        eos_token_id: the end-of-sequence id(s); default the model's generation config's.
        tokenizer: the model's tokenizer; it writes the refusal, so it is required when the
            spec refuses on exhaustion (``on_exhausted = "refuse"``) under a rewinding strategy.
        stream: receives text that can no longer be rolled back, as soon as it is final: a
            callable ``(row, text)``, or (batch 1) a transformers streamer with
            ``on_finalized_text`` such as ``TextIteratorStreamer``.
        repair_mask: while regenerating a failed segment, mask tokens that would violate.

    Returns:
        One :class:`~shield.result.GenerationResult` per row, in order.

    Raises:
        DecoderError: bad arguments (a refusing spec without a tokenizer), or a cache that cannot
            be cropped under a rewinding strategy.
        ClassifierError: a classifier rule's scorer failed (fail closed).

    Example:
        >>> judge = judge_for(shield.compile(specs.load_library("pii")), tokenizer)  # doctest: +SKIP
        >>> ids = tokenizer(["Write a note."], return_tensors="pt").input_ids  # doctest: +SKIP
        >>> generate(model, ids, judge=judge, max_new_tokens=32)[0].text  # doctest: +SKIP
    """
    if strategy not in STRATEGIES:
        raise DecoderError(
            f"expected strategy one of {', '.join(STRATEGIES)}, received {strategy!r}."
        )
    if (
        tokenizer is None
        and strategy in REWINDING_STRATEGIES
        and judge.policy.on_exhausted == "refuse"
    ):
        raise DecoderError(
            "the spec answers with its refusal text when the budget runs out (on_exhausted = "
            "'refuse'), and writing it needs the model's tokenizer; pass tokenizer=..."
        )
    sampling = sampling if sampling is not None else SamplingConfig(temperature=0.0)
    eos_ids = eos_ids_of(eos_token_id, model)
    rows = prompt_rows(input_ids, attention_mask)
    encode = refusal_encoder(tokenizer) if tokenizer is not None else None
    prefill = tuple(int(t) for t in prefill_ids)
    capacity = max(len(row) for row in rows) + len(prefill) + max_new_tokens
    results = []
    for b, prompt in enumerate(rows):
        cached = CachedPrefix(
            model,
            vocab_size=len(judge.token_bytes),
            capacity=capacity,
            rewinds=strategy in REWINDING_STRATEGIES,
        )
        settings = ReferenceSettings(
            strategy=strategy,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            seed=seed + b,
            repair_mask=repair_mask,
        )
        machine = Machine(judge, eos_ids, settings, prefill, encode)
        sink = text_sink(stream, b, len(rows))
        results.append(drive(machine, cached, prompt, stream=sink))
        close = getattr(sink, "close", None)
        if close is not None:  # a transformers streamer learns that the row ended
            close()
    return results
