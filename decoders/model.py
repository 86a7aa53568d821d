"""A Llama-family transformer as pure functions over explicit parameters and KV cache.

Parameters are a frozen pytree (:class:`Params`, one :class:`LayerParams` per block). A projection
weight is dense ``[in, out]`` or int8 (:class:`decoders.linear.QuantizedLinear`); :func:`project`
applies either. The query, key and value projections are one matrix, and so are the gate and up
projections: one product per group reads the activations once and, for batch-1 decoding, halves
the number of separate weight reads per block. The KV cache is two arrays of layout
``[layers, batch, kv_heads, slots, head_dim]``; slot ``s`` of a row holds the keys and values of
that row's token at position ``s``, so the causal mask alone hides stale slots after a rewind.

:func:`forward` feeds ``T`` tokens per row at explicit positions: it writes their keys and values
into the cache (a scatter, done in place when the caller donates the cache or carries it through a
loop), then attends over the first ``window`` slots only. Prefill (``T`` tokens) and a decode step
(``T = 1``) are the same function. :func:`logits` applies the output head to hidden states.

Layers are a Python loop over separate per-layer arrays, not a scan over stacked weights: on CPU a
scan slices (copies) each layer's weights every step, which doubles the memory traffic that bounds
decoding speed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from decoders.config import ModelConfig
from decoders.linear import Linear, QuantizedLinear, embed_rows, project

__all__ = ["KVCache", "LayerParams", "Params", "forward", "init_cache", "init_params", "logits"]

Array = jax.Array


@struct.dataclass(frozen=True)
class LayerParams:
    """The weights of one transformer block (shapes with H hidden, N heads, K kv heads, D head)."""

    attn_norm: Array  # [H]
    wqkv: Linear  # [H, (N + 2K)*D]: queries, then keys, then values
    wo: Linear  # [N*D, H]
    mlp_norm: Array  # [H]
    w_gate_up: Linear  # [H, 2I]: gate, then up
    w_down: Linear  # [I, H]


@struct.dataclass(frozen=True)
class Params:
    """All weights of a model; ``lm_head`` is None when the embeddings are tied."""

    embed: Linear  # [V, H] rows (quantised: QuantizedLinear with q [V, H], the head's layout)
    layers: tuple[LayerParams, ...]
    final_norm: Array  # [H]
    lm_head: Linear | None  # [H, V] or None (tied: logits use embed.T)


@struct.dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer, append-only by position."""

    k: Array  # [L, B, K, S, D]
    v: Array  # [L, B, K, S, D]

    @property
    def max_slots(self) -> int:
        """S, slots per row."""
        return int(self.k.shape[3])


def init_params(config: ModelConfig, key: Array, scale: float = 0.05) -> Params:
    """Random parameters with the shapes of ``config`` (for tests and benchmarks).

    Args:
        config: the model shapes.
        key: a JAX PRNG key.
        scale: standard deviation of the weight matrices.

    Returns:
        A :class:`Params` in ``config.dtype``; norms are ones plus a little noise.
    """
    c = config
    h, n, k, d, i = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    shapes = {
        "attn_norm": (h,),
        "wqkv": (h, (n + 2 * k) * d),
        "wo": (n * d, h),
        "mlp_norm": (h,),
        "w_gate_up": (h, 2 * i),
        "w_down": (i, h),
    }
    keys = iter(jax.random.split(key, c.num_layers * len(shapes) + 3))

    def draw(shape: tuple[int, ...], norm: bool = False) -> Array:
        noise = scale * jax.random.normal(next(keys), shape, jnp.float32)
        return (1.0 + noise if norm else noise).astype(c.jnp_dtype)

    layers = tuple(
        LayerParams(**{name: draw(shape, name.endswith("norm")) for name, shape in shapes.items()})
        for _ in range(c.num_layers)
    )
    embed = draw((c.vocab_size, h))
    head = None if c.tie_embeddings else draw((h, c.vocab_size))
    return Params(embed=embed, layers=layers, final_norm=draw((h,), True), lm_head=head)


def init_cache(config: ModelConfig, batch_size: int, max_slots: int) -> KVCache:
    """An empty (zero) cache of ``batch_size`` rows and ``max_slots`` slots."""
    shape = (config.num_layers, batch_size, config.num_kv_heads, max_slots, config.head_dim)
    return KVCache(k=jnp.zeros(shape, config.jnp_dtype), v=jnp.zeros(shape, config.jnp_dtype))


def _rms_norm(x: Array, weight: Array, eps: float) -> Array:
    # x: [B, T, H]; the statistic is taken in float32 whatever the activation dtype.
    x32 = x.astype(jnp.float32)
    scaled = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (scaled * weight.astype(jnp.float32)[None, None, :]).astype(x.dtype)


