"""Static configuration of the decoder: model shapes and decode bounds.

Both classes are frozen, hashable and validated once at construction, so they can be passed to
``jax.jit`` as static arguments: changing one recompiles, which is why nothing that varies between
calls (prompt lengths, ``max_new_tokens``, seeds) lives here.

* :class:`ModelConfig` fixes the shapes of a Llama-family model (SmolLM2, Llama, Mistral-style
  grouped-query attention), its RoPE theta, whether embeddings are tied, and the parameter dtype.
* :class:`DecodeConfig` fixes the shapes of a decode state: rows and cache slots.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from shield.errors import DecoderError

__all__ = ["DTYPES", "DecodeConfig", "ModelConfig"]

#: The parameter/activation dtypes a model may run in (float32 is the CPU default).
DTYPES: tuple[str, ...] = ("float32", "bfloat16")


def _positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise DecoderError(
                f"{owner}.{name}: expected a positive int, received {value!r}; "
                "fix the configuration (or the file it was read from)."
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shapes and constants of a Llama-family decoder-only transformer.

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
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output."""
        values = dict(values)
        values["eos_token_ids"] = tuple(int(i) for i in values.get("eos_token_ids", ()))
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
