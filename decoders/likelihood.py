"""Teacher-forced likelihood of continuations under the decoder's model.

Each row is the prompt exactly as the decoder saw it (chat-rendered when the run uses ``--chat``)
followed by the continuation's token ids; one :func:`decoders.model.forward` pass over the whole
row gives the log-probability of every continuation token given everything before it. The sum of
their negative log-likelihoods and their count are returned per row; perplexity is
``exp(sum NLL / sum tokens)``, pooled by the report.

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
from decoders.model import Params, forward, init_cache, logits
from decoders.tokenizer import Tokenizer
from shield.errors import BudgetError

__all__ = ["continuation_nll", "prompt_ids"]

_LENGTH_QUANTUM = 64  # rows are padded to a multiple of this, so batches share compilations


@functools.partial(jax.jit, static_argnames=("config", "window"))
def _row_nll(
    params: Params, config: ModelConfig, tokens: jax.Array, scored: jax.Array, *, window: int
) -> jax.Array:
    """Summed NLL of the scored tokens of each row.

    Args:
        params: model weights.
        config: model shapes (static).
        tokens: ``[B, T]`` int32, prompt then continuation, right-padded; ``T == window``.
        scored: ``[B, T]`` bool, true at the continuation's tokens.
        window: static cache size and attention window (``T``).

    Returns:
        ``[B]`` float32: minus the summed log-probabilities of the scored tokens.
    """
    batch, length = tokens.shape
    cache = init_cache(config, batch, window)
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32)[None, :], (batch, length))
    hidden, _ = forward(params, config, cache, tokens, positions, window)  # [B, T, H]
    predicted = logits(params, config, hidden[:, :-1, :])  # [B, T-1, V]: position t predicts t+1
    log_probs = jax.nn.log_softmax(predicted, axis=-1)  # [B, T-1, V]
    picked = jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0]  # [B, T-1]
    return -jnp.sum(jnp.where(scored[:, 1:], picked, jnp.float32(0.0)), axis=1)  # [B]


def prompt_ids(tokenizer: Tokenizer, prompt: str, *, chat: bool) -> list[int]:
    """The token ids of ``prompt`` as :func:`decoders.generate` feeds it (chat-rendered or not)."""
    text = tokenizer.render_chat([{"role": "user", "content": prompt}]) if chat else prompt
    return tokenizer.encode(text)


def _batch(
    rows: Sequence[tuple[list[int], Sequence[int]]], size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    longest = max(len(p) + len(c) for p, c in rows)
    window = -(-longest // _LENGTH_QUANTUM) * _LENGTH_QUANTUM
    tokens = np.zeros((size, window), np.int32)  # [B, T]
    scored = np.zeros((size, window), bool)  # [B, T]
    for row, (prompt, continuation) in enumerate(rows):
        tokens[row, : len(prompt)] = prompt
        tokens[row, len(prompt) : len(prompt) + len(continuation)] = continuation
        scored[row, len(prompt) : len(prompt) + len(continuation)] = True
    return tokens, scored, window


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
        prompts: one prompt text per continuation.
        continuations: token ids of each continuation (the ``tokens`` of a result).
        chat: the prompts were rendered with the chat template when generating.
        batch_size: rows per forward pass (batches are padded to it).

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
    pending = [i for i, (_, continuation) in enumerate(rows) if continuation]
    for start in range(0, len(pending), batch_size):
        chosen = pending[start : start + batch_size]
        tokens, scored, window = _batch([rows[i] for i in chosen], batch_size)
        nll: Any = _row_nll(
            model.params, model.config, jnp.asarray(tokens), jnp.asarray(scored), window=window
        )
        values = np.asarray(jax.device_get(nll), np.float64)  # [B]
        for row, index in enumerate(chosen):
            results[index] = (float(values[row]), len(rows[index][1]))
    return results
