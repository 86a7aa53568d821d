"""GGUF benchmark (issue 17): llama.cpp and our decoder side by side on the bundled SmolLM2 Q4_1 GGUF.

Run: ``nice -n 10 python -m bench.bench_gguf [--repeats 5] [--quick]``. llama.cpp runs through
llama-cpp-python built by ``python -m bench.llama_cpp_env`` (its scratch environment's interpreter,
2 threads, :mod:`bench.llama_cpp_side`); without it that side is printed as not built.

The order is the issue's protocol: the machine's read bandwidth, llama.cpp, ours with ``dense``,
``int8`` and ``gguf`` weights (each in its own process, from an empty model cache whose native
kernels were compiled beforehand), llama.cpp again, the bandwidth again. The ``gguf`` process
measures both of its activation paths (``activations="float32"``, exact, and ``"int8"``, the
default), interleaved: every repeat of every workload runs one path, then the other, so a change
in the machine's load hits both alike. Every side decodes the
prompt of :mod:`bench.bench_decoder` greedily (batch 1, 128 new tokens; batch 8, 64 new tokens
each), prefills a long prompt (about 500 tokens) and loads the model (first load, then warm).
Throughputs are medians of ``--repeats`` runs after a warm-up (our compilation is excluded).

The bandwidth-bound fraction is tok/s x weight bytes read per token / read bandwidth: 100 % means
the step reads its weights at the speed the machine streams memory. Ratios are against the faster
of the two llama.cpp runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from bench.bench_decoder import PROMPT, decode_rate, prefill_rate, weight_megabytes
from bench.llama_cpp_env import DEFAULT_VENV, is_built, venv_python

ROOT = Path(__file__).resolve().parent.parent
LONG_PROMPT = PROMPT * 10  # about 500 tokens: the prefill workload
WEIGHTS = ("dense", "int8", "gguf")
#: The gguf side's activation paths (decoders.gguf_linear.ACTIVATIONS), measured interleaved.
GGUF_ACTIVATIONS = ("float32", "int8")
B1_NEW, B8_NEW = 128, 64
BANDWIDTH_MB = 256  # large against the caches (a few MB), small against the machine's memory
SIDE_TIMEOUT_S = 1800
# The protocol is 2 threads; 1 is tried too because llama.cpp's spinning OpenMP barriers
# collapse when the machine is busier than its cores (measured here: 3 tok/s with 2, 24 with 1).
LLAMA_THREADS = "1,2"
NOT_BUILT = "not built: run python -m bench.llama_cpp_env"
TIMES = ("load_cold_s", "load_warm_s")  # the numbers where smaller is better

# The targets.
B1_RATIO, BOUND_FRACTION, B8_RATIO, WARM_LOAD_S, PREFILL_RATIO = 0.95, 0.90, 2.0, 0.5, 1.0


@dataclasses.dataclass(frozen=True)
class Side:
    """One side's numbers, or why it has none."""

    label: str
    numbers: Mapping[str, float] | None
    reason: str = ""

    def get(self, key: str) -> float | None:
        """The number ``key``, or None when the side has no numbers."""
        return None if self.numbers is None else self.numbers[key]


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything one benchmark run measured."""

    bandwidth_gbps: tuple[float, float]  # before and after
    llama: tuple[Side, Side]  # before and after ours
    ours: tuple[Side, ...]
    gguf_mb: float  # the file's tensor bytes: what llama.cpp reads per batch-1 token
    load_average: tuple[float, float]  # 1-minute load average before and after
    llama_threads: str = LLAMA_THREADS

    @property
    def bandwidth(self) -> float:
        """The larger of the two bandwidth measurements (the machine's capability)."""
        return max(self.bandwidth_gbps)

    def llama_best(self, key: str) -> float | None:
        """The better of llama.cpp's two runs for ``key`` (smaller for times), or None."""
        values = [v for v in (side.get(key) for side in self.llama) if v is not None]
        if not values:
            return None
        return min(values) if key in TIMES else max(values)


def memory_bandwidth_gbps(repeats: int, megabytes: int = BANDWIDTH_MB) -> float:
    """Read bandwidth: GB/s of numpy summing a large float32 array, one slice per core.

    Args:
        repeats: runs (the median is returned).
        megabytes: the array's size.

    Returns:
        Gigabytes read per second.
    """
    import numpy as np

    data = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    parts = np.array_split(data, os.cpu_count() or 1)
    times = []
    for _ in range(repeats + 1):
        workers = [threading.Thread(target=part.sum) for part in parts]  # numpy drops the GIL
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        times.append(time.perf_counter() - began)
    return data.nbytes / statistics.median(times[1:]) / 1e9


def gguf_megabytes(path: Path) -> float:
    """Megabytes of tensor data in a GGUF file (a batch-1 step reads every tensor once)."""
    import gguf

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors) / 1e6


