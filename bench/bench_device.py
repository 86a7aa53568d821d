"""Decode-step benchmark on the default JAX device: tokens/s and the memory-bandwidth roofline.

Run: ``python -m bench.bench_device [--size 1b|135m|tiny] [--batches 1,8] [--weights dense,int8]
[--dtype bfloat16] [--steps 64] [--context 512] [--repeats 5] [--peak-gbps GB/s] [--json]``.

A model of random weights with the shapes of ``--size`` (``1b``: Llama-3.2-1B's, 1.24B
parameters; ``135m``: SmolLM2-135M's; ``tiny``: a smoke test) is prefilled with ``--context``
tokens per row, then ``--steps`` greedy decode steps run in one jitted loop
(:func:`decoders.step.decode_loop`, the decoder's own step: XLA's kernels on GPU/TPU, the native
int8 kernel on a CPU). Each number is the median of ``--repeats`` timed runs after a warm-up
(compilation excluded).

Roofline: a decode step must read every weight once and each row's keys and values up to its
position, so ``bytes per step / step time`` is the bandwidth the step achieves; divided by the
device's peak memory bandwidth (a table of known devices, or ``--peak-gbps``) it is the fraction
of the roofline reached. Batch 1 is the bandwidth-bound case the target (>= 50% for a 1B model)
is stated for. On a CPU the peak is unknown unless given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

#: Model shapes (num_layers, hidden, intermediate, heads, kv_heads, head_dim, vocab).
SIZES: dict[str, dict[str, int]] = {
    "1b": dict(layers=16, hidden=2048, inter=8192, heads=32, kv=8, head=64, vocab=128256),
    "135m": dict(layers=30, hidden=576, inter=1536, heads=9, kv=3, head=64, vocab=49152),
    "tiny": dict(layers=2, hidden=128, inter=256, heads=4, kv=2, head=32, vocab=1024),
}
#: Peak memory bandwidth in GB/s of known devices, by a substring of ``device.device_kind``.
PEAK_GBPS: dict[str, float] = {
    "H200": 4800.0,
    "H100 PCIe": 2000.0,
    "H100": 3350.0,
    "A100-SXM4-80GB": 2039.0,
    "A100-PCIE-80GB": 1935.0,
    "A100": 1555.0,
    "L40S": 864.0,
    "L4": 300.0,
    "A10G": 600.0,
    "V100": 900.0,
    "TPU v6 lite": 1640.0,
    "TPU v5 lite": 819.0,
    "TPU v5p": 2765.0,
    "TPU v5": 2765.0,
    "TPU v4": 1200.0,
}


def peak_bandwidth(kind: str, given: float | None) -> float | None:
    """The peak bandwidth (GB/s) of a device kind: ``given``, else the table, else None."""
    if given is not None:
        return given
    return next((gbps for name, gbps in PEAK_GBPS.items() if name in kind), None)


def tree_bytes(tree: Any) -> int:
    """Bytes of every array of a pytree."""
    import jax

    return sum(int(leaf.size) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(tree))


def measure(size: str, dtype: str, weights: str, batch: int, args: argparse.Namespace) -> dict:
    """Median tokens/s and roofline fraction of one configuration."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from decoders.config import DecodeConfig, ModelConfig
    from decoders.model import init_params
    from decoders.quantize import quantize_params
    from decoders.sampling import SamplingConfig
    from decoders.state import init_state
    from decoders.step import attention_window, decode_loop, prefill

    s = SIZES[size]
    config = ModelConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["inter"],
        num_layers=s["layers"], num_heads=s["heads"], num_kv_heads=s["kv"], head_dim=s["head"],
        tie_embeddings=True, dtype=dtype, max_position=args.context + args.steps + 64,
    )  # fmt: skip
    params = init_params(config, jax.random.key(0), scale=0.02)
    if weights == "int8":
        params = quantize_params(params)
    slots = args.context + args.steps + 1
    window = attention_window(slots, slots)
    sampling = SamplingConfig(temperature=0.0)
    rng = np.random.default_rng(0)
    prompt = jnp.asarray(rng.integers(3, config.vocab_size, (batch, args.context)), jnp.int32)
    lengths = jnp.full((batch,), args.context, jnp.int32)

    def fresh() -> Any:
        state = init_state(config, DecodeConfig(batch_size=batch, max_slots=slots))
        state = prefill(params, config, state, prompt, lengths, window=window)
        return jax.block_until_ready(state)

    def timed() -> float:
        state = fresh()
        began = time.perf_counter()
        state, used = decode_loop(
            params, config, sampling, state, jnp.int32(args.steps), jnp.int32(args.steps),
            window=window,
        )  # fmt: skip
        jax.block_until_ready(state)
        assert int(used) == args.steps, "a row finished early; the timing would be short"
        return time.perf_counter() - began

    timed()  # warm-up: compilation
    seconds = statistics.median(timed() for _ in range(args.repeats))
    step = seconds / args.steps
    kv_bytes = jnp.dtype(dtype).itemsize
    # Keys and values read per step: every layer, every row, the cache up to its position.
    mean_position = args.context + args.steps / 2
    cache_read = 2 * config.num_layers * batch * config.num_kv_heads * config.head_dim
    cache_read = int(cache_read * mean_position * kv_bytes)
    weight_read = tree_bytes(params)
    device = jax.devices()[0]
    peak = peak_bandwidth(device.device_kind, args.peak_gbps)
    achieved = (weight_read + cache_read) / step / 1e9
    return {
        "size": size,
        "dtype": dtype,
        "weights": weights,
        "batch": batch,
        "device": device.device_kind,
        "tokens_per_s": batch / step,
        "step_ms": step * 1e3,
        "weight_mb": weight_read / 1e6,
        "kv_mb_per_step": cache_read / 1e6,
        "achieved_gbps": achieved,
        "peak_gbps": peak,
        "roofline": None if peak is None else achieved / peak,
    }


def main() -> None:
    """Parse the arguments, measure every configuration, print a table (or JSON lines)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--weights", default="dense,int8")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak-gbps", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configurations = [
        (weights, int(batch))
        for weights in args.weights.split(",")
        for batch in args.batches.split(",")
    ]
    if not args.json:
        print(f"model {args.size} ({args.dtype}), context {args.context}, {args.steps} steps")
        print("| device | weights | batch | tokens/s | step ms | weights MB | KV MB/step | GB/s "
              "| roofline |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
    for weights, batch in configurations:  # printed as measured: a slow device shows progress
        r = measure(args.size, args.dtype, weights, batch, args)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        roofline = "n/a (pass --peak-gbps)" if r["roofline"] is None else f"{r['roofline']:.0%}"
        print(
            f"| {r['device']} | {r['weights']} | {r['batch']} | {r['tokens_per_s']:.1f} | "
            f"{r['step_ms']:.2f} | {r['weight_mb']:.0f} | {r['kv_mb_per_step']:.1f} | "
            f"{r['achieved_gbps']:.1f} | {roofline} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
