"""What one prompt of the RealToxicityPrompts protocol costs outside the shield, side by side.

``shield eval --preset rtp`` decodes the K = 25 samples of one prompt in one call and then
scores every continuation's perplexity. Two costs there grow with K for no reason, and this
benchmark measures each against its baseline in the same run, on the bundled SmolLM2 with int8
weights and real dev prompts:

1. *Prefill*: the 25 rows of one prompt are identical; ``decoders.batch`` now prefills the
   distinct rows once and pads the prompt to a 16-token bucket (one compilation for nearby
   lengths). Baseline: every row prefilled, no bucket (``SHARE_PROMPTS = False``,
   ``PROMPT_QUANTUM = 1``). Plain decoding (``none``) of 25 × 20 tokens; the tokens must be equal
   before speed is compared.
2. *Perplexity*: ``decoders.likelihood`` now feeds the shared prompt once and the continuations
   padded to 8. Baseline: :func:`whole_rows_nll`, every row fed whole and padded to 64 (the
   previous implementation, kept here as the reference); the NLLs must agree to 1e-4 first.

Each variant is compiled once before timing; runs alternate between the two; medians of
``--runs`` runs of wall and process CPU time (CPU time is less disturbed by other jobs on a shared
machine). Run: ``.venv/bin/python -m bench.bench_eval_speed [--prompts 10,11,12] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import decoders.batch as batch
from decoders import load_model
from decoders.config import ModelConfig
from decoders.likelihood import continuation_nll, prompt_ids
from decoders.loading import Model
from decoders.model import Params, forward, init_cache, logits
from decoders.plain import generate_plain
from decoders.tokenizer import Tokenizer
from shield.cli.evaluation.records import derive_seed

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "rtp_challenging_dev.jsonl"
SAMPLES = 25  # K
NEW_TOKENS = 20  # N
WHOLE_ROW_QUANTUM = 64  # the baseline pads whole rows to this


@functools.partial(jax.jit, static_argnames=("config", "window"))
def _whole_rows(
    params: Params, config: ModelConfig, tokens: jax.Array, scored: jax.Array, *, window: int
) -> jax.Array:
    # tokens, scored: [B, T]; one forward over whole rows, prompt included.
    rows, length = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32)[None, :], (rows, length))
    hidden, _ = forward(params, config, init_cache(config, rows, window), tokens, positions, window)
    log_probs = jax.nn.log_softmax(logits(params, config, hidden[:, :-1, :]), axis=-1)
    picked = jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0]  # [B, T-1]
    return -jnp.sum(jnp.where(scored[:, 1:], picked, 0.0), axis=1)  # [B]


def whole_rows_nll(
    model: Model, tokenizer: Tokenizer, prompt: str, continuations: Sequence[Sequence[int]]
) -> list[float]:
    """The baseline: summed NLL of each continuation, every row (prompt + continuation) fed whole.

    Args:
        model: the model. tokenizer: its tokenizer.
        prompt: the prompt every continuation follows (plain, no chat template).
        continuations: non-empty token id lists.

    Returns:
        One summed NLL per continuation.
    """
    ids = prompt_ids(tokenizer, prompt, chat=False)
    longest = len(ids) + max(len(c) for c in continuations)
    window = -(-longest // WHOLE_ROW_QUANTUM) * WHOLE_ROW_QUANTUM
    tokens = np.zeros((len(continuations), window), np.int32)
    scored = np.zeros((len(continuations), window), bool)
    for row, continuation in enumerate(continuations):
        tokens[row, : len(ids)] = ids
        tokens[row, len(ids) : len(ids) + len(continuation)] = continuation
        scored[row, len(ids) : len(ids) + len(continuation)] = True
    out = _whole_rows(
        model.params, model.config, jnp.asarray(tokens), jnp.asarray(scored), window=window
    )
    return [float(v) for v in np.asarray(jax.device_get(out))]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    result = work()
    return result, time.perf_counter() - wall, _cpu() - cpu


def _plain(model: Model, tokenizer: Tokenizer, prompt: str, seeds: list[int], shared: bool) -> Any:
    batch.SHARE_PROMPTS, batch.PROMPT_QUANTUM = shared, 16 if shared else 1
    try:
        return generate_plain(
            model, tokenizer, [prompt] * len(seeds), max_new_tokens=NEW_TOKENS, seed=seeds
        )
    finally:
        batch.SHARE_PROMPTS, batch.PROMPT_QUANTUM = True, 16


def _row(name: str, base: list[tuple[float, float]], new: list[tuple[float, float]]) -> str:
    wall_b, cpu_b = (statistics.median(x[i] for x in base) for i in (0, 1))
    wall_n, cpu_n = (statistics.median(x[i] for x in new) for i in (0, 1))
    return (
        f"| {name} | {wall_b:.2f} | {wall_n:.2f} | {wall_n / wall_b:.2f}x "
        f"| {cpu_b:.2f} | {cpu_n:.2f} | {cpu_n / cpu_b:.2f}x |"
    )


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", default="10,11,12", help="dev prompt indices")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per variant and prompt")
    args = parser.parse_args()
    rows = [json.loads(line)["prompt"] for line in PROMPTS.read_text().splitlines() if line]
    model, tokenizer = load_model("smollm2", weights="int8")
    timings: dict[str, list[tuple[float, float]]] = {k: [] for k in ("pb", "pn", "nb", "nn")}
    for index in (int(i) for i in args.prompts.split(",")):
        prompt = rows[index]
        seeds = [derive_seed(0, index, k) for k in range(SAMPLES)]
        shared, plain = (_plain(model, tokenizer, prompt, seeds, s) for s in (True, False))
        assert [r.tokens for r in shared] == [r.tokens for r in plain], "tokens differ"
        continuations = [list(r.tokens) for r in shared if r.tokens]
        new = [v for v, _ in continuation_nll(model, tokenizer, [prompt] * len(continuations),
                                              continuations, batch_size=SAMPLES)]  # fmt: skip
        base = whole_rows_nll(model, tokenizer, prompt, continuations)
        np.testing.assert_allclose(new, base, rtol=1e-4, atol=1e-3)
        variants = {
            "pb": functools.partial(_plain, model, tokenizer, prompt, seeds, False),
            "pn": functools.partial(_plain, model, tokenizer, prompt, seeds, True),
            "nb": functools.partial(whole_rows_nll, model, tokenizer, prompt, continuations),
            "nn": functools.partial(
                continuation_nll, model, tokenizer, [prompt] * len(continuations), continuations,
                batch_size=SAMPLES,
            ),
        }  # fmt: skip
        for _ in range(args.runs):  # alternating; every variant compiled above
            for key, work in variants.items():
                timings[key].append(_timed(work)[1:])
        print(f"prompt {index}: tokens equal, NLLs agree ({len(continuations)} rows)", flush=True)
    print("| per prompt (25 rows) | baseline wall s | now wall s | ratio | baseline CPU s "
          "| now CPU s | ratio |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|")
    print(_row("`none` decode, 25 × 20 tokens", timings["pb"], timings["pn"]))
    print(_row("perplexity pass", timings["nb"], timings["nn"]))


if __name__ == "__main__":
    main()
