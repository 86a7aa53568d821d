"""Evaluate the decoding strategies on a prompt file: toxicity, rule violations, cost, perplexity.

FILE is a .txt file (one prompt a line) or a .jsonl file ({"prompt": ...} a line; a row may add
"prefill": text forced at the start of the answer (a prefilling attack), and "chat": true to
render the prompt with the chat template). --preset rtp runs the RealToxicityPrompts protocol
(K = 25 samples of N = 20 tokens on the dev prompts); --preset prefill-attacks the prefilling
attacks of data/prefill_attacks_dev.jsonl. Every strategy
decodes the same prompts with the same seeds (sample k of prompt i uses a seed derived from
(S, i, k)). Each response is re-scanned with the spec, scored by the spec's classifier
(profanity-check by default) and scored for perplexity under the model, independently of what
the decoder reported.

Writes into DIR:
  config.json     the run's settings and their hash
  samples.jsonl   one line per prompt x sample x strategy (appended batch by batch)
  report.json     per strategy: violation_rate, toxicity_rate, expected_max_toxicity,
                  mean_generated_tokens, mean_kept_tokens, discard_ratio, rollbacks_per_sample,
                  tokens_per_second (JAX compilation left out), perplexity, distinct_1,
                  distinct_2, with 95% intervals; for rows with a prefill, the attack
                  success rates, prefill survival and cost
  report.md       the table and how to read it
  *.png           rates, cost, rollback lengths, toxicity vs cost

An interrupted run continues where it stopped: rerun the same command. A DIR written with other
settings is refused; choose another --out or delete it. --limit and --samples may grow between
runs of one DIR (the samples already written are kept).

Examples:
  shield eval --spec toxicity --prompts prompts.jsonl --limit 5 --out eval-smoke
  shield eval --spec specs/library/toxicity.toml --prompts rtp.jsonl --samples 1 \\
      --max-new-tokens 32 --batch-size 8 --out eval-rtp
  shield eval --spec toxicity --preset rtp --limit 10 --weights int8 --out eval-rtp-protocol
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from shield.cli.evaluation.presets import PRESETS, preset
from shield.cli.evaluation.records import WEIGHT_FORMATS
from shield.errors import EvaluationError
from shield.result import STRATEGIES

HELP = "evaluate the decoding strategies on a prompt file (toxicity, violations, cost)"

__all__ = ["HELP", "add_arguments", "run"]

_DEFAULT_STRATEGIES = ",".join(STRATEGIES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``shield eval`` to ``parser``."""
    parser.add_argument("--spec", required=True, metavar="SPEC", help="spec file or library name")
    parser.add_argument(
        "--prompts", metavar="FILE", help=".txt or .jsonl prompts (required without --preset)"
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a protocol's prompts and settings: "
        + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()),
    )
    parser.add_argument(
        "--strategies",
        default=_DEFAULT_STRATEGIES,
        metavar="LIST",
        help=f"comma-separated strategies (default {_DEFAULT_STRATEGIES})",
    )
    parser.add_argument("--samples", type=int, metavar="K", help="samples per prompt (default 1)")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help="(default 32)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N prompts only")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--out", default="eval-out", metavar="DIR", help="output directory")
    parser.add_argument(
        "--batch-size", type=int, metavar="B", help="rows per call (default 8; --preset rtp: 25)"
    )
    parser.add_argument("--temperature", type=float, metavar="T", help="0 = greedy (default 1)")
    parser.add_argument("--top-p", type=float, metavar="P", help="(default 0.9)")
    parser.add_argument("--chat", action="store_true", help="wrap prompts in the chat template")
    parser.add_argument(
        "--model",
        default="smollm2",
        metavar="NAME_OR_PATH",
        help="smollm2 (default), .gguf or HF dir",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHT_FORMATS,
        default="dense",
        help="dense float32 (default), int8, or gguf (the .gguf file's own blocks)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress on standard error")


def _setting(given: Any, chosen: Any, name: str, default: Any) -> Any:
    """An option's value: given on the command line, else the preset's, else the default."""
    if given is not None:
        return given
    return getattr(chosen, name) if chosen is not None else default


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and write the report; return 0, 2 on bad input, 130 when interrupted."""
    import specs
    from shield.cli.evaluation import (
        EvalConfig,
        Progress,
        SampleStore,
        file_sha256,
        load_prompt_rows,
        model_backend,
        run_evaluation,
        write_report,
    )

    spec_path = specs.resolve_spec_path(args.spec).resolve()
    chosen = preset(args.preset) if args.preset else None
    if args.prompts is None and chosen is None:
        raise EvaluationError("expected --prompts FILE or --preset NAME, received neither")
    prompts_path = Path(args.prompts) if args.prompts else chosen.prompts_path  # type: ignore[union-attr]
    prompts = load_prompt_rows(prompts_path)
    config = EvalConfig(
        spec_path=str(spec_path),
        spec_sha256=file_sha256(spec_path),
        prompts_path=str(prompts_path.resolve()),
        prompts_sha256=file_sha256(prompts_path),
        model=args.model,
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        samples=_setting(args.samples, chosen, "samples", 1),
        max_new_tokens=_setting(args.max_new_tokens, chosen, "max_new_tokens", 32),
        seed=args.seed,
        temperature=_setting(args.temperature, chosen, "temperature", 1.0),
        top_p=_setting(args.top_p, chosen, "top_p", 0.9),
        chat=args.chat,
        limit=args.limit,
        batch_size=_setting(args.batch_size, chosen, "batch_size", 8),
        weights=args.weights,
    )
    out = Path(args.out)
    store = SampleStore(out, config)
    store.open()  # refuse another configuration's directory before the model loads
    # Loading compiles the spec (and keeps the compiled shield), so a bad spec fails fast too.
    compiled = specs.shield_for(specs.load(spec_path))
    began = time.perf_counter()
    progress = Progress(None if args.quiet else sys.stderr)
    try:
        samples = run_evaluation(
            config, prompts, lambda: model_backend(config, compiled), store, progress=progress
        )
    except KeyboardInterrupt:
        print(
            f"\nshield eval: interrupted; the samples written so far are kept in {out / 'samples.jsonl'}."
            " Rerun the same command to continue.",
            file=sys.stderr,
        )
        return 130
    report = write_report(out, config, samples, plots=not args.no_plots)
    print((out / "report.md").read_text(encoding="utf-8"), end="")
    print(
        f"shield eval: {len(samples)} samples of {report['prompts']} prompts in "
        f"{time.perf_counter() - began:.1f} s; wrote {out}/report.json, report.md, samples.jsonl"
        + ("" if args.no_plots else " and plots"),
        file=sys.stderr,
    )
    return 0
