"""Sampling: greedy, temperature, top-k and top-p over a batch of logits, with derived keys.

Random keys are a pure function of (seed, position, attempt) per row (:func:`row_keys`): a row's
draw does not depend on its batch neighbours, on the batch size or on how the loop is chunked, and
a run that never rewinds (attempt 0 throughout) draws exactly what plain decoding draws.

:class:`~shield.sampling.SamplingConfig` (shared with the reference decoder) is static (frozen,
hashable): changing it recompiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shield.sampling import SamplingConfig

__all__ = ["SamplingConfig", "row_keys", "sample"]

Array = jax.Array
#: Bisection steps of the top-p threshold (float32 resolution of the largest probability).
_BISECTIONS = 24


def row_keys(seed: Array, position: Array, attempt: Array) -> Array:
    """One PRNG key per row from ``(seed, position, attempt)``.

    Args:
        seed: ``[B]`` uint32 per-row seeds.
        position: ``[B]`` int32 position of the token being drawn.
        attempt: ``[B]`` int32 attempt number (0 until the row first rewinds).

    Returns:
        ``[B]`` typed PRNG keys.
    """

    def one(s: Array, p: Array, a: Array) -> Array:
        key = jax.random.key(s)
        return jax.random.fold_in(jax.random.fold_in(key, p), a)

    return jax.vmap(one)(seed, position, attempt)


def _filter(logits: Array, config: SamplingConfig) -> Array:
    # logits: [B, V] float32, already temperature-scaled; excluded tokens become -inf.
    neg_inf = jnp.float32(-jnp.inf)
    vocab = logits.shape[-1]
    if config.top_k is not None and config.top_k < vocab:
        kth = jax.lax.top_k(logits, config.top_k)[0][:, -1:]  # [B, 1]
        logits = jnp.where(logits < kth, neg_inf, logits)
    if config.top_p is not None and config.top_p < 1.0:
        # The nucleus is {probs >= t} for the largest t whose mass still reaches p. Bisection on
        # t (a few reductions over V) replaces a full sort of the vocabulary, which dominates a
        # CPU step; the invariant is mass(probs >= low) >= p.
        probs = jax.nn.softmax(logits, axis=-1)  # [B, V]
        low = jnp.zeros(probs.shape[:1], jnp.float32)  # [B]
        high = jnp.max(probs, axis=-1)  # [B]
        for _ in range(_BISECTIONS):
            middle = 0.5 * (low + high)
            mass = jnp.sum(jnp.where(probs >= middle[:, None], probs, 0.0), axis=-1)  # [B]
            reaches = mass >= jnp.float32(config.top_p)
            low, high = jnp.where(reaches, middle, low), jnp.where(reaches, high, middle)
        logits = jnp.where(probs >= low[:, None], logits, neg_inf)
    return logits


def sample(logits: Array, keys: Array, config: SamplingConfig) -> Array:
    """Choose one token per row.

    Args:
        logits: ``[B, V]`` float32 next-token logits.
        keys: ``[B]`` PRNG keys (see :func:`row_keys`); unused when greedy.
        config: the sampling rule (static).

    Returns:
        ``[B]`` int32 token ids.

    Example:
        >>> import jax.numpy as jnp
        >>> logits = jnp.array([[0.0, 2.0, 1.0]])
        >>> keys = row_keys(jnp.zeros(1, jnp.uint32), jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))
        >>> sample(logits, keys, SamplingConfig(temperature=0.0)).tolist()
        [1]
    """
    if config.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = _filter(logits.astype(jnp.float32) / jnp.float32(config.temperature), config)
    draw = jax.vmap(lambda key, row: jax.random.categorical(key, row))(keys, scaled)
    return draw.astype(jnp.int32)
