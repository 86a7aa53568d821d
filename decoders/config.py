"""Static configuration of the decoder: model shapes and decode bounds.

Both classes are frozen, hashable and validated once at construction, so they can be passed to
``jax.jit`` as static arguments: changing one recompiles, which is why nothing that varies between
calls (prompt lengths, ``max_new_tokens``, seeds) lives here.

* :class:`ModelConfig` fixes the shapes and the math of a decoder-only transformer: the Llama
  block and the differences of each supported family (Qwen biases and q/k norms, sliding windows,
  Gemma's norms, scaling and soft-capping, RoPE variants) as fields, the parameter dtype, and the
  checkpoint layout its weights are read from. :mod:`decoders.families` builds one from a
  ``config.json``.
* :class:`DecodeConfig` fixes the shapes of a decode state: rows and cache slots.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from decoders.rope import RopeScaling
from shield.errors import DecoderError

__all__ = ["ACTIVATIONS", "DTYPES", "LAYOUTS", "DecodeConfig", "ModelConfig"]

#: The parameter/activation dtypes a model may run in (float32 is the CPU default).
DTYPES: tuple[str, ...] = ("float32", "bfloat16")
#: MLP activations: SiLU (Llama, Qwen, Mistral, Phi-3), tanh-approximated and exact GELU (Gemma).
ACTIVATIONS: tuple[str, ...] = ("silu", "gelu_tanh", "gelu")
#: Checkpoint layouts (tensor names) weights are read from: see :mod:`decoders.families`.
LAYOUTS: tuple[str, ...] = ("llama", "gemma", "phi3")


def _positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise DecoderError(
                f"{owner}.{name}: expected a positive int, received {value!r}; "
                "fix the configuration (or the file it was read from)."
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shapes and constants of a decoder-only transformer; the defaults are plain Llama.

    Attributes:
        vocab_size: V, rows of the embedding table.
        hidden_size: H, the residual width.
        intermediate_size: I, the width of the gated MLP.
        num_layers: L, transformer blocks.
        num_heads: query heads; ``hidden_size`` need not equal ``num_heads * head_dim``.
        num_kv_heads: key/value heads (grouped-query attention); divides ``num_heads``.
        head_dim: D, width of one head (even, for RoPE).
        rope_theta: RoPE base frequency.
        rms_norm_eps: epsilon of every RMSNorm.
        tie_embeddings: the output head is the transposed embedding table.
        max_position: the model's context length (an upper bound for cache slots).
        dtype: ``"float32"`` (CPU default) or ``"bfloat16"``.
        bos_token_id: beginning-of-sequence id, or None.
        eos_token_ids: ids that end a generation.
        rope_scaling: the RoPE variant of (global) layers.
        sliding_rope_theta: the RoPE base of sliding-window layers, or None for ``rope_theta``.
        sliding_rope_scaling: the RoPE variant of sliding-window layers, or None for
            ``rope_scaling``.
        layer_windows: per layer, the sliding window (a query at position ``p`` sees positions
            ``> p - window``) or None for full causal attention; ``()`` means every layer is full.
        qkv_bias: the query/key/value projection has a bias (Qwen2).
        qk_norm: queries and keys are RMS-normed per head before RoPE (Qwen3, Gemma 3).
        sandwich_norms: the attention and MLP outputs are RMS-normed before their residual add
            (Gemma 2 and 3).
        norm_offset: every RMSNorm multiplies by ``offset + weight`` (1.0 for Gemma).
        scale_embeddings: embeddings are multiplied by ``sqrt(hidden_size)`` (Gemma).
        activation: the gated MLP's activation, one of :data:`ACTIVATIONS`.
        attention_scale: the query-key product's multiplier, or None for ``head_dim ** -0.5``.
        attn_softcap: attention scores become ``cap * tanh(scores / cap)`` (Gemma 2), or None.
        final_softcap: logits become ``cap * tanh(logits / cap)`` (Gemma 2), or None.
        layout: the checkpoint layout (tensor names) of the weights, one of :data:`LAYOUTS`.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    max_position: int = 8192
    dtype: str = "float32"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    rope_scaling: RopeScaling = dataclasses.field(default_factory=RopeScaling)
    sliding_rope_theta: float | None = None
    sliding_rope_scaling: RopeScaling | None = None
    layer_windows: tuple[int | None, ...] = ()
    qkv_bias: bool = False
    qk_norm: bool = False
    sandwich_norms: bool = False
    norm_offset: float = 0.0
    scale_embeddings: bool = False
    activation: str = "silu"
    attention_scale: float | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    layout: str = "llama"

    def __post_init__(self) -> None:
        _positive(
            "ModelConfig",
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            max_position=self.max_position,
        )
        if self.num_heads % self.num_kv_heads:
            raise DecoderError(
                f"ModelConfig: num_kv_heads must divide num_heads; received {self.num_kv_heads} "
                f"and {self.num_heads}; fix the head counts."
            )
        if self.head_dim % 2:
            raise DecoderError(
                f"ModelConfig.head_dim: expected an even width for RoPE, received {self.head_dim}."
            )
        if self.dtype not in DTYPES:
            raise DecoderError(
                f"ModelConfig.dtype: expected one of {DTYPES}, received {self.dtype!r}."
            )
        if not isinstance(self.eos_token_ids, tuple):
            raise DecoderError(
                f"ModelConfig.eos_token_ids: expected a tuple of ints, received "
                f"{self.eos_token_ids!r}; pass tuple(ids)."
            )
        self._check_variants()

    def _check_variants(self) -> None:
        windows = self.layer_windows
        if not isinstance(windows, tuple) or (windows and len(windows) != self.num_layers):
            raise DecoderError(
                f"ModelConfig.layer_windows: expected () or a tuple of {self.num_layers} entries, "
                f"received {windows!r}."
            )
        for window in windows:
            if window is not None and (not isinstance(window, int) or window <= 0):
                raise DecoderError(
                    f"ModelConfig.layer_windows: expected positive ints or None, received "
                    f"{window!r}."
                )
        for name, allowed in (("activation", ACTIVATIONS), ("layout", LAYOUTS)):
            if getattr(self, name) not in allowed:
                raise DecoderError(
                    f"ModelConfig.{name}: expected one of {allowed}, received "
                    f"{getattr(self, name)!r}."
                )
        for name in ("attention_scale", "attn_softcap", "final_softcap"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise DecoderError(
                    f"ModelConfig.{name}: expected a positive number or None, received {value!r}."
                )

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of ``layer``, or None when it attends to its whole prefix."""
        return self.layer_windows[layer] if self.layer_windows else None

    def layer_rope(self, layer: int) -> tuple[float, RopeScaling]:
        """``(theta, scaling)`` of the RoPE of ``layer`` (sliding layers may have their own)."""
        if self.layer_window(layer) is None:
            return self.rope_theta, self.rope_scaling
        theta = self.rope_theta if self.sliding_rope_theta is None else self.sliding_rope_theta
        scaling = self.sliding_rope_scaling or self.rope_scaling
        return theta, scaling

    @property
    def group_size(self) -> int:
        """Query heads that share one key/value head."""
        return self.num_heads // self.num_kv_heads

    @property
    def jnp_dtype(self) -> Any:
        """The dtype of parameters and activations as a JAX dtype."""
        return jnp.dtype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        values = dataclasses.asdict(self)
        values["eos_token_ids"] = list(self.eos_token_ids)
        values["layer_windows"] = list(self.layer_windows)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output."""
        values = dict(values)
        values["eos_token_ids"] = tuple(int(i) for i in values.get("eos_token_ids", ()))
        values["layer_windows"] = tuple(values.get("layer_windows", ()))
        for name in ("rope_scaling", "sliding_rope_scaling"):
            if isinstance(values.get(name), dict):
                values[name] = RopeScaling(**values[name])
        return cls(**values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodeConfig:
    """Shapes of a decode state: ``batch_size`` rows of ``max_slots`` cache slots each.

    Slot ``s`` of a row holds the token at position ``s`` of that row's sequence (prompt and
    response), so ``max_slots`` bounds prompt length plus new tokens.

    Attributes:
        batch_size: B, rows decoded together (a multiple of the mesh size when sharded).
        max_slots: S, cache slots per row.
    """

    batch_size: int
    max_slots: int

    def __post_init__(self) -> None:
        _positive("DecodeConfig", batch_size=self.batch_size, max_slots=self.max_slots)
