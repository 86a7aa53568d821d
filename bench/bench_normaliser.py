"""Normalisation as its own stage against today's product automata, in the same run (not a test).

Run: ``python -m bench.bench_normaliser [--rows core,spec,confusables,all] [--repeat 5]``, and
``python -m bench.bench_normaliser --fp`` for the false positives of the staged one rule on
wordfreq's top 100,000 English words against today's two word rules (needs ``wordfreq``).
For each word rule below, compiles today's byte-level forbid automaton (``compile_rule``: the
letter matcher expanded to bytes, then absorbed) and the staged one (``words_composed``: the
normaliser composed at run time with the letter automaton), and measures, medians of
``--repeat`` runs:

- states: byte-level DFA states and byte classes (today); letter states, atoms and normaliser
  states (staged), and the table entries each stores;
- compile: wall time of the automaton (the compiled-shield cache is not involved);
- host step: ns per byte of the Python walk (``DFA.walk`` / ``Composed.walk``) over 20,000 bytes
  of clean text (this repository's README);
- host row: ms for the next state of every SmolLM2 token from the initial state (the vocabulary
  trie walked level by level with numpy gathers, as ``TokenShield`` does);
- device step / row: ``decoders.shield_tables.walk_tokens`` (8 rows, one token each) and
  ``violating_tokens`` (8 rows x the whole vocabulary), jitted, on the default JAX backend.

Rows: ``core`` = the 30 core words with all seven normalisations (the spec's former
``profanity-obfuscated`` rule); ``spec`` = the 916-word list with ``leet`` and ``repeats`` (the
spec's former ``profanity`` rule); ``confusables`` = the 916 words with ``confusables`` alone;
``all`` = both lists in one rule (the 916 words and the core list's ``bollocks``) with all seven
normalisations (the product: over the compile limits).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import specs
from bench.bench_shield import _vocabulary
from shield.automata.compiler import CompiledRule, compile_rule, pattern_matcher
from shield.automata.composed import Composed
from shield.automata.dfa import DFA
from shield.automata.exemptions import repeat_exemptions
from shield.automata.limits import CompileLimits
from shield.automata.temporal import absorb
from shield.automata.wordlist import words_composed
from shield.errors import CompileError
from shield.lifting import TokenShield
from shield.rules import NORMALIZATIONS, WordsRule
from shield.vocabulary import build_trie
from specs.words import word_lines

README = Path(__file__).resolve().parent.parent / "README.md"
CORE = Path(__file__).resolve().parent.parent / "specs" / "library" / "profanity_core.txt"
TEXT_BYTES = 20_000
BATCH = 8


#: The default limits but the wall-clock budget: compile time is measured, not capped, here (the
#: table reports it next to the 20 s default, which a loaded machine can exceed).
LIMITS = CompileLimits(max_rule_seconds=600)


def _timed(fn: Callable[[], Any]) -> tuple[str, Any]:
    """Wall and CPU seconds of one call, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return f"{time.perf_counter() - wall:.1f} s ({time.process_time() - cpu:.1f} s CPU)", out


