"""False positives of the library specs on real English vocabulary and real sentences.

Run: ``python -m bench.bench_false_positives`` (add ``--list`` to print every flagged word,
``--write-allowed`` to rewrite the test's allow-list, ``tests/robustness/false_positives_allowed.txt``).

Inputs, both read from what is installed or in the repository:

- every word of the top 100,000 English words of ``wordfreq`` (``top_n_list("en", 100000)``;
  ``wordfreq`` writes multi-digit numbers with zeros, ``a55`` is ``a00``), one per line;
- the 300 RealToxicityPrompts prompts of ``data/rtp_challenging_dev.jsonl`` (real web sentences),
  split by the profanity-check classifier into the ones it scores below 0.5 ("clean") and the rest;
- model numbers and numbers in sentences (:data:`MODEL_NUMBERS`), the leetspeak collisions of
  issue 15 (``The Samsung Galaxy A55 has a good camera.``).

The text is one string, an item per line: no normalisation lets a match cross a newline and a
newline ends a word, so each line is judged as it would be alone. Each automaton rule's matcher
DFA is walked over the bytes once; a detection is charged to the line it falls in (a whole word
is detected on the newline after it, which belongs to its line). A staged rule (a composed
automaton, :func:`shield.automata.compiler.is_staged`) walks each line on its own. Per word-list rule, the rule is
also compiled with no normalisation and with each of its normalisations alone (case and
whole-word matching kept): "added by" a normalisation is what it flags beyond the plain rule.
A plain rule's flags are the list's own words (``damn``, ``crap``, ``god``): the list's choice,
not a normalisation's error.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import shield
import specs
from shield.automata.compiler import CompiledRule
from shield.automata.dfa import DFA
from shield.classifiers import score
from shield.policy import BacktrackPolicy
from shield.rules import WordsRule

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "data" / "rtp_challenging_dev.jsonl"
ALLOWED = ROOT / "tests" / "robustness" / "false_positives_allowed.txt"
LIBRARY = ("toxicity", "pii", "secrets")
N_WORDS = 100_000
#: Model numbers and numbers, alone and in sentences: none may be flagged.
MODEL_NUMBERS: tuple[str, ...] = (
    "The Samsung Galaxy A55 has a good camera.",
    "The B52 bomber and the B-52s band.",
    "A55 B52 S10 X11 F150 P40 G7 K9 T800 A5S Z3 E30 M3 S5 B8 A4 S3",
    "Room 455, flight 5318008, model 8008, code 7175.",
)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Items joined by newlines, with the byte offset of each line."""

    name: str
    items: tuple[str, ...]

    @property
    def data(self) -> bytes:
        return "\n".join(self.items).encode("utf-8")

    def starts(self) -> list[int]:
        offsets = [0]
        for item in self.items[:-1]:
            offsets.append(offsets[-1] + len(item.encode("utf-8")) + 1)
        return offsets


def detections(dfa: DFA, data: bytes) -> list[int]:
    """Offsets of the symbols on which ``dfa`` (a matcher) enters an accepting state."""
    table, classes = dfa.transitions.tolist(), dfa.classes.tolist()
    accepting = dfa.accepting.tolist()
    state, out = dfa.initial, []
    for i, byte in enumerate(data):
        state = table[state][classes[byte]]
        if accepting[state]:
            out.append(i)
    if accepting[table[state][classes[256]]]:
        out.append(len(data))
    return out


def flagged(rule: CompiledRule, corpus: Corpus) -> set[int]:
    """Indices of the items with a detection.

    A staged rule (a composed forbid automaton, violations absorbing) walks each item on its
    own, END after it: the same verdict as the item alone on its line.
    """
    if rule.composed is not None:
        composed = rule.composed
        return {
            i
            for i, item in enumerate(corpus.items)
            if composed.violating(composed.walk(composed.initial, item.encode(), final=True))
        }
    assert rule.matcher is not None  # a compiled rule holds one of the two forms
    starts = corpus.starts()
    return {bisect.bisect_right(starts, i) - 1 for i in detections(rule.matcher, corpus.data)}


