"""Scripted models: real decoder weights whose logits are a table the test chooses.

A scenario test must force its scenario (a rollback, an exhausted budget, a stuck row), which a
random model almost never does. A scripted model is a bigram model built from real
:class:`~decoders.model.Params`: embeddings are one-hot rows, every block's attention output and
MLP down projection are zero (each block adds exactly nothing to the residual stream), and the
untied head holds the table. So the logits after token ``t`` are ``c * table[t]`` for one positive
constant ``c`` (the final RMSNorm's scale of a one-hot row), **exactly**, on every decoding path:
the head's product has one non-zero term, so no summation order can change it. The prefill, the
cached decode step and a fresh prefill after a rewind all see the same logits.

Build tables with :class:`Script`: ``Script(vocab).after(t, [(u, 5.0), (w, 3.0)])`` makes ``u``
the first choice after ``t`` and ``w`` the second.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence

import jax.numpy as jnp
import numpy as np

from decoders.config import ModelConfig
from decoders.loading import Model
from decoders.model import LayerParams, Params

__all__ = ["Script", "scripted_model"]


class Script:
    """A bigram logit table ``[V, V]`` under construction (row: the last token).

    Args:
        vocab_size: V.
        floor: the logit of every token not named (low, so scripted choices dominate).
    """

    def __init__(self, vocab_size: int, floor: float = -8.0) -> None:
        self.table = np.full((vocab_size, vocab_size), floor, dtype=np.float32)

    def after(self, token: int, choices: Iterable[tuple[int, float]]) -> Script:
        """Set the logits of ``choices`` (token, logit) after ``token``."""
        for choice, logit in choices:
            self.table[token, choice] = logit
        return self

    def chain(self, tokens: Sequence[int], logit: float = 6.0) -> Script:
        """Make each token of ``tokens`` the first choice after the one before it."""
        for before, after in itertools.pairwise(tokens):
            self.table[before, after] = logit
        return self

    def everywhere(self, token: int, logit: float) -> Script:
        """Give ``token`` the logit ``logit`` after every token (e.g. a likely EOS)."""
        self.table[:, token] = logit
        return self


def scripted_model(base: ModelConfig, table: np.ndarray) -> Model:
    """A model whose logits after token ``t`` are ``c * table[t]`` (``c > 0``, the same for all t).

    Args:
        base: shapes to keep (vocabulary, heads, EOS ids); the hidden size becomes V so that
            embeddings can be one-hot, and the model has one block.
        table: float32 ``[V, V]``.

    Returns:
        The model (dense float32 weights, untied head).
    """
    vocab = base.vocab_size
    if table.shape != (vocab, vocab):
        raise ValueError(f"table must be [{vocab}, {vocab}]; got {table.shape}")
    config = dataclasses.replace(
        base, hidden_size=vocab, num_layers=1, tie_embeddings=False, dtype="float32"
    )
    h, n, k, d = vocab, config.num_heads, config.num_kv_heads, config.head_dim
    i = config.intermediate_size
    layer = LayerParams(
        attn_norm=jnp.ones((h,), jnp.float32),
        wqkv=jnp.zeros((h, (n + 2 * k) * d), jnp.float32),
        wo=jnp.zeros((n * d, h), jnp.float32),  # attention adds nothing to the residual
        mlp_norm=jnp.ones((h,), jnp.float32),
        w_gate_up=jnp.zeros((h, 2 * i), jnp.float32),
        w_down=jnp.zeros((i, h), jnp.float32),  # nor does the MLP
    )
    params = Params(
        embed=jnp.eye(vocab, dtype=jnp.float32),
        layers=(layer,),
        final_norm=jnp.ones((h,), jnp.float32),
        lm_head=jnp.asarray(table, jnp.float32),
    )
    return Model(config=config, params=params, source="scripted")
