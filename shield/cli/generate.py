"""Generate a response with a model, guarded by a spec.

SPEC is a spec file or the name of a library spec (toxicity, pii, secrets). The default model is
the bundled SmolLM2-135M-Instruct. --temperature 0 decodes greedily; the default samples with
temperature 1 and top-p 0.9. --prefill forces the start of the response (it is part of the
response) and is judged like generated text. Strategies: "backtrack" (default) rewinds to the
latest accepted state and regenerates only the offending segment; "reset" restarts the whole
response; "mask" removes tokens that would complete a forbidden pattern (classifier rules are only
reported); "none" decodes plainly and only reports violations. --stream prints text as soon as it
can no longer be rolled back.

Compiled shields and JAX's compilations are cached under $SHIELD_CACHE_DIR (default
~/.cache/shield), so a second run starts faster; --no-cache (or SHIELD_NO_CACHE=1) neither reads
nor writes those caches.

Examples:
  shield generate --spec toxicity --chat --temperature 0 --prompt "Say hi" --prefill "You stupid"
  shield generate --spec pii --prompt "My card is" --max-new-tokens 32 --json

With --json the output is one object:
  {"text", "finish_reason": "eos|length|budget|refused", "tokens",
   "stats": {"generated_tokens", "kept_tokens", "discarded_tokens", "rollbacks",
             "max_rollback_tokens", "wall_seconds"}, "events": [...]}
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shield.result import STRATEGIES
from shield.store import caching

HELP = "generate a response with a model, guarded by a spec"

__all__ = ["HELP", "WEIGHT_FORMATS", "add_arguments", "run"]
#: decoders.quantize.WEIGHT_FORMATS, repeated here so the CLI parses without importing JAX.
WEIGHT_FORMATS: tuple[str, ...] = ("dense", "int8", "gguf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``shield generate`` to ``parser``."""
    parser.add_argument("--spec", required=True, metavar="SPEC", help="spec file or library name")
    parser.add_argument("--prompt", required=True, metavar="TEXT", help="the prompt")
    parser.add_argument(
        "--model", metavar="NAME_OR_PATH", default=None, help="smollm2 (default), .gguf or HF dir"
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHT_FORMATS,
        default="dense",
        help="dense (float32), int8, or gguf (the .gguf file's own blocks; fastest on CPUs)",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, default="backtrack")
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T", help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.9, metavar="P")
    parser.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    parser.add_argument("--prefill", metavar="TEXT", default=None, help="forced response start")
    parser.add_argument("--stream", action="store_true", help="print text as it is released")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="do not read or write the compiled-shield and JAX compilation caches",
    )


def _describe(event: dict[str, Any]) -> str:
    kind, rule = event["kind"], event["rule"]
    if kind == "rollback":
        return f"rolled back for rule {rule}: tokens {event['to_token']}..{event['from_token']} regenerated"
    if kind == "violation":
        return f"rule {rule} violated by tokens {event['to_token']}..{event['from_token']} (not repaired)"
    return f"rule {rule}: {event.get('detail', kind)}"


def run(args: argparse.Namespace) -> int:
    """Generate; print the response (or JSON); return 0, or 2 on bad input."""
    if args.max_new_tokens < 1:
        print(
            f"shield generate: --max-new-tokens must be >= 1, received {args.max_new_tokens}.",
            file=sys.stderr,
        )
        return 2
    if args.no_cache:
        with caching(False):
            return _generate(args)
    return _generate(args)


def _generate(args: argparse.Namespace) -> int:
    import decoders
    import specs

    path = specs.resolve_spec_path(args.spec)  # a missing spec fails before anything loads
    decoders.enable_compilation_cache()  # before the first jitted call; off with --no-cache
    # The model loads on a second thread while the spec is read and compiled (or read from its
    # cache): the weights' copy into the device layout runs in numpy, mostly without the GIL.
    # A spec that fails waits for the load to end (the pool joins it; a converted model is
    # cached, so that work is not lost), then its error is reported.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shield-load") as pool:
        loading = pool.submit(decoders.load_model, args.model, weights=args.weights)
        compiled = specs.shield_for(specs.load(path))
        model, tokenizer = loading.result()
    stream_to = sys.stderr if args.json else sys.stdout

    def emit(row: int, delta: str) -> None:
        stream_to.write(delta)
        stream_to.flush()

    result = decoders.generate(
        model,
        tokenizer,
        [args.prompt],
        spec=compiled,
        strategy=args.strategy,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        chat=args.chat,
        prefill=args.prefill,
        stream=emit if args.stream else None,
    )[0]
    if args.stream:
        stream_to.write("\n")
    payload = result.to_json()
    if args.json:
        print(json.dumps(payload))
        return 0
    if not args.stream:
        print(result.text)
    stats = payload["stats"]
    print(
        f"shield generate: {args.strategy}, finish {result.finish_reason}, "
        f"{stats['kept_tokens']} kept / {stats['generated_tokens']} generated tokens, "
        f"{stats['rollbacks']} rollbacks, {stats['wall_seconds']:.1f} s",
        file=sys.stderr,
    )
    for event in payload["events"]:
        print(f"shield generate: {_describe(event)}", file=sys.stderr)
    return 0
