"""The labelled evasion corpus: forbidden words under documented transformations, and clean text.

The transformations draw their stand-ins from the compiler's own tables (``CONFUSABLES``, ``LEET``,
``ZERO_WIDTH``, ``SEPARATORS``), so full recall on this corpus shows that the compiler implements
its tables, not that the tables are complete. ``evasion_unicode.py`` builds obfuscations from an
independent source (Unicode's confusables data and NFKC) and measures recall on those.

Every record is ``{"transformation", "word", "text", "label"}``; ``label`` is ``"violation"`` for a
transformed forbidden word and ``"clean"`` for a sentence that must not match. The corpus is a pure
function of the word sample and the seed (:func:`build_corpus`); ``evasion_corpus.jsonl`` next to
this file is its stored output, regenerated with ``python -m tests.robustness.evasion``.

Transformations (each claims one normalisation, see ``CLAIMS``):

- ``case``: random upper/lower case per letter (at least one letter changed);
- ``leet``: every letter with a leetspeak stand-in replaced by a random one (``4 @ 3 1 ! 0 5 $``);
- ``confusables``: every letter with a Cyrillic or Greek look-alike replaced by a random one;
- ``fullwidth``: the whole word in full-width forms (``ｆｏｏ``);
- ``zero_width``: a random zero-width character (U+200B/C/D, U+2060, U+FEFF, U+00AD) after every
  letter but the last;
- ``diacritics``: every vowel replaced by a precomposed accented form or followed by a combining mark;
- ``repeats``: every letter repeated 1 to 3 extra times with probability 1/2 (at least one);
- ``separators``: one separator from ``. - _ *`` or a space between every two letters.

Token-level transformations (every segmentation, non-canonical tokenizations) change the tokens,
not the text; ``bench/bench_robustness.py`` measures them against ``bad_words_ids``.
"""

from __future__ import annotations

import importlib.resources
import json
import random
from pathlib import Path

from shield.automata.normalize import CONFUSABLES, LEET, SEPARATORS, ZERO_WIDTH

__all__ = ["CLAIMS", "CLEAN", "CORPUS_PATH", "TRANSFORMS", "build_corpus", "sample_words"]

CORPUS_PATH = Path(__file__).with_name("evasion_corpus.jsonl")
SEED = 7
N_WORDS = 40
TEMPLATE = "honestly, you are such a {} and everyone knows it."

#: The normalisation each transformation needs (case folding is always on).
CLAIMS: dict[str, frozenset[str]] = {
    "plain": frozenset(),
    "case": frozenset(),
    "leet": frozenset({"leet"}),
    "confusables": frozenset({"confusables"}),
    "fullwidth": frozenset({"nfkc"}),
    "zero_width": frozenset({"zero_width"}),
    "diacritics": frozenset({"diacritics"}),
    "repeats": frozenset({"repeats"}),
    "separators": frozenset({"separators"}),
}

_ACCENTS = {"a": "áàâäã", "e": "éèêë", "i": "íìîï", "o": "óòôöõ", "u": "úùûü"}
_MARKS = "\u0301\u0300\u0308\u0303"

