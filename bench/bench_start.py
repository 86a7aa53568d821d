"""Start-up benchmark: ``shield generate`` end to end, without caches, cold and warm.

Run: ``python -m bench.bench_start [--runs N] [--spec toxicity] [--max-new-tokens 48]``; with
``--against REV`` it only times warm runs of git revision REV's tree and of HEAD's (each written out
with ``git archive``), interleaved so that both see the same load of a shared machine.

Every number is the wall time of a whole ``shield generate`` subprocess (interpreter start, imports,
spec, model, compilation, decoding, output), the median of ``--runs`` runs:

* ``no cache``: ``--no-cache``, what every run cost before the compile caches (the baseline);
* ``cold``: an empty cache folder each run (the converted model is linked in: converting the GGUF
  once is the model cache's job, measured by ``bench_decoder``);
* ``warm``: the same folder again, after a cold run filled it (the target: under 2 s).

Then one warm run in-process, timed stage by stage, says where the remaining time goes, with JAX's
own tracing/lowering/compilation/cache events, and a bare interpreter's start (``python -c pass``)
says what no change of ours can remove. llama.cpp's time for the same job (a fresh process loads
the GGUF and writes a greedy chat answer, no shield) is printed when ``bench.llama_cpp_env`` has
built llama-cpp-python (``python -m bench.llama_cpp_env``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "Write one friendly sentence about autumn."
TARGET_WARM_SECONDS = 2.0
ROOT = Path(__file__).resolve().parent.parent

# One warm generation in a fresh process, timed stage by stage (the same calls `shield generate`
# makes, in its order), with JAX's compile-time events summed by name.
STAGES = """\
import json, sys, time
t, c = time.perf_counter(), time.process_time()
stages, cpu = {}, {}
def lap(name):
    global t, c
    now, used = time.perf_counter(), time.process_time()
    stages[name], cpu[name] = now - t, used - c
    t, c = now, used
import jax
from collections import defaultdict
events = defaultdict(float)
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: events.__setitem__(event, events[event] + seconds))
import specs, decoders, shield.classifiers
from shield.store import caching
lap("imports (jax, decoders, specs)")
spec_name, max_new, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with caching(True):
    decoders.enable_compilation_cache()
    compiled = specs.shield_for(specs.load(specs.resolve_spec_path(spec_name)))
    lap("spec load + compiled-shield cache")
    model, tokenizer = decoders.load_model()
    lap("model load (converted-model cache)")
    judge = decoders.judge_for(compiled, tokenizer)
    lap("lift onto the vocabulary (vocabulary cache)")
    if compiled.classifiers:
        shield.classifiers.score(compiled.classifiers[0].scorer, ["warm up"])
    lap("classifier load (profanity-check arrays)")
    before = dict(events)
    result = decoders.generate(model, tokenizer, [prompt], spec=judge, max_new_tokens=max_new,
                               temperature=0.0, chat=True)[0]
    lap("generate: device tables, exported programs, executable loads, decoding")
jax_events = {k: v - before.get(k, 0.0) for k, v in events.items() if v - before.get(k, 0.0) > 0.01}
print(json.dumps({"stages": stages, "cpu": cpu, "jax": jax_events,
                  "tokens": result.to_json()["stats"]["generated_tokens"]}))
"""


def _environment(cache: Path | None) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env.pop("SHIELD_NO_CACHE", None)
    if cache is not None:
        env["SHIELD_CACHE_DIR"] = str(cache)
    return env


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _generate(
    spec: str, max_new: int, cache: Path | None, *extra: str, root: Path = ROOT
) -> tuple[float, float]:
    """Wall and CPU seconds of one ``shield generate`` subprocess (CPU time suffers less than wall
    time when other processes share the machine)."""
    command = [sys.executable, "-m", "shield.cli", "generate", "--spec", spec, "--chat"]
    command += ["--temperature", "0", "--max-new-tokens", str(max_new), "--prompt", PROMPT, *extra]
    start, cpu = time.perf_counter(), _cpu_of_children()
    done = subprocess.run(
        command, cwd=root, env=_environment(cache), capture_output=True, text=True, check=False
    )
    seconds, cpu = time.perf_counter() - start, _cpu_of_children() - cpu
    if done.returncode != 0:
        raise SystemExit(f"shield generate failed:\n{done.stderr[-3000:]}")
    return seconds, cpu


def _files(cache: Path) -> set[str]:
    """The entries of the compile caches in a cache folder (compiled shields, vocabularies,
    ahead-of-time exports, JAX executables)."""
    found = {p.as_posix() for p in cache.glob("*/*.npz") if p.parent.name != "models"}
    return found | {p.name for p in cache.glob("jax/*-cache")}


def _fresh_cache(parent: Path, models: Path) -> Path:
    """An empty cache folder that shares the already converted model."""
    folder = Path(tempfile.mkdtemp(dir=parent))
    (folder / "models").symlink_to(models, target_is_directory=True)
    return folder


def _stages(spec: str, max_new: int, cache: Path) -> dict:
    command = [sys.executable, "-c", STAGES, spec, str(max_new), PROMPT]
    done = subprocess.run(
        command, cwd=ROOT, env=_environment(cache), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"stage timing failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bare_interpreter(runs: int) -> float:
    """Median wall seconds of ``python -c pass``: the part of every start that is not ours."""
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, check=True)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def _llama_cpp(runs: int, max_new: int) -> str:
    """llama.cpp's time for the same job, or why there is none."""
    try:
        from bench.llama_cpp_env import startup_seconds
    except ImportError:
        return "llama.cpp: bench.llama_cpp_env is missing; no comparison."
    times = startup_seconds(runs=runs, max_new_tokens=max_new, prompt=PROMPT)
    if times is None:
        return (
            "llama.cpp: llama-cpp-python is not built (python -m bench.llama_cpp_env builds it);"
            " no comparison."
        )
    runs_text = ", ".join(f"{v:.2f}" for v in times.warm_s)
    return (
        f"llama.cpp (same GGUF, same prompt, greedy chat answer, no shield; {times.tokens} tokens):"
        f" warm median {times.warm_median_s:.2f} s ({runs_text}), first {times.first_s:.2f} s"
    )