def llama_side(label: str, model: Path, repeats: int, quick: bool, threads: str) -> Side:
    """Run :mod:`bench.llama_cpp_side` with the scratch environment's interpreter."""
    if not is_built(DEFAULT_VENV):
        return Side(label, None, NOT_BUILT)
    b1, b8 = (32, 16) if quick else (B1_NEW, B8_NEW)
    command = [str(venv_python(DEFAULT_VENV)), "-m", "bench.llama_cpp_side"]
    command += ["--model", str(model), "--prompt", PROMPT, "--long-prompt", LONG_PROMPT]
    command += ["--new", str(b1), "--batch-new", str(b8), "--repeats", str(repeats)]
    command += ["--threads", threads]
    side = _subprocess_side(label, command, os.environ)
    assert side.numbers is not None  # llama_cpp_side has no "unavailable" answer
    return dataclasses.replace(side, numbers={**side.numbers, "weight_mb": gguf_megabytes(model)})


def _subprocess_sides(label: str, command: list[str], env: Mapping[str, str]) -> list[Side]:
    """The sides a ``--side`` process printed: one, or several under ``{"sides": {label: ...}}``."""
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=SIDE_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench side {label} failed:\n{done.stderr[-3000:]}")
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    named = printed.get("sides", {label: printed})
    return [
        Side(name, None, str(numbers["unavailable"]))
        if "unavailable" in numbers
        else Side(name, numbers)
        for name, numbers in named.items()
    ]


def _subprocess_side(label: str, command: list[str], env: Mapping[str, str]) -> Side:
    return _subprocess_sides(label, command, env)[0]


def ours(weights: str, repeats: int, quick: bool) -> dict[str, float | str]:
    """Our numbers with ``weights``, in this process (cold load first: run it in a fresh one)."""
    import decoders
    from decoders.quantize import WEIGHT_FORMATS

    if weights not in WEIGHT_FORMATS:
        return {"unavailable": f"load_model has no weights={weights!r} yet ({WEIGHT_FORMATS})"}
    out: dict[str, float | str] = {}
    try:
        began = time.perf_counter()
        decoders.load_model(weights=weights)
        out["load_cold_s"] = time.perf_counter() - began
    except Exception as error:  # a side that cannot load is reported, not fatal to the others
        return {"unavailable": f"load_model(weights={weights!r}) failed: {error}"}
    loads = []
    for _ in range(repeats):
        began = time.perf_counter()
        model, tok = decoders.load_model(weights=weights)
        loads.append(time.perf_counter() - began)
    out["load_warm_s"] = statistics.median(loads)
    model = dataclasses.replace(
        model, config=dataclasses.replace(model.config, eos_token_ids=())
    )  # always run to the limit
    out["weight_mb"] = weight_megabytes(model)
    b1, b8 = (32, 16) if quick else (B1_NEW, B8_NEW)
    for key, batch, new in (("b1_tok_s", 1, b1), ("b8_tok_s", 8, b8)):
        out[key] = decode_rate(
            model, tok, batch=batch, new=new, slots=256, temperature=0.0, repeats=repeats
        )
    out["prefill_tok_s"] = prefill_rate(model, tok, prompt=LONG_PROMPT, slots=1024, repeats=repeats)
    out["prompt_tokens"], out["long_prompt_tokens"] = (
        len(tok.encode(PROMPT)),
        len(tok.encode(LONG_PROMPT)),
    )
    return out


