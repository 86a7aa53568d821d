"""The device's vocabulary row (``violating_tokens``): the trie walk against the flat walk it replaced.

``mask`` computes, at every step and for every row, which of the V tokens would make the shield
violate; ``backtrack`` does the same while it repairs a failed segment. The flat walk read every
token's bytes from the row's state, ``V x L`` steps with ``L`` the longest token (49,152 x 81 on
SmolLM2). :func:`decoders.shield_tables.violating_tokens` now walks the vocabulary's byte trie one
level at a time: a shared prefix is read once (about 100k trie nodes), in a few loops over groups
of padded levels (:mod:`decoders.trie_walk`).

On the shipped toxicity spec and the bundled SmolLM2 tokenizer, from monitor states reached by
real text (dev prompts cut at random points, and the starts of forbidden words), for batches of
1, 8 and 25 rows: both walks are jitted and compiled first (the compile time is printed), their
outputs must be equal, then the runs alternate and the medians of ``--repeat`` are printed.
Run: ``.venv/bin/python -m bench.bench_mask_row [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import specs
from decoders import load_model, resolve_judge
from decoders import shield_tables as device
from decoders.shield_tables import ShieldTables

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "rtp_challenging_dev.jsonl"
SPEC = ROOT / "specs" / "library" / "toxicity.toml"
BATCHES = (1, 8, 25)
#: Starts of forbidden words: states from which a whole band of tokens is banned.
WORD_STARTS = (" fu", " sh", " bi", " as", " da")


def flat_walk(tables: ShieldTables, states: jax.Array) -> jax.Array:
    """The replaced implementation, kept as the baseline: every token's bytes from every state."""
    batch, components = states.shape
    vocab, longest = tables.token_bytes.shape
    current = jnp.broadcast_to(states[:, None, :], (batch, vocab, components))

    def body(i: jax.Array, current: jax.Array) -> jax.Array:
        nxt = device._step(tables, current, tables.token_bytes[:, i][None, :, None])
        return jnp.where((i < tables.token_lengths)[None, :, None], nxt, current)

    final = jax.lax.fori_loop(0, longest, body, current)
    return device.violates(tables, final) | ~tables.valid[None, :]


def _states(judge: Any, tokenizer: Any, count: int) -> np.ndarray:
    """Monitor states after ``count`` real texts (dev prompts cut at random, word starts)."""
    rng = random.Random(0)
    lines = [json.loads(line)["prompt"] for line in PROMPTS.read_text().splitlines()[:count]]
    texts = [p[: rng.randrange(1, len(p) + 1)] for p in lines]
    texts = [
        t + WORD_STARTS[i % len(WORD_STARTS)] if i % 3 == 0 else t for i, t in enumerate(texts)
    ]
    rows = []
    for text in texts:
        state = np.asarray(judge.tables.initial, np.int32)
        for token in tokenizer.encode(text, add_bos=False):
            state = judge.tables.step_token(state, token)
        rows.append(state)
    return np.stack(rows).astype(np.int32)


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    model, tokenizer = load_model("smollm2")
    judge = resolve_judge(specs.load(SPEC), tokenizer)
    tables = device.device_tables(judge, model.config.vocab_size, model.config.eos_token_ids)
    nodes = sum(hi - lo for lo, hi in judge.tables.byte_trie[2])
    groups = [tuple(parent.shape) for parent in tables.trie.parent]
    steps = sum(d * p for d, p in groups)
    print(
        f"vocabulary {model.config.vocab_size:,} tokens, longest {tables.token_bytes.shape[1]} "
        f"bytes; trie {nodes:,} nodes in {sum(d for d, _ in groups)} levels, walked as "
        f"{len(groups)} loops (levels x padded width: {groups}), {steps:,} steps "
        f"(+{steps / nodes - 1:.0%}); {tables.components} automaton component(s)"
    )
    print("| rows | flat: compile | trie: compile | flat: median | trie: median | ratio |")
    print("|--:|--:|--:|--:|--:|--:|")
    states = _states(judge, tokenizer, max(BATCHES))
    for batch in BATCHES:
        rows = jnp.asarray(states[:batch])
        flat, trie = jax.jit(flat_walk), jax.jit(device.violating_tokens)
        flat_compile = _time(lambda: flat(tables, rows))  # noqa: B023
        trie_compile = _time(lambda: trie(tables, rows))  # noqa: B023
        if not np.array_equal(np.asarray(flat(tables, rows)), np.asarray(trie(tables, rows))):
            raise SystemExit(f"the two walks disagree at {batch} rows")
        flat_s, trie_s = [], []
        for _ in range(args.repeat):  # alternate, so that load on the machine hits both alike
            flat_s.append(_time(lambda: flat(tables, rows)))  # noqa: B023
            trie_s.append(_time(lambda: trie(tables, rows)))  # noqa: B023
        f, t = statistics.median(flat_s), statistics.median(trie_s)
        print(
            f"| {batch} | {flat_compile:.2f} s | {trie_compile:.2f} s | {f * 1e3:.1f} ms | "
            f"{t * 1e3:.1f} ms | {t / f:.3f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
