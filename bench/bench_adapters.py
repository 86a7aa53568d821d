"""Benchmark of the transformers adapter (not a test).

Run: ``python -m bench.bench_adapters`` (``--loop`` adds the decoding loop on the real SmolLM2).

1. Per-step cost of :class:`adapters.huggingface.ShieldLogitsProcessor` against transformers'
   ``NoBadWordsLogitsProcessor`` on the same word list (the better-profanity list; ours: one
   case-insensitive whole-word rule through leetspeak; theirs: every tokenization of each word in
   lower case, upper case and capitalised, with and without a leading space), at batch 1 and 8,
   over a simulated generation of ``STEPS`` tokens of English text (the processors see the
   growing ``input_ids`` exactly as inside ``model.generate``). Medians of ``RUNS`` runs; ours
   also cold (the first run, before any per-state mask is cached). Torch on one thread for both.
2. ``--loop``: tokens per second of greedy decoding on the bundled SmolLM2 through
   ``model.generate`` (plain), through the adapter's loop with strategy ``none`` and with
   ``backtrack`` (a clean prompt: no rollback, so the difference is the shield's cost), and one
   rewind (crop + one step) against one decode step.
"""

from __future__ import annotations

import argparse
import importlib.resources
import statistics
import time
from types import SimpleNamespace
from typing import Any

import torch

import shield
from adapters import huggingface as hf
from shield.judge import Judge
from shield.rules import MatchOptions, WordsRule

STEPS = 64
RUNS = 7
PROMPT = "Here is what I think about the whole thing, honestly:"
TEXT = (
    " The weather was mild, and the market by the river was busy with people buying bread,"
    " apples and flowers. A man played an old song on his violin while children ran between the"
    " stalls, and nobody seemed to be in any hurry to go home before the sun went down."
)


def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    import decoders  # the bundled model's location only

    path = decoders.bundled_model_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _words() -> list[str]:
    text = (
        importlib.resources.files("better_profanity").joinpath("profanity_wordlist.txt").read_text()
    )
    return list(dict.fromkeys(w.strip() for w in text.splitlines() if w.strip()))


def _judge(tokenizer: Any, words: list[str]) -> Judge:
    match = MatchOptions(case_insensitive=True, whole_word=True, normalize=frozenset({"leet"}))
    rule = WordsRule(id="profanity", words=tuple(words), match=match)
    spec = SimpleNamespace(name="bench", rules=(rule,), policy=shield.BacktrackPolicy())
    return hf.judge_for(shield.compile(spec), tokenizer)


def _bad_words_ids(tokenizer: Any, words: list[str]) -> list[list[int]]:
    bad: set[tuple[int, ...]] = set()
    for word in words:
        for variant in {word, word.lower(), word.upper(), word.capitalize()}:
            for prefix in ("", " "):
                bad.add(tuple(tokenizer.encode(prefix + variant, add_special_tokens=False)))
    return [list(b) for b in bad]


