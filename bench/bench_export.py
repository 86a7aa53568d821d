"""Benchmark of the llguidance grammar export against the shield's own mask (not a test).

Run: ``python -m bench.bench_export``. For each library spec, on the bundled SmolLM2 vocabulary
(49,152 tokens): the export and grammar-compile times, then the cost of one decoding step's mask
along real text (the first 40 RealToxicityPrompts dev prompts of ``data/``, tokenized, walked
token by token): llguidance's ``compute_bitmask`` beside the shield's ``TokenShield.allowed_mask``
(cold: a freshly lifted shield; warm: the same text again), median, mean and 90th percentile
over every step of ``RUNS`` repeated runs (llguidance's first pass is reported on its own: it
builds its lexer states lazily). The masks are not compared here (``tests/shield/test_export.py`` does).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import specs
from shield.export import export_lark

RUNS = 5
PROMPTS = 40
SPECS = ("pii", "secrets", "toxicity")
DATA = Path(__file__).resolve().parent.parent / "data" / "rtp_challenging_dev.jsonl"


def _tokenizers() -> tuple[Any, Any]:
    import llguidance
    import tokenizers

    from decoders.paths import bundled_model_path
    from decoders.sources import gguf_tokenizer, open_gguf_checked

    text, _ = gguf_tokenizer(open_gguf_checked(bundled_model_path()))
    hf = tokenizers.Tokenizer.from_str(text)
    return hf, llguidance.LLTokenizer(text, eos_token=hf.token_to_id("<|im_end|>"))


def _prompts(hf: Any) -> list[list[int]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()[:PROMPTS]
    return [hf.encode(json.loads(line)["prompt"]).ids for line in lines]


def _ms(samples: list[float]) -> str:
    """Median, mean and 90th percentile, in milliseconds."""
    median, mean = statistics.median(samples) * 1e3, statistics.fmean(samples) * 1e3
    return f"{median:.3f} / {mean:.3f} / {np.percentile(samples, 90) * 1e3:.3f} ms"


def _llguidance_steps(matcher: Any, prompts: list[list[int]]) -> list[float]:
    times = []
    for ids in prompts:
        matcher.reset()
        for token in ids:
            began = time.perf_counter()
            matcher.compute_bitmask()
            times.append(time.perf_counter() - began)
            if not matcher.consume_token(token):
                break  # the grammar masked the prompt's next token: stop this prompt
    return times


def _shield_steps(tokens: Any, prompts: list[list[int]]) -> list[float]:
    times = []
    for ids in prompts:
        states = tokens.initial.copy()
        for token in ids:
            began = time.perf_counter()
            mask = tokens.allowed_mask(states)
            times.append(time.perf_counter() - began)
            if not mask[token]:
                break
            states = tokens.step_token(states, token)
    return times


def main() -> None:
    """Print one block per library spec."""
    import llguidance

    from shield.store import caching

    hf, lltokenizer = _tokenizers()
    prompts = _prompts(hf)
    print(f"SmolLM2 vocabulary, {len(prompts)} prompts, {sum(map(len, prompts))} steps per run")
    for name in SPECS:
        with caching(True):  # compiled automata from the on-disk cache (as the CLI reads them)
            shield = specs.shield_for(specs.load_library(name))
        began = time.perf_counter()
        exported = export_lark(shield)
        export_s = time.perf_counter() - began
        grammar = llguidance.LLMatcher.grammar_from_lark(exported.grammar)
        began = time.perf_counter()
        matcher = llguidance.LLMatcher(lltokenizer, grammar, log_level=0)
        build_s = time.perf_counter() - began
        assert not matcher.is_error(), matcher.get_error()
        first = _llguidance_steps(matcher, prompts)
        again = [t for _ in range(RUNS) for t in _llguidance_steps(matcher, prompts)]
        cold = []
        for _ in range(RUNS):
            cold += _shield_steps(shield.lift(hf), prompts)  # fresh caches every run
        lifted = shield.lift(hf)
        _shield_steps(lifted, prompts)
        warm = [t for _ in range(RUNS) for t in _shield_steps(lifted, prompts)]
        print(
            f"{name}: export {export_s:.2f} s ({len(exported.grammar):,} chars),"
            f" llguidance grammar build {build_s:.2f} s;"
            f" not carried: {[n.rule_id for n in exported.not_carried] or 'none'}"
        )
        print(f"  mask per step (median / mean / p90): llguidance first pass {_ms(first)}")
        print(f"    llguidance again {_ms(again)}")
        print(f"    shield cold      {_ms(cold)}")
        print(f"    shield warm      {_ms(warm)}")


if __name__ == "__main__":
    main()