def _rope(x: Array, positions: Array, theta: float) -> Array:
    # x: [B, T, heads, D] in the half-split layout of Hugging Face Llama; positions: [B, T].
    half = x.shape[-1] // 2
    inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [D/2]
    angles = positions.astype(jnp.float32)[:, :, None] * inv_freq[None, None, :]  # [B, T, D/2]
    cos = jnp.cos(angles)[:, :, None, :]  # [B, T, 1, D/2]
    sin = jnp.sin(angles)[:, :, None, :]
    x1 = x[..., :half].astype(jnp.float32)
    x2 = x[..., half:].astype(jnp.float32)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


def _attention(q: Array, k: Array, v: Array, positions: Array, config: ModelConfig) -> Array:
    # q: [B, T, N, D]; k, v: [B, K, W, D] (the first W cache slots); positions: [B, T].
    b, t, _, d = q.shape
    window = k.shape[2]
    qg = q.reshape(b, t, config.num_kv_heads, config.group_size, d)  # [B, T, K, G, D]
    scores = jnp.einsum("btkgd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32)
    scores = scores * (1.0 / float(d) ** 0.5)  # [B, K, G, T, W]
    slots = jnp.arange(window, dtype=positions.dtype)  # [W]
    visible = slots[None, None, :] <= positions[:, :, None]  # [B, T, W]: causal = not stale
    scores = jnp.where(visible[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)  # [B, K, G, T, W]
    out = jnp.einsum("bkgts,bksd->btkgd", probs, v)  # [B, T, K, G, D]
    return out.reshape(b, t, config.num_heads * d)


def _block(
    layer: LayerParams,
    index: int,
    x: Array,
    cache: KVCache,
    positions: Array,
    window: int,
    config: ModelConfig,
) -> tuple[Array, KVCache]:
    # x: [B, T, H]; positions: [B, T] (also the cache slots written).
    b, t, _ = x.shape
    n, kv, d = config.num_heads, config.num_kv_heads, config.head_dim
    h = _rms_norm(x, layer.attn_norm, config.rms_norm_eps)
    qkv = project(h, layer.wqkv)
    q = _rope(qkv[..., : n * d].reshape(b, t, n, d), positions, config.rope_theta)
    k = _rope(qkv[..., n * d : (n + kv) * d].reshape(b, t, kv, d), positions, config.rope_theta)
    v = qkv[..., (n + kv) * d :].reshape(b, t, kv, d)
    rows = jnp.arange(b)[:, None]  # [B, 1] broadcast against positions [B, T]
    # Advanced indices around a slice: the indexed view is [B, T, K, D], like k and v. A decode
    # step's positions are in bounds by the state invariant, which lets XLA scatter in place;
    # "drop" (for prefill padding past the last slot) makes it rewrite the whole cache instead.
    mode = "promise_in_bounds" if t == 1 else "drop"
    new_k = cache.k.at[index, rows, :, positions, :].set(k, mode=mode)
    new_v = cache.v.at[index, rows, :, positions, :].set(v, mode=mode)
    attn = _attention(
        q, new_k[index, :, :, :window, :], new_v[index, :, :, :window, :], positions, config
    )
    x = x + project(attn, layer.wo)
    h = _rms_norm(x, layer.mlp_norm, config.rms_norm_eps)
    gate_up = project(h, layer.w_gate_up)
    inner = config.intermediate_size
    x = x + project(jax.nn.silu(gate_up[..., :inner]) * gate_up[..., inner:], layer.w_down)
    return x, KVCache(k=new_k, v=new_v)


def forward(
    params: Params,
    config: ModelConfig,
    cache: KVCache,
    tokens: Array,
    positions: Array,
    window: int,
) -> tuple[Array, KVCache]:
    """Feed ``tokens`` at ``positions``, writing their keys/values, and return hidden states.

    Args:
        params: the model weights.
        config: the model shapes (static).
        cache: the KV cache; slots ``>= positions`` of a row may hold anything.
        tokens: ``[B, T]`` int32 token ids.
        positions: ``[B, T]`` int32 positions (= cache slots); entries ``>= S`` are not written.
        window: static number of leading slots attended over; must exceed every position.

    Returns:
        ``(hidden, cache)``: final-normed hidden states ``[B, T, H]`` and the updated cache.
    """
    x = embed_rows(params.embed, tokens, config.jnp_dtype)  # [B, T, H]
    for index, layer in enumerate(params.layers):
        x, cache = _block(layer, index, x, cache, positions, window, config)
    return _rms_norm(x, params.final_norm, config.rms_norm_eps), cache


def logits(params: Params, config: ModelConfig, hidden: Array) -> Array:
    """Next-token logits in float32 for hidden states ``[..., H]`` → ``[..., V]``."""
    if params.lm_head is not None:
        return project(hidden, params.lm_head).astype(jnp.float32)
    if isinstance(params.embed, QuantizedLinear):  # its rows are already the head's layout
        return project(hidden, params.embed).astype(jnp.float32)
    out = jnp.einsum("...h,vh->...v", hidden, params.embed, preferred_element_type=jnp.float32)
    return out.astype(jnp.float32)
