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

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch

from adapters.huggingface.binding import eos_ids_of, refusal_encoder
from adapters.huggingface.cache import CachedPrefix
from adapters.huggingface.streaming import text_sink
from shield.controller import Failure
from shield.errors import DecoderError
from shield.judge import Judge
from shield.reference import Config, Finished, Machine, ReferenceSettings
from shield.result import (
    REWINDING_STRATEGIES,
    STRATEGIES,
    FinishReason,
    GenerationResult,
    GenerationStats,
    TextStream,
)
from shield.sampling import SamplingConfig, sample_token

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


def drive(
    machine: Machine,
    next_logits: Callable[[Sequence[int]], np.ndarray],
    prompt: Sequence[int],
    *,
    stream: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Run one row's reference machine to the end, drawing from ``next_logits``.

    This is :func:`shield.reference.reference_generate`'s driver, for a machine with several
    end-of-sequence ids: the same actions, transitions, draws (keyed by the row's seed, the
    position and the attempt) and release rule.

    Args:
        machine: the row's transition system (judge, EOS ids, settings, prefill, encoder).
        next_logits: the logits after a token prefix (prompt + kept response).
        prompt: the prompt's token ids.
        stream: receives each piece of text as soon as it can no longer be rolled back.

    Returns:
        The row's :class:`~shield.result.GenerationResult`.
    """
    started = time.perf_counter()
    settings, judge = machine.settings, machine.judge
    current: Config | Finished = machine.initial()
    released = TextStream(stream) if stream is not None else None
    for _ in range(machine.fuel):  # every transition is a step, a forced token or a rewind
        if isinstance(current, Finished):
            break
        if released is not None:
            current = machine.release(current)
            released.update(judge.detokenize(current.kept[: current.released]))
        action = machine.action(current)
        if action == "end":
            current = machine.end(current)
        elif isinstance(action, int):
            current = machine.read(current, action, forced=True)
        elif action.blocked.all():
            current = machine.stuck(current)
        else:
            logits = np.asarray(next_logits([*prompt, *current.kept]), dtype=np.float64)
            token = sample_token(
                logits,
                action.blocked,
                settings.sampling,
                seed=settings.seed,
                position=len(current.kept),
                attempt=current.attempt,
            )
            current = machine.read(current, token, forced=False)
    if not isinstance(current, Finished):  # unreachable (termination theorem); fail closed
        failure = Failure(tokens=(machine.eos_ids[0],), start=0, rule="fuel")
        current = machine.exhausted(current, failure)
    if released is not None:
        released.close(current.text)
    config = current.config
    stats = GenerationStats.count(
        generated=config.steps,
        forced=config.forced,
        kept=len(current.tokens),
        ended_by_eos=current.reason == "eos",
        refused=current.reason == "refused",
        rollbacks=config.trace.rollbacks,
        max_rollback=config.trace.max_rollback,
        wall_seconds=time.perf_counter() - started,
    )
    return GenerationResult(
        text=current.text,
        finish_reason=cast(FinishReason, current.reason),
        tokens=current.tokens,
        stats=stats,
        events=config.events,
    )