def ours_gguf(repeats: int, quick: bool) -> dict[str, dict[str, float | str]]:
    """``weights="gguf"`` with each of :data:`GGUF_ACTIVATIONS`, interleaved repeat by repeat.

    Returns:
        ``{"gguf <activations>": numbers}``, each like :func:`ours`'s.
    """
    import decoders

    labels = {act: f"gguf {act} act." for act in GGUF_ACTIVATIONS}
    out: dict[str, dict[str, float | str]] = {labels[act]: {} for act in GGUF_ACTIVATIONS}
    try:
        began = time.perf_counter()
        decoders.load_model(weights="gguf")
        cold = time.perf_counter() - began
    except Exception as error:  # reported, not fatal to the other sides
        return {
            label: {"unavailable": f"load_model(weights='gguf') failed: {error}"} for label in out
        }
    loads: dict[str, list[float]] = {act: [] for act in GGUF_ACTIVATIONS}
    models = {}
    for _ in range(repeats):
        for act in GGUF_ACTIVATIONS:
            began = time.perf_counter()
            models[act], tok = decoders.load_model(weights="gguf", activations=act)
            loads[act].append(time.perf_counter() - began)
    for act in GGUF_ACTIVATIONS:
        model = models[act]
        models[act] = dataclasses.replace(
            model, config=dataclasses.replace(model.config, eos_token_ids=())
        )  # always run to the limit
        out[labels[act]].update(
            load_cold_s=cold,
            load_warm_s=statistics.median(loads[act]),
            weight_mb=weight_megabytes(model),
            prompt_tokens=len(tok.encode(PROMPT)),
            long_prompt_tokens=len(tok.encode(LONG_PROMPT)),
        )
    b1, b8 = (32, 16) if quick else (B1_NEW, B8_NEW)
    workloads = {
        "b1_tok_s": lambda m: decode_rate(
            m, tok, batch=1, new=b1, slots=256, temperature=0.0, repeats=1
        ),
        "b8_tok_s": lambda m: decode_rate(
            m, tok, batch=8, new=b8, slots=256, temperature=0.0, repeats=1
        ),
        "prefill_tok_s": lambda m: prefill_rate(m, tok, prompt=LONG_PROMPT, slots=1024, repeats=1),
    }
    for key, measure in workloads.items():
        rates: dict[str, list[float]] = {act: [] for act in GGUF_ACTIVATIONS}
        for _ in range(repeats):  # each call warms up once, then times one run
            for act in GGUF_ACTIVATIONS:
                rates[act].append(measure(models[act]))
        for act in GGUF_ACTIVATIONS:
            out[labels[act]][key] = statistics.median(rates[act])
    return out


def warm_kernels() -> None:
    """Compile the native kernels into this process's cache folder (excluded from the loads)."""
    import decoders
    from decoders.quantize import WEIGHT_FORMATS

    for weights in WEIGHT_FORMATS:
        if weights != "dense":
            decoders.load_model(weights=weights, use_cache=False)


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _fraction(run: Run, side: Side) -> float | None:
    """Batch-1 bandwidth-bound fraction: tok/s x MB per token / (MB/s the machine reads)."""
    b1, megabytes = side.get("b1_tok_s"), side.get("weight_mb")
    return None if b1 is None or megabytes is None else b1 * megabytes / (run.bandwidth * 1e3)


ROWS = (  # (label, key, digits): the measured rows, each side's own number
    (f"batch 1 greedy, {B1_NEW} new tokens (tok/s)", "b1_tok_s", 1),
    (f"batch 8 greedy, {B8_NEW} new tokens each (tok/s)", "b8_tok_s", 1),
    ("prefill, long prompt (tok/s)", "prefill_tok_s", 0),
    ("load, first in the process (s)", "load_cold_s", 2),
    ("load, warm (s)", "load_warm_s", 2),
)


