"""Start-up benchmark: ``shield generate`` end to end, without caches, cold and warm.

Run: ``python -m bench.bench_start [--runs N] [--spec toxicity] [--max-new-tokens 48]``.

Every number is the wall time of a whole ``shield generate`` subprocess (interpreter start, imports,
spec, model, compilation, decoding, output), the median of ``--runs`` runs:

* ``no cache``: ``--no-cache``, what every run cost before the compile caches (the baseline);
* ``cold``: an empty cache folder each run (the converted model is linked in: converting the GGUF
  once is the model cache's job, measured by ``bench_decoder``);
* ``warm``: the same folder again, after a cold run filled it (the target: under 2 s).

Then one warm run in-process, timed stage by stage, says where the remaining time goes, with JAX's
own tracing/lowering/compilation/cache events. llama.cpp's time for the same job is printed only
when ``llama_cpp`` (llama-cpp-python) is importable; it is not built here.
"""

from __future__ import annotations

import argparse
import importlib.util
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
t = time.perf_counter()
stages = {}
def lap(name):
    global t
    now = time.perf_counter(); stages[name] = now - t; t = now
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
    lap("lift onto the vocabulary (TokenShield)")
    if compiled.classifiers:
        shield.classifiers.score(compiled.classifiers[0].scorer, ["warm up"])
    lap("classifier load")
    before = dict(events)
    result = decoders.generate(model, tokenizer, [prompt], spec=judge, max_new_tokens=max_new,
                               temperature=0.0, chat=True)[0]
    lap("generate: device tables, JAX trace + cache loads, decoding")
jax_events = {k: v - before.get(k, 0.0) for k, v in events.items() if v - before.get(k, 0.0) > 0.01}
print(json.dumps({"stages": stages, "jax": jax_events,
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


def _generate(spec: str, max_new: int, cache: Path | None, *extra: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``shield generate`` subprocess (CPU time suffers less than wall
    time when other processes share the machine)."""
    command = [sys.executable, "-m", "shield.cli", "generate", "--spec", spec, "--chat"]
    command += ["--temperature", "0", "--max-new-tokens", str(max_new), "--prompt", PROMPT, *extra]
    start, cpu = time.perf_counter(), _cpu_of_children()
    done = subprocess.run(
        command, cwd=ROOT, env=_environment(cache), capture_output=True, text=True, check=False
    )
    seconds, cpu = time.perf_counter() - start, _cpu_of_children() - cpu
    if done.returncode != 0:
        raise SystemExit(f"shield generate failed:\n{done.stderr[-3000:]}")
    return seconds, cpu


def _files(cache: Path) -> set[str]:
    """The compiled-shield and JAX entries in a cache folder."""
    return {p.name for p in cache.glob("compiled/*.npz")} | {
        p.name for p in cache.glob("jax/*-cache")
    }


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


# llama.cpp on the same job: load the bundled GGUF, one greedy chat answer (unshielded).
LLAMA_CPP = """\
import sys
from llama_cpp import Llama
from decoders.paths import bundled_model_path
llm = Llama(model_path=str(bundled_model_path()), verbose=False)
llm.create_chat_completion(messages=[{"role": "user", "content": sys.argv[2]}],
                           max_tokens=int(sys.argv[1]), temperature=0.0)
"""


def _llama_cpp(max_new: int) -> float:
    """Wall seconds of one llama.cpp subprocess doing the same generation (no shield)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LLAMA_CPP, str(max_new), PROMPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"llama.cpp failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per setting (median)")
    parser.add_argument("--spec", default="toxicity")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    from shield.store import cache_root

    models = cache_root() / "models"
    models.mkdir(parents=True, exist_ok=True)
    spec, max_new = args.spec, args.max_new_tokens
    print(f"shield generate --spec {spec} --chat --temperature 0 --max-new-tokens {max_new}")
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
    print("\n| stage | seconds |\n|---|---|")
    for name, seconds in stages["stages"].items():
        print(f"| {name} | {seconds:.2f} |")
    print("\nJAX events during generate (seconds, summed):")
    for name, seconds in sorted(stages["jax"].items(), key=lambda item: -item[1]):
        print(f"  {name}: {seconds:.2f}")
    if importlib.util.find_spec("llama_cpp") is None:
        print("\nllama.cpp: llama-cpp-python is not installed (not built here); no comparison.")
    else:
        times = [_llama_cpp(max_new) for _ in range(args.runs)]
        runs = ", ".join(f"{v:.1f}" for v in times)
        print(
            f"\nllama.cpp (same GGUF, same job): median {statistics.median(times):.2f} s ({runs})"
        )


if __name__ == "__main__":
    main()