def _median(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def two_rules() -> tuple[WordsRule, WordsRule]:
    """The toxicity spec's two word rules, built from their sources (so that they do not depend
    on how the spec file groups them): the better-profanity list with ``leet`` and ``repeats``
    (``profanity``), and the 30 core words (``profanity_core.txt``) with all seven
    normalisations (``profanity-obfuscated``); the baseline the one rule is measured against."""
    one = next(r for r in specs.load_library("toxicity").rules if isinstance(r, WordsRule))
    package = importlib.resources.files("better_profanity") / "profanity_wordlist.txt"
    full = dataclasses.replace(
        one,
        words=word_lines(package.read_text("utf-8")),
        match=dataclasses.replace(one.match, normalize=frozenset({"leet", "repeats"})),
    )
    core = dataclasses.replace(
        one,
        id="profanity-obfuscated",
        words=word_lines(CORE.read_text("utf-8")),
        match=dataclasses.replace(one.match, normalize=frozenset(NORMALIZATIONS)),
    )
    return full, core


def _rules() -> dict[str, WordsRule]:
    full, core = two_rules()

    def with_norms(rule: WordsRule, norms: frozenset[str]) -> WordsRule:
        return dataclasses.replace(rule, match=dataclasses.replace(rule.match, normalize=norms))

    # The one rule: both lists (the core list has a word the package list lacks: bollocks).
    union = dataclasses.replace(full, words=tuple(dict.fromkeys((*full.words, *core.words))))
    return {
        "core": core,
        "spec": full,
        "confusables": with_norms(full, frozenset({"confusables"})),
        "all": with_norms(union, frozenset(NORMALIZATIONS)),
    }


def _host_row(step: Callable[[np.ndarray, np.ndarray], np.ndarray], start: int, trie: Any) -> Any:
    parent, byte, bounds, token_node = trie
    state = np.empty(parent.shape[0], dtype=np.int64)
    state[0] = start
    for lo, hi in bounds:
        state[lo:hi] = step(state[parent[lo:hi]], byte[lo:hi])
    return state[token_node]


def _device(tables: Any, start: list[int], vocab: int, repeat: int) -> tuple[float, float]:
    import jax
    import jax.numpy as jnp

    from decoders import shield_tables as device

    walk = jax.jit(device.walk_tokens)
    row = jax.jit(device.violating_tokens)
    states = jnp.asarray([start] * BATCH, jnp.int32)
    tokens = jnp.asarray(np.arange(BATCH) * 97 % vocab, jnp.int32)
    walk(tables, states, tokens).block_until_ready()
    row(tables, states).block_until_ready()
    step_s, _ = _median(lambda: walk(tables, states, tokens).block_until_ready(), repeat * 4)
    row_s, _ = _median(lambda: row(tables, states).block_until_ready(), repeat)
    return step_s, row_s


def product_rule(rule: WordsRule) -> CompiledRule:
    """``rule`` compiled the product way (the expanded byte DFA), whatever ``is_staged`` says."""
    matcher = pattern_matcher(rule, LIMITS)
    return CompiledRule(rule, "words", absorb(matcher, LIMITS, what=rule.id), matcher, None)


def _today(rule: WordsRule, text: bytes, trie: Any, vocab: Any, repeat: int) -> str:
    from decoders.shield_tables import shield_tables

    try:
        compile_s, compiled = _timed(lambda: product_rule(rule))
    except CompileError as error:
        return f"CompileError: {str(error)[:90]}"
    dfa: DFA = compiled.dfa
    walk_s, _ = _median(lambda: dfa.walk(dfa.initial, text), repeat)
    table = dfa.byte_table()
    row_s, _ = _median(lambda: _host_row(lambda s, b: table[s, b], dfa.initial, trie), repeat)
    tokens, special = vocab
    lifted = TokenShield.build([compiled], tokens, special=special)
    tables = shield_tables(lifted, len(tokens), np.array(special))
    step_d, row_d = _device(tables, [dfa.initial], len(tokens), repeat)
    return (
        f"{dfa.n_states:,} states x {dfa.n_classes} classes ({dfa.transitions.size:,} entries) | "
        f"{compile_s} | {walk_s / len(text) * 1e9:.0f} ns | {row_s * 1e3:.1f} ms | "
        f"{step_d * 1e6:.0f} us | {row_d * 1e3:.1f} ms"
    )


def _staged(rule: WordsRule, text: bytes, trie: Any, vocab: Any, repeat: int) -> str:
    from decoders.shield_tables import shield_tables

    words = tuple(dict.fromkeys(rule.words))

    def build() -> Composed:
        exempt = sorted(repeat_exemptions(words, rule.match))
        return words_composed(words, rule.match, LIMITS, what=rule.id, absorb=True, exempt=exempt)

    try:
        compile_s, composed = _timed(build)
    except CompileError as error:
        return f"CompileError: {str(error)[:90]}"
    walk_s, _ = _median(lambda: composed.walk(composed.initial, text), repeat)
    row_s, _ = _median(lambda: _host_row(composed.step_many, composed.initial, trie), repeat)
    tokens, special = vocab
    lifted = TokenShield.build([], tokens, special=special)  # no table component
    tables = shield_tables(lifted, len(tokens), np.array(special), composed=(composed,))
    step_d, row_d = _device(tables, [composed.initial], len(tokens), repeat)
    return (
        f"{composed.n_letters:,} letter states x {composed.normaliser.n_atoms} atoms + "
        f"{composed.n_norm} normaliser states ({composed.table_cells():,} entries) | "
        f"{compile_s} | {walk_s / len(text) * 1e9:.0f} ns | {row_s * 1e3:.1f} ms | "
        f"{step_d * 1e6:.0f} us | {row_d * 1e3:.1f} ms"
    )


def false_positives() -> None:
    """wordfreq's top 100,000 words through today's two word rules and the staged one rule."""

    import wordfreq

    from bench.bench_false_positives import Corpus, flagged

    corpus = Corpus("wordfreq", tuple(wordfreq.top_n_list("en", 100_000)))
    today: set[int] = set()
    for rule in two_rules():
        today |= flagged(product_rule(rule), corpus)
    staged = flagged(compile_rule(_rules()["all"], LIMITS), corpus)  # the staged one rule
    added = sorted(corpus.items[i] for i in staged - today)
    gone = sorted(corpus.items[i] for i in today - staged)
    print(f"| the former two word rules | {len(today)} words flagged of 100,000 |")
    print(f"| the staged one rule (both lists, all 7) | {len(staged)} words flagged |")
    print(f"| flagged by the one rule only | {len(added)}: {', '.join(added)} |")
    print(f"| flagged by the former rules only | {len(gone)}: {', '.join(gone)} |")


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="core,spec,confusables,all")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fp", action="store_true", help="only the false positives on wordfreq")
    args = parser.parse_args()
    if args.fp:
        false_positives()
        return
    rules = _rules()
    text = README.read_bytes()[:TEXT_BYTES]
    tokens, special, _ = _vocabulary()
    lengths = np.array([len(t) for t in tokens], dtype=np.int32)
    matrix = np.zeros((len(tokens), int(lengths.max())), dtype=np.int32)
    for v, t in enumerate(tokens):
        matrix[v, : len(t)] = np.frombuffer(t, dtype=np.uint8)
    trie = build_trie(matrix, lengths)
    vocab = (tokens, special)
    print(
        "| rule | automaton | states | compile | host step / byte | host row (V tokens) | "
        f"device step (B={BATCH}) | device row (B={BATCH} x V) |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for name in args.rows.split(","):
        rule = rules[name]
        label = f"{name} ({len(set(rule.words))} words; {'+'.join(sorted(rule.match.normalize))})"
        print(f"| {label} | today | {_today(rule, text, trie, vocab, args.repeat)} |", flush=True)
        print(f"| {label} | staged | {_staged(rule, text, trie, vocab, args.repeat)} |", flush=True)


if __name__ == "__main__":
    main()
