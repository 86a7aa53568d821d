"""Rotary position embeddings: the frequencies of every RoPE variant we implement, and applying them.

A :class:`RopeScaling` is the static description of one RoPE variant (its base frequency lives in
:class:`decoders.config.ModelConfig`). :func:`inverse_frequencies` computes the ``D/2`` inverse
frequencies and the attention factor exactly as transformers 5 does in
``transformers.modeling_rope_utils`` (``ROPE_INIT_FUNCTIONS``), in float64 on the host and rounded
to float32 once; :func:`apply_rope` rotates queries or keys in the half-split layout of Hugging
Face checkpoints. The variants:

* ``default``: ``theta ** (-2j / D)``;
* ``linear``: default divided by ``factor``;
* ``dynamic`` (NTK): transformers recomputes the base once the sequence outgrows
  ``max_position_embeddings`` and keeps the default frequencies below it; our cache never holds
  more than ``max_position`` positions (:class:`~decoders.config.ModelConfig`), so within the
  context we decode, dynamic RoPE is the default one and is computed as such;
* ``llama3``: Llama 3.1's piecewise scaling by wavelength (``factor``, ``low_freq_factor``,
  ``high_freq_factor``, ``original_max_position_embeddings``);
* ``yarn``: the ramp between interpolated and extrapolated frequencies (``beta_fast``,
  ``beta_slow``, ``truncate``) and the attention factor (given, or from ``factor``, ``mscale``
  and ``mscale_all_dim``) that multiplies cos and sin.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from shield.errors import DecoderError

__all__ = ["ROPE_KINDS", "RopeScaling", "apply_rope", "inverse_frequencies"]

Array = jax.Array

#: The RoPE variants implemented (transformers' ``rope_type`` names).
ROPE_KINDS: tuple[str, ...] = ("default", "linear", "dynamic", "llama3", "yarn")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RopeScaling:
    """One RoPE variant's parameters (transformers' ``rope_parameters`` minus ``rope_theta``).

    Attributes:
        kind: one of :data:`ROPE_KINDS`.
        factor: the context extension factor (linear, dynamic, llama3, yarn).
        low_freq_factor: llama3's low-frequency boundary divisor.
        high_freq_factor: llama3's high-frequency boundary divisor.
        original_max_position: the pretraining context (llama3, yarn).
        beta_fast: yarn's extrapolation boundary (rotations).
        beta_slow: yarn's interpolation boundary (rotations).
        attention_factor: yarn's explicit cos/sin multiplier, or None to derive it.
        mscale: yarn's numerator multiplier of ``log(factor)`` (with ``mscale_all_dim``).
        mscale_all_dim: yarn's denominator multiplier of ``log(factor)``.
        truncate: yarn rounds its correction range outward to whole dimensions.
    """

    kind: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ROPE_KINDS:
            raise DecoderError(
                f"RopeScaling.kind: expected one of {ROPE_KINDS}, received {self.kind!r}."
            )
        if self.kind != "default" and not self.factor > 0:
            raise DecoderError(f"RopeScaling.factor: expected > 0, received {self.factor!r}.")
        if self.kind in ("llama3", "yarn") and self.original_max_position <= 0:
            raise DecoderError(
                f"RopeScaling.original_max_position: {self.kind} needs the pretraining context, "
                f"received {self.original_max_position!r}."
            )
        if self.kind == "llama3" and self.high_freq_factor == self.low_freq_factor:
            raise DecoderError(
                "RopeScaling: llama3 needs high_freq_factor != low_freq_factor, received "
                f"{self.high_freq_factor!r} for both."
            )


def _yarn(
    theta: float, scaling: RopeScaling, dim: int, base_freq: np.ndarray
) -> tuple[np.ndarray, float]:
    factor = scaling.factor

    def mscale(scale: float, multiplier: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * multiplier * math.log(scale) + 1.0

    attention = scaling.attention_factor
    if attention is None:
        if scaling.mscale and scaling.mscale_all_dim:
            attention = mscale(factor, scaling.mscale) / mscale(factor, scaling.mscale_all_dim)
        else:
            attention = mscale(factor)

    def correction_dim(rotations: float) -> float:
        context = scaling.original_max_position
        return dim * math.log(context / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(scaling.beta_fast), correction_dim(scaling.beta_slow)
    if scaling.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    extrapolation = 1.0 - ramp
    interpolated = base_freq / factor
    return interpolated * (1 - extrapolation) + base_freq * extrapolation, float(attention)


def _llama3(scaling: RopeScaling, base_freq: np.ndarray) -> np.ndarray:
    context = scaling.original_max_position
    low_wavelen = context / scaling.low_freq_factor
    high_wavelen = context / scaling.high_freq_factor
    wavelen = 2 * math.pi / base_freq
    scaled = np.where(wavelen > low_wavelen, base_freq / scaling.factor, base_freq)
    smooth = (context / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled)


def inverse_frequencies(
    theta: float, scaling: RopeScaling, head_dim: int
) -> tuple[np.ndarray, float]:
    """The ``head_dim / 2`` inverse frequencies of a RoPE variant and its cos/sin multiplier.

    Args:
        theta: the base frequency (``rope_theta``).
        scaling: the variant.
        head_dim: D, the rotated width (even).

    Returns:
        ``(inv_freq, attention_factor)``: float32 ``[D/2]`` and a float (1.0 except for yarn).

    Example:
        >>> freq, factor = inverse_frequencies(10000.0, RopeScaling(), 4)
        >>> freq.tolist(), factor
        ([1.0, 0.009999999776482582], 1.0)
    """
    # transformers rounds the exponents' base to float32 before the power; so do we.
    exponents = np.arange(0, head_dim, 2, dtype=np.float32).astype(np.float64) / head_dim
    base_freq = 1.0 / (float(theta) ** exponents)
    attention = 1.0
    if scaling.kind == "linear":
        freq = base_freq / scaling.factor
    elif scaling.kind == "llama3":
        freq = _llama3(scaling, base_freq)
    elif scaling.kind == "yarn":
        freq, attention = _yarn(float(theta), scaling, head_dim, base_freq)
    else:  # default, and dynamic within max_position_embeddings (see the module docstring)
        freq = base_freq
    return freq.astype(np.float32), attention


def apply_rope(x: Array, positions: Array, inv_freq: np.ndarray, attention_factor: float) -> Array:
    """Rotate ``x`` by its positions (half-split layout of Hugging Face checkpoints).

    Args:
        x: ``[B, T, heads, D]`` queries or keys.
        positions: ``[B, T]`` int32 positions.
        inv_freq: float32 ``[D/2]`` from :func:`inverse_frequencies`.
        attention_factor: multiplies cos and sin (yarn), else 1.0.

    Returns:
        The rotated ``x`` in its own dtype.
    """
    half = x.shape[-1] // 2
    angles = positions.astype(jnp.float32)[:, :, None] * jnp.asarray(inv_freq)[None, None, :]
    cos = (jnp.cos(angles) * attention_factor)[:, :, None, :]  # [B, T, 1, D/2]
    sin = (jnp.sin(angles) * attention_factor)[:, :, None, :]
    x1 = x[..., :half].astype(jnp.float32)
    x2 = x[..., half:].astype(jnp.float32)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)