def corpora() -> list[Corpus]:
    """The word list, the prompts split by the classifier, the model numbers."""
    import wordfreq

    words = tuple(wordfreq.top_n_list("en", N_WORDS))
    prompts = [json.loads(line)["prompt"] for line in PROMPTS.read_text("utf-8").splitlines()]
    prompts = [" ".join(p.split()) for p in prompts]  # one line each
    scores = score("profanity-check", prompts)
    clean = tuple(p for p, s in zip(prompts, scores, strict=True) if s < 0.5)
    toxic = tuple(p for p, s in zip(prompts, scores, strict=True) if s >= 0.5)
    return [
        Corpus(f"wordfreq top {N_WORDS:,}", words),
        Corpus("RTP prompts, classifier < 0.5", clean),
        Corpus("RTP prompts, classifier >= 0.5", toxic),
        Corpus("model numbers", MODEL_NUMBERS),
    ]


@dataclasses.dataclass(frozen=True)
class _Spec:
    """The smallest spec ``shield.compile`` accepts: one rule."""

    name: str
    rules: tuple
    policy: BacktrackPolicy = dataclasses.field(
        default_factory=lambda: BacktrackPolicy(refusal="Sorry.")
    )


def _variants(rule: WordsRule) -> list[tuple[str, WordsRule]]:
    """The rule with no normalisation, then with each of its normalisations alone."""
    out = []
    for norm in ("", *sorted(rule.match.normalize)):
        match = dataclasses.replace(rule.match, normalize=frozenset({norm} - {""}))
        out.append((norm or "(plain)", dataclasses.replace(rule, match=match)))
    return out


def _compile_one(rule: WordsRule) -> CompiledRule:
    guard = shield.compile(_Spec("fp", (rule,)))  # type: ignore[arg-type]
    return guard.compiled[0]


def _rate(n: int, total: int) -> str:
    return f"{100 * n / total:.3f}%"


def _examples(items: Iterable[str], limit: int) -> str:
    shown = sorted(items)
    text = ", ".join(f"`{w}`" for w in shown[:limit])
    return text + (f" … (+{len(shown) - limit})" if len(shown) > limit else "")


def main(argv: Sequence[str] | None = None) -> None:
    """Print the tables (see the module docstring)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--list", action="store_true", help="print every flagged item")
    parser.add_argument("--write-allowed", action="store_true", help="rewrite the allow-list")
    args = parser.parse_args(argv)
    limit = 10**9 if args.list else 12
    texts = corpora()
    print("| spec | rule | corpus | items | flagged | rate | flagged items |")
    print("|---|---|---|--:|--:|--:|---|")
    allowed: list[str] = []
    for name in LIBRARY:
        started = time.perf_counter()
        guard = shield.compile(specs.load_library(name))
        for compiled in guard.compiled:
            for corpus in texts:
                hits = flagged(compiled, corpus)
                shown = {corpus.items[i] for i in hits}
                total = len(corpus.items)
                print(
                    f"| {name} | {compiled.rule_id} | {corpus.name} | {total} | {len(hits)} "
                    f"| {_rate(len(hits), total)} | {_examples(shown, limit)} |"
                )
                if corpus is texts[0]:
                    allowed += [f"{compiled.rule_id}\t{w}" for w in sorted(shown)]
        print(f"<!-- {name}: compiled and scanned in {time.perf_counter() - started:.1f} s -->")
    print()
    print("| rule | normalisation | words flagged (of 100,000) | added by it | added words |")
    print("|---|---|--:|--:|---|")
    words = texts[0]
    for rule in specs.load_library("toxicity").rules:
        if not isinstance(rule, WordsRule):
            continue
        plain: set[int] = set()
        for norm, variant in _variants(rule):
            hits = flagged(_compile_one(variant), words)
            if norm == "(plain)":
                plain = hits
            added = {words.items[i] for i in hits - plain}
            print(
                f"| {rule.id} | {norm} | {len(hits)} | {len(added)} | {_examples(added, limit)} |"
            )
    if args.write_allowed:
        header = (
            "# Words of wordfreq's top 100,000 English words that the library specs flag, accepted:\n"
            "# rule<TAB>word. Regenerate with `python -m bench.bench_false_positives "
            "--write-allowed`\n# after reviewing the new flags; tests/robustness/"
            "test_false_positives.py fails on any flag not listed here.\n"
        )
        ALLOWED.write_text(header + "\n".join(sorted(allowed)) + "\n", "utf-8")
        print(f"\nwrote {ALLOWED.relative_to(ROOT)} ({len(allowed)} entries)")


if __name__ == "__main__":
    main()
