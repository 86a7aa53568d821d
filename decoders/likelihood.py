"""Teacher-forced likelihood of continuations under the decoder's model.

Each row is the prompt exactly as the decoder saw it (chat-rendered when the run uses ``--chat``)
followed by the continuation's token ids; the model gives the log-probability of every
continuation token given everything before it. The sum of their negative log-likelihoods and
their count are returned per row; perplexity is ``exp(sum NLL / sum tokens)``, pooled by the
report.

Rows that share a prompt share its computation: the prompt is fed once (one row), its KV cache is
broadcast to the rows, and only the continuations are fed as a batch. The evaluation scores the
K samples of a prompt together, so this feeds each prompt once instead of K times, and the
continuations are padded to a multiple of :data:`CONTINUATION_QUANTUM` rather than the whole row
to a multiple of 64.

This module imports JAX; :mod:`shield.cli.evaluation.backend` imports it lazily, so importing
:mod:`shield.cli.evaluation` never does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decoders.config import ModelConfig
from decoders.loading import Model
from decoders.model import KVCache, Params, forward, init_cache, logits
from decoders.tokenizer import Tokenizer
from shield.errors import BudgetError

__all__ = [
    "CONTINUATION_QUANTUM",
    "PROMPT_QUANTUM",
    "ROW_QUANTUM",
    "continuation_nll",
    "prompt_ids",
]

#: Prompts are padded to a multiple of this (fed once per prompt, so padding is cheap and a few
#: compilations serve every prompt length).
PROMPT_QUANTUM = 16
#: Continuations are padded to a multiple of this (fed once per row: padding costs every row).
CONTINUATION_QUANTUM = 8
#: Rows per pass are rounded up to a multiple of this (at most ``batch_size``), so a pass with a
#: few fresh rows does not pay for a full batch and row counts share compilations.
ROW_QUANTUM = 8
#: Cache sizes are rounded up to a multiple of this.
_SLOT_QUANTUM = 64


@functools.partial(jax.jit, static_argnames=("config", "window"))
def _shared_prompt_nll(
    params: Params,
    config: ModelConfig,
    prompt: jax.Array,
    prompt_length: jax.Array,
    continuations: jax.Array,
    lengths: jax.Array,
    *,
    window: int,
) -> jax.Array:
    """Summed NLL of each row's continuation after one shared prompt.

    Args:
        params: model weights.
        config: model shapes (static).
        prompt: ``[1, P]`` int32, right-padded; its first ``prompt_length`` tokens are real.
        prompt_length: ``[]`` int32, at least 1.
        continuations: ``[B, C]`` int32, right-padded.
        lengths: ``[B]`` int32, real tokens of each continuation.
        window: static cache size and attention window, at least ``P`` and ``prompt_length + C``.

    Returns:
        ``[B]`` float32: minus the summed log-probabilities of each continuation's real tokens.
    """
    batch, width = continuations.shape
    prompt_positions = jnp.arange(prompt.shape[1], dtype=jnp.int32)[None, :]  # [1, P]
    hidden, cache = forward(
        params, config, init_cache(config, 1, window), prompt, prompt_positions, window
    )
    last = jax.lax.dynamic_index_in_dim(hidden[0], prompt_length - 1, axis=0)  # [1, H]
    # Slots past the prompt hold the padding's keys; the continuation overwrites them before any
    # query can see them (attention is causal by position).
    shared = KVCache(
        k=jnp.broadcast_to(cache.k, (cache.k.shape[0], batch, *cache.k.shape[2:])),
        v=jnp.broadcast_to(cache.v, (cache.v.shape[0], batch, *cache.v.shape[2:])),
    )
    offsets = jnp.arange(width, dtype=jnp.int32)[None, :]  # [1, C]
    positions = jnp.broadcast_to(prompt_length + offsets, (batch, width))  # [B, C]
    fed, _ = forward(params, config, shared, continuations, positions, window)  # [B, C, H]
    # Token j of a continuation is predicted by the state before it: the prompt's last token for
    # j = 0, continuation token j - 1 otherwise.
    before = jnp.concatenate(
        [jnp.broadcast_to(last[None], (batch, 1, last.shape[-1])), fed[:, :-1, :]], axis=1
    )  # [B, C, H]
    log_probs = jax.nn.log_softmax(logits(params, config, before), axis=-1)  # [B, C, V]
    picked = jnp.take_along_axis(log_probs, continuations[:, :, None], axis=-1)[..., 0]  # [B, C]
    real = offsets < lengths[:, None]  # [B, C]
    return -jnp.sum(jnp.where(real, picked, jnp.float32(0.0)), axis=1)  # [B]


def prompt_ids(tokenizer: Tokenizer, prompt: str, *, chat: bool) -> list[int]:
    """The token ids of ``prompt`` as :func:`decoders.generate` feeds it (chat-rendered or not)."""
    text = tokenizer.render_chat([{"role": "user", "content": prompt}]) if chat else prompt
    return tokenizer.encode(text)


def _round_up(value: int, quantum: int) -> int:
    return -(-value // quantum) * quantum


def _pass(
    model: Model, prompt: Sequence[int], continuations: Sequence[Sequence[int]], rows: int
) -> np.ndarray:
    """One forward pass: ``continuations`` after ``prompt``, padded to ``rows`` rows."""
    padded_prompt = np.zeros((1, _round_up(len(prompt), PROMPT_QUANTUM)), np.int32)  # [1, P]
    padded_prompt[0, : len(prompt)] = prompt
    width = _round_up(max(len(c) for c in continuations), CONTINUATION_QUANTUM)
    tokens = np.zeros((rows, width), np.int32)  # [B, C]
    lengths = np.zeros((rows,), np.int32)  # [B]
    for row, continuation in enumerate(continuations):
        tokens[row, : len(continuation)] = continuation
        lengths[row] = len(continuation)
    window = _round_up(max(padded_prompt.shape[1], len(prompt) + width), _SLOT_QUANTUM)
    nll: Any = _shared_prompt_nll(
        model.params,
        model.config,
        jnp.asarray(padded_prompt),
        jnp.int32(len(prompt)),
        jnp.asarray(tokens),
        jnp.asarray(lengths),
        window=window,
    )
    return np.asarray(jax.device_get(nll), np.float64)[: len(continuations)]  # [rows used]


def continuation_nll(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[int]],
    *,
    chat: bool = False,
    batch_size: int = 8,
) -> list[tuple[float, int]]:
    """Summed negative log-likelihood of each continuation given its prompt.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one prompt text per continuation; rows with the same prompt are scored together
            and feed it once.
        continuations: token ids of each continuation (the ``tokens`` of a result).
        chat: the prompts were rendered with the chat template when generating.
        batch_size: at most this many rows per forward pass (a pass's rows are padded to a
            multiple of :data:`ROW_QUANTUM`, at most ``batch_size``).

    Returns:
        ``(nll, tokens)`` per continuation; ``(0.0, 0)`` for an empty one.

    Raises:
        BudgetError: a prompt plus its continuation exceeds the model's context.

    Example:
        >>> continuation_nll(model, tok, ["Hello"], [tok.encode(" world", add_bos=False)])  # doctest: +SKIP
        [(3.1, 1)]
    """
    rows = [
        (prompt_ids(tokenizer, p, chat=chat), list(c))
        for p, c in zip(prompts, continuations, strict=True)
    ]
    for prompt, continuation in rows:
        if len(prompt) + len(continuation) > model.config.max_position:
            raise BudgetError(
                f"perplexity: prompt ({len(prompt)} tokens) plus continuation ({len(continuation)}) "
                f"exceeds the model's context of {model.config.max_position} tokens"
            )
    results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for index, (prompt, continuation) in enumerate(rows):
        if continuation:
            by_prompt.setdefault(tuple(prompt), []).append(index)
    for prompt_key, members in by_prompt.items():
        for start in range(0, len(members), batch_size):
            chosen = members[start : start + batch_size]
            size = min(batch_size, _round_up(len(chosen), ROW_QUANTUM))
            values = _pass(model, prompt_key, [rows[i][1] for i in chosen], size)
            for index, value in zip(chosen, values, strict=True):
                results[index] = (float(value), len(rows[index][1]))
    return results
