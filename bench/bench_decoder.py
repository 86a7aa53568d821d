"""Decoder benchmark: our JAX decoder (dense float32 and int8 weights) vs transformers + torch on
the bundled SmolLM2 GGUF.

Run: ``python -m bench.bench_decoder [--repeats N] [--quick]``. Each side runs in its own
subprocess, one after the other (so peak memory is its own): first a cold then a warm load into a
fresh cache directory, then our dense and int8 decoders (each loading warm from that cache), then
the reference. Every throughput is the median of ``--repeats`` runs after a warm-up (compilation
excluded). Prints each number with its target and PASS/MISS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decoders import Model, Tokenizer

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle. " * 3
BANDWIDTH_GBPS = 11.0  # measured memory read bandwidth of the benchmark machine (orientation)
SIDES = ("load", "dense", "int8", "reference")


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def loads() -> dict[str, float]:
    """Cold then warm load time, into the cache directory of ``$SHIELD_CACHE_DIR``."""
    import decoders
    from decoders.native import build_kernel

    out: dict[str, float] = {}
    began = time.perf_counter()
    decoders.load_model()
    out["load_cold_s"] = time.perf_counter() - began
    began = time.perf_counter()
    decoders.load_model()
    out["load_warm_s"] = time.perf_counter() - began
    build_kernel()  # once per cache directory; the int8 side's load must not include a compile
    return out


def weight_megabytes(model: Model) -> float:
    """Megabytes of ``model.params`` (every array leaf: what a batch-1 step reads)."""
    import jax

    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(model.params)) / 1e6


def decode_rate(
    model: Model,
    tok: Tokenizer,
    *,
    batch: int,
    new: int,
    slots: int,
    temperature: float,
    repeats: int,
    prompt: str = PROMPT,
) -> float:
    """Tokens per second of ``batch`` rows of ``prompt`` decoding ``new`` tokens each (median of
    ``repeats`` runs after a first one that compiles); ``model.config`` must have no EOS ids."""
    import jax

    import decoders
    from decoders.step import run

    sampling = decoders.SamplingConfig(temperature=temperature, top_p=0.9)
    times = []
    for attempt in range(repeats + 1):
        prepared = decoders.prepare(
            model,
            tok,
            [prompt] * batch,
            max_new_tokens=new,
            seed=list(range(batch)),
            max_slots=slots,
        )
        jax.block_until_ready(prepared.state)
        began = time.perf_counter()
        state = run(model.params, model.config, sampling, prepared.state, max_new_tokens=new)
        jax.block_until_ready(state.cursor)
        if attempt:  # the first run compiles
            times.append(time.perf_counter() - began)
    return batch * new / _median(times)


def prefill_rate(model: Model, tok: Tokenizer, *, prompt: str, slots: int, repeats: int) -> float:
    """Prompt tokens per second of :func:`decoders.prepare` (tokenize and prefill) on ``prompt``
    (median of ``repeats`` runs after a first one that compiles)."""
    import jax

    import decoders

    count = len(tok.encode(prompt))
    times = []
    for attempt in range(repeats + 1):
        began = time.perf_counter()
        prepared = decoders.prepare(model, tok, [prompt], max_new_tokens=1, max_slots=slots)
        jax.block_until_ready(prepared.state)
        if attempt:
            times.append(time.perf_counter() - began)
    return count / _median(times)


def ours(repeats: int, quick: bool, weights: str) -> dict[str, float]:
    """Measure our decoder with ``weights`` ("dense" or "int8"); returns named numbers."""
    import jax
    import jax.numpy as jnp

    import decoders
    from decoders.step import decode_logits

    out: dict[str, float] = {}
    began = time.perf_counter()
    model, tok = decoders.load_model(weights=weights)
    out["load_warm_s"] = time.perf_counter() - began
    config = dataclasses.replace(model.config, eos_token_ids=())  # always run to the limit
    model = dataclasses.replace(model, config=config)
    out["weight_mb"] = weight_megabytes(model)

    b1_new, b8_new = (32, 16) if quick else (128, 64)
    for slots in (256, 2048):
        out[f"b1_{slots}_tok_s"] = decode_rate(
            model, tok, batch=1, new=b1_new, slots=slots, temperature=0.0, repeats=repeats
        )
        out[f"b8_{slots}_tok_s"] = decode_rate(
            model, tok, batch=8, new=b8_new, slots=slots, temperature=1.0, repeats=repeats
        )
        if slots == 256:  # the reference's workload: load, batch 1 and batch 8 decoding
            out["peak_mb"] = _peak_mb()
    out["prefill_tok_s"] = prefill_rate(model, tok, prompt=PROMPT, slots=256, repeats=repeats)

    # A rewind against one decode step, for a short and a long prefix.
    for label, slots in (("short", 256), ("long", 2048)):
        prepared = decoders.prepare(model, tok, [PROMPT], max_new_tokens=8, max_slots=slots)
        state = prepared.state
        window = min(slots, 256)
        rewind = jax.jit(decoders.rewind)
        target = jnp.asarray(prepared.state.start)
        jax.block_until_ready(rewind(state, target))
        jax.block_until_ready(decode_logits(model.params, config, state, window=window))
        rw, st = [], []
        for _ in range(max(repeats, 3)):
            began = time.perf_counter()
            jax.block_until_ready(rewind(state, target))
            rw.append(time.perf_counter() - began)
            began = time.perf_counter()
            jax.block_until_ready(decode_logits(model.params, config, state, window=window))
            st.append(time.perf_counter() - began)
        out[f"rewind_{label}_over_step"] = _median(rw) / _median(st)
    out["peak_all_mb"] = _peak_mb()  # with 2048-slot caches of 8 rows (0.75 GB of keys/values)
    return out


def reference(repeats: int, quick: bool) -> dict[str, float]:
    """Measure transformers + torch generating from the same GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from decoders.paths import bundled_model_path

    torch.set_num_threads(os.cpu_count() or 1)
    path = bundled_model_path()
    out: dict[str, float] = {}
    began = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    out["load_s"] = time.perf_counter() - began
    tok.padding_side = "left"
    tok.pad_token_id = 0

    def decode(batch: int, new: int, sample: bool) -> float:
        inputs = tok([PROMPT] * batch, return_tensors="pt", padding=True)
        times = []
        for attempt in range(repeats + 1):
            began = time.perf_counter()
            with torch.no_grad():
                model.generate(
                    **inputs,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=sample,
                    top_p=0.9 if sample else None,
                    temperature=1.0 if sample else None,
                    top_k=None,
                    pad_token_id=0,
                )
            if attempt:
                times.append(time.perf_counter() - began)
        return batch * new / _median(times)

    b1_new, b8_new = (32, 16) if quick else (128, 64)
    out["b1_tok_s"] = decode(1, b1_new, False)
    out["b8_tok_s"] = decode(8, b8_new, True)
    ids = tok(PROMPT, return_tensors="pt")
    times = []
    for _ in range(repeats + 1):
        began = time.perf_counter()
        with torch.no_grad():
            model(**ids)
        times.append(time.perf_counter() - began)
    out["prefill_tok_s"] = ids["input_ids"].shape[1] / _median(times[1:])
    out["peak_mb"] = _peak_mb()
    return out