def _generation(tokenizer: Any, batch: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The prompt batch and the ``input_ids`` a processor sees at each of ``STEPS`` steps."""
    prompt = tokenizer.encode(PROMPT, add_special_tokens=False)
    text = tokenizer.encode(TEXT * 3, add_special_tokens=False)
    rows = [text[3 * b : 3 * b + STEPS] for b in range(batch)]  # different text per row
    steps = [
        torch.tensor([prompt + row[:k] for row in rows], dtype=torch.long) for k in range(STEPS)
    ]
    return steps[0], steps


def _per_step_ms(processor: Any, steps: list[torch.Tensor], vocab: int) -> float:
    scores = torch.zeros((steps[0].shape[0], vocab))
    started = time.perf_counter()
    for input_ids in steps:  # the calls of one generation, in order
        processor(input_ids, scores)
    return (time.perf_counter() - started) / len(steps) * 1000


def bench_processors() -> None:
    """Print the per-step cost of both processors at batch 1 and 8."""
    from transformers import NoBadWordsLogitsProcessor

    # Both processors work on [B, V] tensors of a few hundred KB: one thread (a thread pool only
    # adds wake-ups, badly so on a shared CPU), the same for both.
    torch.set_num_threads(1)
    tokenizer = _tokenizer()
    words = _words()
    began = time.perf_counter()
    judge = _judge(tokenizer, words)
    print(f"compile + lift {len(words)} words: {time.perf_counter() - began:.2f} s")
    bad = _bad_words_ids(tokenizer, words)
    vocab = len(judge.token_bytes)
    eos = tokenizer.eos_token_id
    print(
        f"{len(words)} words; bad_words_ids: {len(bad)} sequences; vocabulary {vocab}; {STEPS} steps"
    )
    print("| batch | ours, cold | ours, warm | NoBadWords | ours / NoBadWords |")
    print("|--:|--:|--:|--:|--:|")
    for batch in (1, 8):
        _, steps = _generation(tokenizer, batch)
        cold = _per_step_ms(hf.ShieldLogitsProcessor(judge, eos_token_id=eos), steps, vocab)
        ours = statistics.median(
            _per_step_ms(hf.ShieldLogitsProcessor(judge, eos_token_id=eos), steps, vocab)
            for _ in range(RUNS)
        )
        theirs = statistics.median(
            _per_step_ms(NoBadWordsLogitsProcessor(bad, eos_token_id=eos), steps, vocab)
            for _ in range(RUNS)
        )
        print(
            f"| {batch} | {cold:.3f} ms | {ours:.3f} ms | {theirs:.3f} ms | {ours / theirs:.2f}x |"
        )


def bench_loop(new_tokens: int = 48) -> None:
    """Print greedy tokens per second on SmolLM2: plain generate, the loop, and a rewind."""
    from transformers import AutoModelForCausalLM

    import decoders
    import specs

    torch.set_num_threads(2)
    path = decoders.bundled_model_path()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    tokenizer = _tokenizer()
    judge = hf.judge_for(shield.compile(specs.load_library("pii")), tokenizer)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Describe a quiet morning in a small town."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    rows: dict[str, list[float]] = {"generate": [], "none": [], "backtrack": []}
    for _ in range(3):  # paired runs, medians
        started = time.perf_counter()
        plain = model.generate(
            ids, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens
        )
        rows["generate"].append((plain.shape[1] - ids.shape[1]) / (time.perf_counter() - started))
        for strategy in ("none", "backtrack"):
            (result,) = hf.generate(
                model, ids, judge=judge, strategy=strategy, max_new_tokens=new_tokens
            )
            rows[strategy].append(result.stats.generated_tokens / result.stats.wall_seconds)
            assert result.stats.rollbacks == 0, "the benchmark prompt must stay clean"
    for name, values in rows.items():
        print(
            f"greedy, batch 1, {new_tokens} tokens, {name}: {statistics.median(values):.1f} tok/s"
        )
    cached = hf.CachedPrefix(model, vocab_size=len(judge.token_bytes), capacity=512, rewinds=True)
    prefix = ids[0].tolist() + plain[0, ids.shape[1] :].tolist()
    cached(prefix)
    step, rewind = [], []
    for _ in range(5):
        started = time.perf_counter()
        cached([*prefix, 13])  # one decode step
        step.append(time.perf_counter() - started)
        started = time.perf_counter()
        cached(prefix[:-16])  # crop 17 tokens, feed one again
        rewind.append(time.perf_counter() - started)
        cached(prefix)
    print(
        f"decode step {statistics.median(step) * 1000:.1f} ms; rewind of 16 tokens "
        f"(crop + one step) {statistics.median(rewind) * 1000:.1f} ms"
    )


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", action="store_true", help="also time the loop on SmolLM2")
    args = parser.parse_args()
    bench_processors()
    if args.loop:
        bench_loop()


if __name__ == "__main__":
    main()