def _tree(revision: str, folder: Path) -> Path:
    """The files of git ``revision`` of this repository, written into ``folder``."""
    folder.mkdir()
    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _against(revision: str, runs: int, spec: str, max_new: int, models: Path) -> None:
    """Warm runs of ``revision``'s tree and of ``HEAD``'s, interleaved (same load), each tree from
    ``git archive`` (edits made meanwhile cannot invalidate its caches) with its own warm cache
    folder; prints their medians."""
    with tempfile.TemporaryDirectory() as scratch:
        parent = Path(scratch)
        trees = {
            name: _tree(name, parent / f"tree{i}") for i, name in enumerate((revision, "HEAD"))
        }
        caches = {name: _fresh_cache(parent, models) for name in trees}
        for name, root in trees.items():
            _generate(spec, max_new, caches[name], root=root)  # cold: fills its caches
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(runs):
            for name, root in trees.items():
                times[name].append(_generate(spec, max_new, caches[name], root=root))
    print(f"\nwarm runs of {revision} and HEAD, interleaved (median of {runs}):")
    print("\n| tree | median wall (s) | median CPU (s) | wall of each run (s) |\n|---|---|---|---|")
    for name, values in times.items():
        wall, cpu = statistics.median(w for w, _ in values), statistics.median(c for _, c in values)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {', '.join(f'{w:.2f}' for w, _ in values)} |")


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per setting (median)")
    parser.add_argument("--spec", default="toxicity")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument(
        "--against", metavar="REV", help="only: warm runs of git REV's tree beside HEAD's"
    )
    args = parser.parse_args()
    from shield.store import cache_root

    models = cache_root() / "models"
    models.mkdir(parents=True, exist_ok=True)
    spec, max_new = args.spec, args.max_new_tokens
    print(f"shield generate --spec {spec} --chat --temperature 0 --max-new-tokens {max_new}")
    if args.against:  # its cold runs convert the model if it never was
        _against(args.against, args.runs, spec, max_new, models)
        return
    _generate(spec, max_new, None, "--no-cache")  # converts the model once if it never was
    results: dict[str, list[tuple[float, float]]] = {"no cache": [], "cold": [], "warm": []}
    missed = 0
    with tempfile.TemporaryDirectory() as scratch:
        parent = Path(scratch)
        for _ in range(args.runs):
            results["no cache"].append(_generate(spec, max_new, None, "--no-cache"))
        warm_cache = None
        for _ in range(args.runs):
            warm_cache = _fresh_cache(parent, models)
            results["cold"].append(_generate(spec, max_new, warm_cache))
        assert warm_cache is not None
        for _ in range(args.runs):
            before = _files(warm_cache)
            results["warm"].append(_generate(spec, max_new, warm_cache))
            missed += _files(warm_cache) != before  # a source edited meanwhile: it compiled
        stages = _stages(spec, max_new, warm_cache)
    bare = _bare_interpreter(args.runs)
    base = statistics.median(wall for wall, _ in results["no cache"])
    print("\n| setting | median wall (s) | median CPU (s) | wall of each run (s) | vs no cache |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        median = statistics.median(wall for wall, _ in values)
        cpu = statistics.median(c for _, c in values)
        runs = ", ".join(f"{wall:.1f}" for wall, _ in values)
        print(f"| {name} | {median:.2f} | {cpu:.2f} | {runs} | {base / median:.2f}x |")
    if missed:
        print(f"\n{missed} warm run(s) compiled something (a source changed during the run?)")
    warm = statistics.median(wall for wall, _ in results["warm"])
    verdict = "PASS" if warm < TARGET_WARM_SECONDS else "MISS"
    print(f"\nwarm target < {TARGET_WARM_SECONDS:.0f} s: {verdict} ({warm:.2f} s)")
    print(f"\nwhere a warm run's time goes ({stages['tokens']} tokens generated; one run):")
    print("\n| stage | wall (s) | CPU (s) |\n|---|---|---|")
    print(f"| interpreter start (python -c pass, median) | {bare:.2f} | |")
    for name, seconds in stages["stages"].items():
        print(f"| {name} | {seconds:.2f} | {stages['cpu'][name]:.2f} |")
    total, total_cpu = bare + sum(stages["stages"].values()), sum(stages["cpu"].values())
    print(f"| sum | {total:.2f} | {total_cpu:.2f} |")
    print("\nJAX events during generate (seconds, summed):")
    for name, seconds in sorted(stages["jax"].items(), key=lambda item: -item[1]):
        print(f"  {name}: {seconds:.2f}")
    print("\n" + _llama_cpp(args.runs, max_new))


if __name__ == "__main__":
    main()