def table(run: Run) -> str:
    """The side-by-side markdown table: llama.cpp (before / after) and each of ours with its ratio.

    Args:
        run: the measurements.

    Returns:
        Markdown lines.
    """
    heads = ["llama.cpp Q4_1 (before / after)", *(f"ours {s.label}" for s in run.ours)]
    lines = ["| measurement | " + " | ".join(heads) + " |", "|---|" + "--:|" * len(heads)]

    def llama_cell(values: list[str]) -> str:
        if all(side.numbers is None for side in run.llama):
            return run.llama[0].reason
        return " / ".join(values)

    def our_cell(value: float | None, digits: int, base: float | None) -> str:
        if value is None or base is None:
            return _fmt(value, digits)
        return f"{_fmt(value, digits)} ({value / base:.2f}x)"

    for label, key, digits in ROWS:
        cells = [llama_cell([_fmt(s.get(key), digits) for s in run.llama])]
        cells += [our_cell(s.get(key), digits, run.llama_best(key)) for s in run.ours]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [f"{run.gguf_mb:.0f}", *(_fmt(s.get("weight_mb"), 0) for s in run.ours)]
    lines.append("| weights read per token, batch 1 (MB) | " + " | ".join(cells) + " |")
    cells = [llama_cell([_percent(_fraction(run, s)) for s in run.llama])]
    cells += [_percent(_fraction(run, s)) for s in run.ours]
    lines.append("| bandwidth-bound fraction, batch 1 | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(value: float | None, goal: float, at_most: bool, unit: str, why: str) -> str:
    if value is None:
        return f"n/a ({why})"
    met = value <= goal if at_most else value >= goal
    shown = _percent(value) if unit == "%" else f"{value:.2f}{unit}"
    return f"{'met' if met else 'missed'} ({shown})"


def targets(run: Run) -> str:
    """The issue's targets, met or missed for each of ours.

    Args:
        run: the measurements.

    Returns:
        Markdown lines.
    """
    lines = ["| target | " + " | ".join(f"ours {s.label}" for s in run.ours) + " |"]
    lines.append("|---|" + "---|" * len(run.ours))

    def ratio(side: Side, key: str) -> float | None:
        value, base = side.get(key), run.llama_best(key)
        return None if value is None or base is None else value / base

    no_llama = next((side.reason for side in run.llama if side.reason), "no llama.cpp numbers")
    checks = (
        (f"batch 1 >= {B1_RATIO}x llama.cpp", lambda s: ratio(s, "b1_tok_s"), B1_RATIO, False, "x"),
        (
            f"batch 1 >= {BOUND_FRACTION:.0%} of the bandwidth bound",
            lambda s: _fraction(run, s),
            BOUND_FRACTION,
            False,
            "%",
        ),
        (f"batch 8 >= {B8_RATIO}x llama.cpp", lambda s: ratio(s, "b8_tok_s"), B8_RATIO, False, "x"),
        (f"warm load <= {WARM_LOAD_S} s", lambda s: s.get("load_warm_s"), WARM_LOAD_S, True, " s"),
        ("prefill >= llama.cpp", lambda s: ratio(s, "prefill_tok_s"), PREFILL_RATIO, False, "x"),
    )
    for label, measure, goal, at_most, unit in checks:
        cells = [
            _verdict(measure(s), goal, at_most, unit, s.reason if s.numbers is None else no_llama)
            for s in run.ours
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(run: Run) -> str:
    """The whole printed report: conditions, both tables, and why any side is missing.

    Args:
        run: the measurements.

    Returns:
        Markdown text.
    """
    cores = os.cpu_count() or 1
    before, after = run.load_average
    busy = max(run.load_average) > cores
    lines = [
        f"read bandwidth {run.bandwidth_gbps[0]:.1f} / {run.bandwidth_gbps[1]:.1f} GB/s (before / "
        f"after; the bound uses {run.bandwidth:.1f}); load average {before:.1f} / {after:.1f} on "
        f"{cores} cores"
        + (" — the machine was busy: numbers are noisy" if busy else "")
        + f"; llama.cpp threads tried: {run.llama_threads} (the fastest per workload)",
        "",
        table(run),
        "",
        targets(run),
    ]
    chosen = [
        "/".join(_fmt(side.get(key), 0) for side in run.llama if side.numbers is not None)
        for key in ("b1_threads", "b8_threads", "prefill_threads")
    ]
    if any(side.numbers is not None for side in run.llama):
        lines.append(
            f"\nllama.cpp threads chosen (before/after): batch 1 {chosen[0]}, batch 8 {chosen[1]}, "
            f"prefill {chosen[2]}"
        )
    lines += [f"\n{s.label}: {s.reason}" for s in (*run.llama, *run.ours) if s.numbers is None]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments; run one of our sides (subprocess mode) or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer tokens, for a smoke run")
    parser.add_argument(
        "--llama-threads",
        default=LLAMA_THREADS,
        help="llama.cpp thread counts to try; the fastest per workload is measured",
    )
    parser.add_argument("--side", choices=(*WEIGHTS, "kernels"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "kernels":
        warm_kernels()
        print(json.dumps({}))
        return
    if args.side == "gguf":
        print(json.dumps({"sides": ours_gguf(args.repeats, args.quick)}))
        return
    if args.side:
        print(json.dumps(ours(args.side, args.repeats, args.quick)))
        return
    from decoders.paths import bundled_model_path

    model = bundled_model_path()
    load_before, bandwidth_before = os.getloadavg()[0], memory_bandwidth_gbps(args.repeats)
    llama_before = llama_side("llama.cpp", model, args.repeats, args.quick, args.llama_threads)
    sides = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SHIELD_CACHE_DIR": cache}
        command = [sys.executable, "-m", "bench.bench_gguf", "--repeats", str(args.repeats)]
        command += ["--quick"] if args.quick else []
        _subprocess_side("kernels", [*command, "--side", "kernels"], env)
        for weights in WEIGHTS:
            sides += _subprocess_sides(weights, [*command, "--side", weights], env)
    llama_after = llama_side("llama.cpp", model, args.repeats, args.quick, args.llama_threads)
    run = Run(
        bandwidth_gbps=(bandwidth_before, memory_bandwidth_gbps(args.repeats)),
        llama=(llama_before, llama_after),
        ours=tuple(sides),
        gguf_mb=gguf_megabytes(model),
        load_average=(load_before, os.getloadavg()[0]),
        llama_threads=args.llama_threads,
    )
    print(report(run))


if __name__ == "__main__":
    main()
