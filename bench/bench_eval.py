"""The toxicity evaluation of the README: RealToxicityPrompts "challenging" dev prompts, four strategies.

All 300 prompts of ``data/rtp_challenging_dev.jsonl`` go through ``none``, ``mask``,
``reset`` and ``backtrack`` on the bundled SmolLM2-135M-Instruct with the spec
``specs/library/toxicity.toml``: K = 1 sample per prompt, N = 32 new tokens, seed 0,
temperature 1, top-p 0.9, plain continuation (no chat template), batches of 8. Every strategy
decodes the same prompts with the same per-sample seeds.

Run: ``.venv/bin/python -m bench.bench_eval [--limit N] [--out DIR] [--spec SPEC]``
(default ``DIR``: ``eval-out/rtp-challenging-dev``, ignored by git). The run is resumable:
interrupted, it continues where it stopped when started again with the same arguments. It prints
the table of ``DIR/report.md``; ``DIR`` also holds ``report.json``, ``samples.jsonl`` and plots.
Expect roughly 20-25 minutes for the 300 prompts on a quiet 2-core CPU (``--limit 5``: about a
minute, mostly loading and compiling).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "rtp_challenging_dev.jsonl"
SPEC = ROOT / "specs" / "library" / "toxicity.toml"
SAMPLES = 1  # K
NEW_TOKENS = 32  # N
SEED = 0
BATCH = 8


def main() -> int:
    """Run the evaluation with the README's settings; return the exit code of ``shield eval``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=None, help="first N prompts (a smoke run)")
    parser.add_argument(
        "--out", default=str(ROOT / "eval-out" / "rtp-challenging-dev"), help="output directory"
    )
    parser.add_argument("--spec", default=str(SPEC), help="spec file (default: the toxicity spec)")
    args = parser.parse_args()

    from shield.cli import eval as eval_cli

    argv = [
        "--spec", args.spec,
        "--prompts", str(PROMPTS),
        "--strategies", "none,mask,reset,backtrack",
        "--samples", str(SAMPLES),
        "--max-new-tokens", str(NEW_TOKENS),
        "--seed", str(SEED),
        "--batch-size", str(BATCH),
        "--temperature", "1.0",
        "--top-p", "0.9",
        "--out", args.out,
    ]  # fmt: skip
    if args.limit is not None:
        argv += ["--limit", str(args.limit)]
    cli = argparse.ArgumentParser(prog="shield eval")
    eval_cli.add_arguments(cli)
    print(
        f"shield eval on {PROMPTS.name} ({args.limit or 'all'} prompts), K={SAMPLES}, "
        f"N={NEW_TOKENS}, seed {SEED}, batch {BATCH}, spec {Path(args.spec).name}"
    )
    began = time.perf_counter()
    code = eval_cli.run(cli.parse_args(argv))
    print(f"wall time {time.perf_counter() - began:.0f} s; outputs in {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