def _side(name: str, repeats: int, quick: bool, cache: str) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.bench_decoder", "--side", name]
    command += ["--repeats", str(repeats), *(["--quick"] if quick else [])]
    env = {**os.environ, "SHIELD_CACHE_DIR": cache}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise SystemExit(f"bench side {name} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _line(label: str, value: float, unit: str, target: str, ok: bool | None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    print(f"{label:<44} {value:>10.2f} {unit:<7} target {target:<34} {verdict}")


def report(
    load: dict[str, float], sides: dict[str, dict[str, float]], ref: dict[str, float]
) -> None:
    """Print every number with its target, for each weight format."""
    dense_bound = BANDWIDTH_GBPS * 1e9 / (sides["dense"]["weight_mb"] * 1e6)
    print(f"float32 batch-1 bandwidth bound at {BANDWIDTH_GBPS} GB/s: {dense_bound:.1f} tok/s")
    for weights, us in sides.items():
        print(f"-- ours, {weights} weights ({us['weight_mb']:.0f} MB)")
        b1, b8 = us["b1_256_tok_s"], us["b8_256_tok_s"]
        _line(
            "batch 1 greedy, 256 slots",
            b1,
            "tok/s",
            f">= {0.9 * dense_bound:.1f} (90% f32 bound)",
            b1 >= 0.9 * dense_bound,
        )
        _line(
            "  vs reference batch 1", b1 / ref["b1_tok_s"], "x", ">= 2x", b1 >= 2 * ref["b1_tok_s"]
        )
        _line(
            "batch 1 greedy, 2048 slots",
            us["b1_2048_tok_s"],
            "tok/s",
            ">= 80% of 256 slots",
            us["b1_2048_tok_s"] >= 0.8 * b1,
        )
        _line(
            "batch 8 sampled, 256 slots",
            b8,
            "tok/s",
            f">= 1.5x ref ({1.5 * ref['b8_tok_s']:.1f})",
            b8 >= 1.5 * ref["b8_tok_s"],
        )
        _line(
            "  vs reference batch 8",
            b8 / ref["b8_tok_s"],
            "x",
            ">= 1.5x",
            b8 >= 1.5 * ref["b8_tok_s"],
        )
        _line(
            "batch 8 sampled, 2048 slots",
            us["b8_2048_tok_s"],
            "tok/s",
            ">= 80% of 256 slots",
            us["b8_2048_tok_s"] >= 0.8 * b8,
        )
        _line(
            "prefill", us["prefill_tok_s"], "tok/s", f"(reference {ref['prefill_tok_s']:.0f})", None
        )
        _line(
            "load warm (incl. conversion to format)",
            us["load_warm_s"],
            "s",
            "< 5 s",
            us["load_warm_s"] < 5.0,
        )
        for label in ("short", "long"):
            value = us[f"rewind_{label}_over_step"]
            _line(f"rewind / decode step ({label} cache)", value, "x", "<= 1 step", value <= 1.0)
        reference_peak = f"(reference {ref['peak_mb']:.0f} MB)"
        _line("peak memory, reference's workload", us["peak_mb"], "MB", reference_peak, None)
        _line("peak memory, whole run (2048-slot caches)", us["peak_all_mb"], "MB", "", None)
    print("-- loads and reference")
    _line(
        "ours  load cold (GGUF -> cache)",
        load["load_cold_s"],
        "s",
        f"(reference {ref['load_s']:.1f} s)",
        None,
    )
    _line("ours  load warm (dense)", load["load_warm_s"], "s", "< 5 s", load["load_warm_s"] < 5.0)
    _line("reference batch 1 greedy", ref["b1_tok_s"], "tok/s", "(baseline)", None)
    _line("reference batch 8 sampled", ref["b8_tok_s"], "tok/s", "(baseline)", None)


def main() -> None:
    """Parse arguments; run one side (subprocess mode) or all of them and report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer tokens, for a smoke run")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "load":
        print(json.dumps(loads()))
        return
    if args.side == "reference":
        print(json.dumps(reference(args.repeats, args.quick)))
        return
    if args.side:
        print(json.dumps(ours(args.repeats, args.quick, args.side)))
        return
    with tempfile.TemporaryDirectory() as cache:
        load = _side("load", args.repeats, args.quick, cache)
        sides = {w: _side(w, args.repeats, args.quick, cache) for w in ("dense", "int8")}
        ref = _side("reference", args.repeats, args.quick, cache)
    report(load, sides, ref)


if __name__ == "__main__":
    main()
