"""One decoder-only transformer as pure functions over explicit parameters and KV cache.

The block is Llama's; each supported family is a configuration of it (:class:`ModelConfig`):
biases on the fused query/key/value projection (Qwen2), per-head RMSNorm of queries and keys
(Qwen3, Gemma 3), norms after attention and MLP (Gemma), ``1 + w`` norms, scaled embeddings,
GELU, attention and final-logit soft-capping (Gemma 2), per-layer sliding windows and RoPE
variants (:mod:`decoders.rope`). :func:`layer_shapes` is the one description of which weights a
configuration has and their shapes; initialisation and loading both read it.

Parameters are a frozen pytree (:class:`Params`, one :class:`LayerParams` per block). A projection
weight is dense ``[in, out]`` or int8 (:class:`decoders.linear.QuantizedLinear`); :func:`project`
applies either. The query, key and value projections are one matrix, and so are the gate and up
projections: one product per group reads the activations once and, for batch-1 decoding, halves
the number of separate weight reads per block. The KV cache is two arrays of layout
``[layers, batch, kv_heads, slots, head_dim]``; slot ``s`` of a row holds the keys and values of
that row's token at position ``s``, so the causal mask alone hides stale slots after a rewind. A
sliding window is one more term of the same mask (``position - slot < window``), so rewinding a
windowed model is as exact as rewinding a full one: no slot is ever overwritten out of order.

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

from decoders.config import ModelConfig
from decoders.gguf_linear import BlockLinear
from decoders.linear import Linear, QuantizedLinear, embed_rows, project
from decoders.pytree import pytree_dataclass
from decoders.rope import apply_rope, inverse_frequencies

__all__ = [
    "KVCache",
    "LayerParams",
    "Params",
    "forward",
    "init_cache",
    "init_params",
    "layer_shapes",
    "logits",
]

Array = jax.Array


@pytree_dataclass
class LayerParams:
    """The weights of one transformer block (shapes with H hidden, N heads, K kv heads, D head).

    The optional fields are None unless the configuration has them (see :func:`layer_shapes`).
    """

    attn_norm: Array  # [H]
    wqkv: Linear  # [H, (N + 2K)*D]: queries, then keys, then values
    wo: Linear  # [N*D, H]
    mlp_norm: Array  # [H]
    w_gate_up: Linear  # [H, 2I]: gate, then up
    w_down: Linear  # [I, H]
    bqkv: Array | None = None  # [(N + 2K)*D] (qkv_bias)
    q_norm: Array | None = None  # [D] (qk_norm)
    k_norm: Array | None = None  # [D] (qk_norm)
    post_attn_norm: Array | None = None  # [H] (sandwich_norms)
    post_mlp_norm: Array | None = None  # [H] (sandwich_norms)


@pytree_dataclass
class Params:
    """All weights of a model; ``lm_head`` is None when the embeddings are tied."""

    embed: Linear  # [V, H] rows (quantised: QuantizedLinear with q [V, H], the head's layout)
    layers: tuple[LayerParams, ...]
    final_norm: Array  # [H]
    lm_head: Linear | None  # [H, V] or None (tied: logits use embed.T)


@pytree_dataclass
class KVCache:
    """Keys and values of every layer, append-only by position."""

    k: Array  # [L, B, K, S, D]
    v: Array  # [L, B, K, S, D]

    @property
    def max_slots(self) -> int:
        """S, slots per row."""
        return int(self.k.shape[3])


def layer_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The fields of :class:`LayerParams` that ``config`` has, with their shapes in our layout.

    Projections are ``[in, out]``; vectors (norms, biases) are 1-D. Fields absent from the result
    are None in every layer.
    """
    c = config
    h, n, k, d, i = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "attn_norm": (h,),
        "wqkv": (h, (n + 2 * k) * d),
        "wo": (n * d, h),
        "mlp_norm": (h,),
        "w_gate_up": (h, 2 * i),
        "w_down": (i, h),
    }
    if c.qkv_bias:
        shapes["bqkv"] = ((n + 2 * k) * d,)
    if c.qk_norm:
        shapes.update(q_norm=(d,), k_norm=(d,))
    if c.sandwich_norms:
        shapes.update(post_attn_norm=(h,), post_mlp_norm=(h,))
    return shapes