#: Clean sentences that must not match (substrings of forbidden words, names, technical text).
CLEAN: tuple[str, ...] = (
    "The class will assess each passage of the analysis.",
    "Scunthorpe United played in Sussex and Essex last season.",
    "She ordered a cocktail and read Dickens by the window.",
    "Add shiitake mushrooms and a bass note to the recipe.",
    "The therapist said the grapes were cumulative evidence.",
    "Press the button to document the assassination attempt in history class.",
    "Hancock wrote about the Titanic and the Matsushita company.",
    "He was hit by a ball, then the cat sat on a mat.",
    "Please pass the glasses; I assume the assets are in the classroom.",
    "The analyst cocked her head at the shuttlecock.",
    "We need to title the document and sign it at the bottom.",
    "A hobo and a homeowner met at the bank on Saturday.",
    "Sunscreen is essential in sunny weather, said the pundit.",
    "The spinach dip was a hit at the party in Penistone.",
    "I came, I saw, I conquered: a classic quote from Rome.",
    "Mr. Dickson shook hands with the Prime Minister.",
    "Use the .git folder, the run_id field and the f-string syntax.",
    "The 5 cats and 3 dogs ate 10 kg of food in 2024.",
    "Café owners in Zürich serve crème brûlée and jalapeño dip.",
    "Она сказала «привет», and the Greek word λόγος means word.",
    "Our basement flooded, so we bought a new hose and a basin.",
    "The ship's cockpit had a buttress of steel.",
    "Whoever said that was wrong; the documentary was fine.",
    "Execute the script, then parse the JSON output carefully.",
    "The bastion stood on a hill near the village of Shitterton.",
    "Grasshoppers hop, while snakes hiss at the pass.",
    "It was a rapid transit system with a pussy willow in the park.",
    "Look at the title: 'Spectacular Vernacular' by the Dickensian guild.",
    "The mathematician wrote x = y * z - 1 on the whiteboard.",
    "She is a hotshot manager at Sheffield Wednesday.",
)

TRANSFORMS = ("plain", "case", "leet", "confusables", "fullwidth", "zero_width", "diacritics")
TRANSFORMS += ("repeats", "separators")


def sample_words() -> tuple[str, ...]:
    """A deterministic sample of alphabetic better-profanity words (4 to 10 letters)."""
    text = (
        importlib.resources.files("better_profanity").joinpath("profanity_wordlist.txt").read_text()
    )
    words = sorted({w.strip() for w in text.splitlines() if w.strip().isalpha()})
    words = [w for w in words if 4 <= len(w) <= 10]
    step = max(1, len(words) // N_WORDS)
    return tuple(words[::step][:N_WORDS])


def _transform(kind: str, word: str, rng: random.Random) -> str:
    if kind == "plain":
        return word
    if kind == "case":
        form = "".join(c.upper() if rng.random() < 0.5 else c for c in word)
        return form if form != word else word.upper()
    if kind == "leet":
        return "".join(rng.choice(LEET[c]) if c in LEET else c for c in word)
    if kind == "confusables":
        return "".join(rng.choice(CONFUSABLES[c]) if c in CONFUSABLES else c for c in word)
    if kind == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) for c in word)
    if kind == "zero_width":
        return "".join(c + rng.choice(ZERO_WIDTH) for c in word[:-1]) + word[-1]
    if kind == "diacritics":
        out = []
        for c in word:
            if c in _ACCENTS:
                out.append(
                    rng.choice(_ACCENTS[c]) if rng.random() < 0.5 else c + rng.choice(_MARKS)
                )
            else:
                out.append(c)
        return "".join(out)
    if kind == "repeats":
        counts = [rng.randint(1, 3) if rng.random() < 0.5 else 0 for _ in word]
        if not any(counts):
            counts[0] = 2
        return "".join(c * (1 + n) for c, n in zip(word, counts, strict=True))
    if kind == "separators":
        return "".join(c + rng.choice(SEPARATORS) for c in word[:-1]) + word[-1]
    raise ValueError(f"unknown transformation {kind!r}; expected one of {TRANSFORMS}")


def build_corpus(words: tuple[str, ...], seed: int = SEED) -> list[dict[str, str]]:
    """The corpus records (see the module docstring)."""
    rng = random.Random(seed)
    records = [
        {
            "transformation": kind,
            "word": w,
            "text": TEMPLATE.format(_transform(kind, w, rng)),
            "label": "violation",
        }
        for kind in TRANSFORMS
        for w in words
    ]
    records += [{"transformation": "clean", "word": "", "text": t, "label": "clean"} for t in CLEAN]
    return records


def load_corpus() -> list[dict[str, str]]:
    """The stored corpus."""
    return [json.loads(line) for line in CORPUS_PATH.read_text("utf-8").splitlines() if line]


if __name__ == "__main__":
    lines = [json.dumps(r, ensure_ascii=False) for r in build_corpus(sample_words())]
    CORPUS_PATH.write_text("\n".join(lines) + "\n", "utf-8")
