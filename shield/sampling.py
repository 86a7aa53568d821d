"""Sampling settings shared by every decoder, and the reference (numpy) sampler.

:class:`SamplingConfig` is the one description of how a token is chosen; the JAX decoder compiles it
into its step, the reference decoder runs :func:`sample_token`. Both derive the randomness of a
draw from ``(seed, position, attempt)`` only, so a draw never depends on batch neighbours and a run
that never rewinds (attempt 0) draws what plain decoding draws.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shield.errors import DecoderError

__all__ = ["SamplingConfig", "sample_token"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How to choose a token from logits.

    Attributes:
        temperature: 0 for greedy (argmax); otherwise logits are divided by it.
        top_k: keep only the k most likely tokens (None: no limit).
        top_p: keep the smallest set of most likely tokens whose probability reaches p
            (None or 1.0: no limit).

    Raises:
        DecoderError: a value is out of range.

    Example:
        >>> SamplingConfig(temperature=0.7, top_p=0.9).greedy
        False
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise DecoderError(
                f"temperature: expected >= 0 (0 = greedy), received {self.temperature!r}."
            )
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise DecoderError(f"top_k: expected a positive int or None, received {self.top_k!r}.")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise DecoderError(f"top_p: expected 0 < p <= 1 or None, received {self.top_p!r}.")

    @property
    def greedy(self) -> bool:
        """True when sampling reduces to argmax."""
        return self.temperature == 0.0 or self.top_k == 1


def sample_token(
    logits: np.ndarray,
    blocked: np.ndarray,
    config: SamplingConfig,
    *,
    seed: int,
    position: int,
    attempt: int,
) -> int:
    """Choose one token id from ``logits`` (numpy; the reference decoder's sampler).

    Args:
        logits: ``[V]`` float logits.
        blocked: ``[V]`` bool, tokens that may not be chosen; not all True.
        config: temperature, top-k, top-p.
        seed: the row's seed.
        position: the response position being drawn.
        attempt: the row's attempt number (its rewinds so far).

    Returns:
        The chosen token id; under greedy decoding the lowest index among the maximal logits.

    Raises:
        DecoderError: every token is blocked.
    """
    if blocked.all():
        raise DecoderError(
            "sample_token: expected at least one allowed token, received a fully blocked row."
        )
    scores = np.where(blocked, -np.inf, logits.astype(np.float64))
    if config.greedy:
        return int(np.argmax(scores))
    scores = scores / config.temperature
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros_like(blocked)
    allowed = int((~blocked).sum())
    limit = min(config.top_k or allowed, allowed)
    probabilities = np.exp(scores[order] - scores[order[0]])
    probabilities /= probabilities.sum()
    if config.top_p is not None and config.top_p < 1.0:
        cumulative = np.cumsum(probabilities)
        limit = min(limit, int(np.searchsorted(cumulative, config.top_p) + 1))
    keep[order[:limit]] = True
    final = np.where(keep, np.exp(scores - scores[order[0]]), 0.0)
    final /= final.sum()
    rng = np.random.default_rng([seed, position, attempt])
    return int(rng.choice(final.shape[0], p=final))