def init_params(config: ModelConfig, key: Array, scale: float = 0.05) -> Params:
    """Random parameters with the shapes of ``config`` (for tests and benchmarks).

    Args:
        config: the model shapes.
        key: a JAX PRNG key.
        scale: standard deviation of the weight matrices.

    Returns:
        A :class:`Params` in ``config.dtype``; norms are ones (zeros when the configuration's
        norms add 1) plus a little noise.
    """
    c = config
    shapes = layer_shapes(c)
    keys = iter(jax.random.split(key, c.num_layers * len(shapes) + 3))

    def draw(shape: tuple[int, ...], norm: bool = False) -> Array:
        noise = scale * jax.random.normal(next(keys), shape, jnp.float32)
        return (1.0 - c.norm_offset + noise if norm else noise).astype(c.jnp_dtype)

    layers = tuple(
        LayerParams(**{name: draw(shape, name.endswith("norm")) for name, shape in shapes.items()})
        for _ in range(c.num_layers)
    )
    embed = draw((c.vocab_size, c.hidden_size))
    head = None if c.tie_embeddings else draw((c.hidden_size, c.vocab_size))
    return Params(embed=embed, layers=layers, final_norm=draw((c.hidden_size,), True), lm_head=head)


def init_cache(config: ModelConfig, batch_size: int, max_slots: int) -> KVCache:
    """An empty (zero) cache of ``batch_size`` rows and ``max_slots`` slots."""
    shape = (config.num_layers, batch_size, config.num_kv_heads, max_slots, config.head_dim)
    return KVCache(k=jnp.zeros(shape, config.jnp_dtype), v=jnp.zeros(shape, config.jnp_dtype))


def _rms_norm(x: Array, weight: Array, config: ModelConfig) -> Array:
    # x: [..., W]; the statistic is taken in float32 whatever the activation dtype.
    x32 = x.astype(jnp.float32)
    scaled = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + config.rms_norm_eps)
    gain = (config.norm_offset + weight.astype(jnp.float32)).reshape((1,) * (x.ndim - 1) + (-1,))
    return (scaled * gain).astype(x.dtype)


def _softcap(x: Array, cap: float | None) -> Array:
    return x if cap is None else cap * jnp.tanh(x / cap)


def _activation(x: Array, config: ModelConfig) -> Array:
    if config.activation == "silu":
        return jax.nn.silu(x)
    return jax.nn.gelu(x, approximate=config.activation == "gelu_tanh")


