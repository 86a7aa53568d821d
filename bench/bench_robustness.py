"""Robustness benchmark (not a test): evasion recall/FPR, hostile specs, peak memory.

Run: ``python -m bench.bench_robustness``. Prints, per transformation of the labelled corpus
``tests/robustness/evasion_corpus.jsonl`` (read as data), the recall of our word rule with the
claimed normalisation and of ``bad_words_ids``-style token bans built from the canonical
SmolLM2 tokenizations of the words (lower, upper, capitalised; with and without a leading space);
the false-positive rate on the clean sentences; compile time and peak memory (tracemalloc) of
hostile specs; and, when ``decoders`` loads, the peak RSS of shielded generation (batch 8 x 512).
"""

from __future__ import annotations

import json
import resource
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import shield
from bench.bench_shield import _vocabulary
from shield.rules import NORMALIZATIONS, MatchOptions, RegexRule, Rule, WordsRule

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "robustness" / "evasion_corpus.jsonl"
CLAIMS = {
    "plain": set(),
    "case": set(),
    "leet": {"leet"},
    "confusables": {"confusables"},
    "fullwidth": {"nfkc"},
    "zero_width": {"zero_width"},
    "diacritics": {"diacritics"},
    "repeats": {"repeats"},
    "separators": {"separators"},
}


@dataclass(frozen=True)
class _Spec:
    name: str
    rules: tuple[Rule, ...]
    policy: shield.BacktrackPolicy = field(default_factory=shield.BacktrackPolicy)


def _guard(words: tuple[str, ...], normalize: set[str]) -> shield.Shield:
    match = MatchOptions(case_insensitive=True, whole_word=True, normalize=frozenset(normalize))
    return shield.compile(_Spec("bench", (WordsRule(id="w", words=words, match=match),)))


def _hit(guard: shield.Shield, text: str) -> bool:
    return guard.first_violation(text.encode(), final=True) is not None


def _token_bans(words: tuple[str, ...]):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from bench.bench_shield import _to_unicode

    tokens, special, merges = _vocabulary()
    strings = {s: i for i, s in enumerate(_to_unicode(b) for b in tokens) if not special[i]}
    tok = Tokenizer(models.BPE(vocab=strings, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    bans = {
        tuple(tok.encode(prefix + v).ids)
        for w in words
        for v in {w, w.lower(), w.upper(), w.capitalize()}
        for prefix in ("", " ")
    }

    def banned(text: str) -> bool:
        ids = tok.encode(text).ids
        return any(ids[i : i + len(b)] == list(b) for b in bans for i in range(len(ids)))

    return banned


def evasion() -> None:
    """Recall per transformation and false-positive rate on clean sentences."""
    records = [json.loads(line) for line in CORPUS.read_text("utf-8").splitlines() if line]
    words = tuple(sorted({r["word"] for r in records if r["word"]}))
    banned = _token_bans(words)
    clean = [r["text"] for r in records if r["label"] == "clean"]
    print(
        f"{'transformation':<14} {'n':>4} {'ours (claimed)':>15} {'ours (none)':>12} {'bad_words_ids':>14}"
    )
    plain = _guard(words, set())
    for kind, claim in CLAIMS.items():
        texts = [r["text"] for r in records if r["transformation"] == kind]
        guard = _guard(words, claim)
        ours = sum(_hit(guard, t) for t in texts) / len(texts)
        none = sum(_hit(plain, t) for t in texts) / len(texts)
        bans = sum(banned(t) for t in texts) / len(texts)
        print(f"{kind:<14} {len(texts):>4} {ours:>15.1%} {none:>12.1%} {bans:>14.1%}")
    for name, norm in (("none", set()), ("all but nfkc", set(NORMALIZATIONS) - {"nfkc"})):
        guard = _guard(words, norm)
        fpr = sum(_hit(guard, t) for t in clean) / len(clean)
        print(f"false positives on {len(clean)} clean sentences, normalise={name}: {fpr:.1%}")
    print(f"false positives of bad_words_ids: {sum(banned(t) for t in clean) / len(clean):.1%}")


def _measure(name: str, rules: tuple[Rule, ...]) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        guard = shield.compile(_Spec("hostile", rules))
        outcome = f"ok, {sum(r.n_states for r in guard.compiled)} states"
    except shield.ShieldError as error:
        outcome = f"{type(error).__name__}: {str(error)[:70]}"
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"{name:<34} {elapsed:7.2f} s  peak {peak:7.1f} MiB  {outcome}")


def hostile() -> None:
    """Compile time and peak memory of hostile specs."""
    import random
    import string

    rng = random.Random(0)
    words = tuple(
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10)))
        for _ in range(100_000)
    )
    _measure("regex (a+)+b", (RegexRule(id="r", pattern=r"(a+)+b"),))
    _measure("regex a{100000}", (RegexRule(id="r", pattern=r"a{100000}"),))
    _measure("regex (a|b)*a(a|b){20}", (RegexRule(id="r", pattern=r"(a|b)*a(a|b){20}"),))
    _measure(
        "regex [\\u0000-\\U0010FFFF]{3}", (RegexRule(id="r", pattern="[\\u0000-\\U0010FFFF]{3}"),)
    )
    _measure("words 100k", (WordsRule(id="w", words=words),))
    _measure(
        "words 2k whole-word",
        (WordsRule(id="w", words=words[:2000], match=MatchOptions(whole_word=True)),),
    )
    _measure("literal 1M chars", (WordsRule(id="w", words=("x" * 1_000_000,)),))


def generation() -> None:
    """Peak RSS of shielded generation with the toxicity spec (skipped when decoders fails)."""
    try:
        import decoders
        import decoders.shielded
        import specs

        model, tokenizer = decoders.load_model()
        guard = shield.compile(specs.load("specs/library/toxicity.toml"))
        judge = decoders.shielded.judge_for(guard, tokenizer)
        prompts = ["Tell me what you really think about"] * 8
        decoders.shielded.generate_shielded(
            model, tokenizer, prompts, judge=judge, max_new_tokens=512
        )
    except Exception as error:  # a benchmark reports why a line is missing
        print(f"generation peak memory: skipped ({type(error).__name__}: {str(error)[:80]})")
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generation batch 8 x 512, toxicity spec: peak RSS {peak:.0f} MiB")


def main() -> None:
    """Run every part."""
    evasion()
    hostile()
    print(
        f"compile peak RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    generation()


if __name__ == "__main__":
    main()
