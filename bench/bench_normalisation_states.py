"""States of the toxicity spec's word lists per normalisation (not a test).

Run: ``python -m bench.bench_normalisation_states``. Compiles the better-profanity list of the
library toxicity spec (916 words, case-insensitive, whole words) with no normalisation, with each
normalisation alone, with ``leet`` and ``repeats`` (the spec's former rule), and with all seven;
and the 30-word core list with all seven (the spec's former ``profanity-obfuscated`` rule; the
two were merged into one staged rule, see ``bench.bench_normaliser``). Prints the byte-level
matcher's states and byte classes, and the wall time of each compile (no compiled-shield cache:
``words_matcher`` is called directly). The measurements behind the design note on normalisation
as its own stage (README, "Normalisation data").
"""

from __future__ import annotations

import dataclasses
import time

from bench.bench_normaliser import two_rules
from shield.automata.limits import CompileLimits
from shield.automata.wordlist import words_matcher
from shield.errors import CompileError
from shield.rules import NORMALIZATIONS, WordsRule


def _row(rule: WordsRule, norms: tuple[str, ...]) -> str:
    match = dataclasses.replace(rule.match, normalize=frozenset(norms))
    words = tuple(dict.fromkeys(rule.words))
    started = time.perf_counter()
    try:
        dfa = words_matcher(words, match, CompileLimits(), what=rule.id).dfa
        result = f"{dfa.n_states} states, {dfa.n_classes} classes"
    except CompileError as error:
        result = f"CompileError: {str(error)[:100]}"
    elapsed = time.perf_counter() - started
    label = "+".join(norms) or "(none)"
    return f"| {rule.id} ({len(words)} words) | {label} | {result} | {elapsed:.1f} s |"


def main() -> None:
    """Print the table."""
    full, core = two_rules()
    every = tuple(sorted(NORMALIZATIONS))
    print("| word list | normalisations | byte-level DFA | compile |")
    print("|---|---|--:|--:|")
    rows = [(full, ()), *((full, (n,)) for n in every), (full, ("leet", "repeats"))]
    rows += [(core, every), (full, every)]
    for rule, norms in rows:
        print(_row(rule, norms), flush=True)


if __name__ == "__main__":
    main()