def _attention(
    q: Array, k: Array, v: Array, positions: Array, config: ModelConfig, layer: int
) -> Array:
    # q: [B, T, N, D]; k, v: [B, K, W, D] (the first W cache slots); positions: [B, T].
    b, t, _, d = q.shape
    window = k.shape[2]
    qg = q.reshape(b, t, config.num_kv_heads, config.group_size, d)  # [B, T, K, G, D]
    scores = jnp.einsum("btkgd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32)
    scale = config.attention_scale or 1.0 / float(d) ** 0.5
    scores = _softcap(scores * scale, config.attn_softcap)  # [B, K, G, T, W]
    slots = jnp.arange(window, dtype=positions.dtype)  # [W]
    visible = slots[None, None, :] <= positions[:, :, None]  # [B, T, W]: causal = not stale
    sliding = config.layer_window(layer)
    if sliding is not None:  # and within the layer's window
        visible = visible & (positions[:, :, None] - slots[None, None, :] < sliding)
    scores = jnp.where(visible[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)  # [B, K, G, T, W]
    out = jnp.einsum("bkgts,bksd->btkgd", probs, v)  # [B, T, K, G, D]
    return out.reshape(b, t, config.num_heads * d)


def _queries_keys_values(
    layer: LayerParams, index: int, h: Array, positions: Array, config: ModelConfig
) -> tuple[Array, Array, Array]:
    # h: [B, T, H] normed input -> q [B, T, N, D], k and v [B, T, K, D], q and k rotated.
    b, t, _ = h.shape
    n, kv, d = config.num_heads, config.num_kv_heads, config.head_dim
    qkv = project(h, layer.wqkv)
    if layer.bqkv is not None:
        qkv = qkv + layer.bqkv.astype(qkv.dtype)[None, None, :]
    q = qkv[..., : n * d].reshape(b, t, n, d)
    k = qkv[..., n * d : (n + kv) * d].reshape(b, t, kv, d)
    v = qkv[..., (n + kv) * d :].reshape(b, t, kv, d)
    if layer.q_norm is not None and layer.k_norm is not None:
        q, k = _rms_norm(q, layer.q_norm, config), _rms_norm(k, layer.k_norm, config)
    theta, scaling = config.layer_rope(index)
    inv_freq, factor = inverse_frequencies(theta, scaling, d)  # host constants at trace time
    return apply_rope(q, positions, inv_freq, factor), apply_rope(k, positions, inv_freq, factor), v


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
    q, k, v = _queries_keys_values(
        layer, index, _rms_norm(x, layer.attn_norm, config), positions, config
    )
    rows = jnp.arange(b)[:, None]  # [B, 1] broadcast against positions [B, T]
    # Advanced indices around a slice: the indexed view is [B, T, K, D], like k and v. A decode
    # step's positions are in bounds by the state invariant, which lets XLA scatter in place;
    # "drop" (for prefill padding past the last slot) makes it rewrite the whole cache instead.
    mode = "promise_in_bounds" if t == 1 else "drop"
    new_k = cache.k.at[index, rows, :, positions, :].set(k, mode=mode)
    new_v = cache.v.at[index, rows, :, positions, :].set(v, mode=mode)
    attn = _attention(
        q, new_k[index, :, :, :window, :], new_v[index, :, :, :window, :], positions, config, index
    )
    attn = project(attn, layer.wo)
    if layer.post_attn_norm is not None:
        attn = _rms_norm(attn, layer.post_attn_norm, config)
    x = x + attn
    h = _rms_norm(x, layer.mlp_norm, config)
    gate_up = project(h, layer.w_gate_up)
    inner = config.intermediate_size
    mlp = project(_activation(gate_up[..., :inner], config) * gate_up[..., inner:], layer.w_down)
    if layer.post_mlp_norm is not None:
        mlp = _rms_norm(mlp, layer.post_mlp_norm, config)
    return x + mlp, KVCache(k=new_k, v=new_v)


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
    if config.scale_embeddings:  # Gemma: the multiplier is rounded to the activation dtype
        x = x * jnp.asarray(config.hidden_size**0.5, dtype=x.dtype)
    for index, layer in enumerate(params.layers):
        x, cache = _block(layer, index, x, cache, positions, window, config)
    return _rms_norm(x, params.final_norm, config), cache


def logits(params: Params, config: ModelConfig, hidden: Array) -> Array:
    """Next-token logits in float32 for hidden states ``[..., H]`` → ``[..., V]`` (soft-capped
    when the configuration says so)."""
    if params.lm_head is not None:
        out = project(hidden, params.lm_head).astype(jnp.float32)
    elif isinstance(params.embed, QuantizedLinear | BlockLinear):  # rows: the head's layout
        out = project(hidden, params.embed).astype(jnp.float32)
    else:
        out = jnp.einsum("...h,vh->...v", hidden, params.embed, preferred_element_type=jnp.float32)
    return _softcap(out.astype(jnp.float32), config.final_softcap)
