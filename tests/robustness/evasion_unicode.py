"""An evasion corpus from sources independent of the compiler: Unicode's confusables, and NFKC.

``evasion.py`` builds its obfuscations from the compiler's own tables, so its 100% recall shows only
that the compiler implements those tables. This module builds obfuscations of the toxicity spec's
core words (``specs/library/profanity_core.txt``, part of the ``profanity`` rule) from two
sources that the compiler does not read:

- Unicode's confusables data (UTS #39 ``confusables.txt``) as the ``confusable-homoglyphs`` package
  ships it: ``confusables.json`` holds the mappings of ``confusables.txt`` 13.0.0, and
  ``categories.json`` the script of every code point (Scripts.txt 15.1). A code point stands for a
  Latin letter when their UTS #39 skeletons are equal: the skeleton of ``a`` is ``a`` and every
  code point that ``confusables.txt`` maps to ``a`` looks like it; the skeleton of ``m`` is ``rn``,
  that of capital ``I`` is ``l``. Marks, controls and separators are left out, and so is ASCII
  (``0`` for ``O`` is not an obfuscation the spec claims).
- Python's ``unicodedata``: every non-ASCII code point whose NFKC form is one Latin letter
  (mathematical alphanumerics, full-width, circled and squared letters, super- and subscripts,
  letterlike symbols, Roman numerals).

Nothing that builds the corpus imports ``shield`` (only :func:`main` does, to compile the spec it
measures). Every spelling keeps the code points it substituted, with their names and script groups,
for the report. The corpus is a pure function of the word list, the package's data,
``unicodedata`` and :data:`SEED`: single-letter substitutions are exhaustive (every position, every
look-alike), the other classes are seeded samples.

Transformation classes (the ``_capital`` classes spell the word in capitals and substitute
look-alikes of the capital letters):

- ``confusable_single`` / ``confusable_single_capital``: one letter replaced by one look-alike;
- ``confusable_one_script`` / ``confusable_one_script_capital``: for one script group, every letter
  that has a look-alike in it replaced by one (at least two letters), the rest left Latin;
- ``confusable_all_letters``: every letter replaced by a random look-alike from any script;
- ``confusable_mixed_scripts``: about half the letters replaced (at least two), the substitutes
  from at least two script groups, the rest left Latin;
- ``nfkc_single`` / ``nfkc_single_capital``: one letter replaced by one compatibility form;
- ``nfkc_one_style``: the whole word in one style (``MATHEMATICAL BOLD SMALL``, ``FULLWIDTH LATIN
  CAPITAL LETTER``, ...), for every style that has all its letters;
- ``nfkc_mixed``: every letter replaced by a random compatibility form of any style.

``python -m tests.robustness.evasion_unicode`` compiles the library toxicity spec and prints the
recall tables (``docs/robustness.md`` holds its output).
"""

from __future__ import annotations

import bisect
import itertools
import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from confusable_homoglyphs import categories
from confusable_homoglyphs.utils import load as load_package_data

#: The core word list (a word file of the library toxicity spec; read as a word file is).
CORE_FILE = Path(__file__).resolve().parents[2] / "specs" / "library" / "profanity_core.txt"

__all__ = [
    "CLASSES",
    "CLEAN_WORDS",
    "CONFUSABLE_CLASSES",
    "EMBEDDING_WORDS",
    "NFKC_CLASSES",
    "TEMPLATE",
    "Glyph",
    "Measurement",
    "Spelling",
    "all_spellings",
    "confusable_spellings",
    "core_words",
    "lookalikes",
    "measure",
    "nfkc_forms",
    "nfkc_spellings",
    "recall_tables",
    "skeleton",
]

SEED = 11
#: Samples per word for the seeded classes.
SAMPLES = 10
TEMPLATE = "you are a {}, honestly."
_OFFSET = TEMPLATE.index("{}")

CONFUSABLE_CLASSES = (
    "confusable_single",
    "confusable_single_capital",
    "confusable_one_script",
    "confusable_one_script_capital",
    "confusable_all_letters",
    "confusable_mixed_scripts",
)
NFKC_CLASSES = ("nfkc_single", "nfkc_single_capital", "nfkc_one_style", "nfkc_mixed")
CLASSES = CONFUSABLE_CLASSES + NFKC_CLASSES

#: Ordinary English words that share letters with the core words and contain no forbidden word of
#: the spec (nor one with repeated letters): none of their obfuscations may be flagged.
CLEAN_WORDS: tuple[str, ...] = (
    "duck",
    "luck",
    "dock",
    "fork",
    "shut",
    "shot",
    "shirt",
    "shift",
    "batch",
    "pitch",
    "ditch",
    "brick",
    "trick",
    "clock",
    "bastion",
    "dusk",
    "push",
    "whole",
    "wore",
    "wander",
    "price",
    "pique",
    "jackal",
    "dumbbell",
    "crab",
    "dawn",
    "slot",
    "retort",
    "figure",
    "bullet",
    "twin",
    "fiddle",
    "picture",
    "moth",
)

#: Ordinary words that contain a forbidden word of the spec (``cock``, ``tard``, ``ass``, ``tit``,
#: ``cum``, ``crap``). A look-alike next to the inner word must not expose it: whole-word matching
#: counts look-alike letters as word characters (a neutral letter such as ``中`` does expose it).
EMBEDDING_WORDS: tuple[str, ...] = (
    "cockpit",
    "custard",
    "pass",
    "title",
    "document",
    "scrap",
)

#: Characters that ``confusables.txt`` comments wrap right-to-left letters in (not part of a mapping).
_BIDI_MARKS = str.maketrans("", "", "\u200e\u200f")


@dataclass(frozen=True)
class Glyph:
    """One substituted code point.

    Attributes:
        char: the character.
        name: its Unicode name (from the package's data, or ``unicodedata`` for NFKC forms).
        group: its script group (see :func:`script_group`) or NFKC family (see :func:`nfkc_family`).
    """

    char: str
    name: str
    group: str

    @property
    def code(self) -> str:
        return f"U+{ord(self.char):04X}"


@dataclass(frozen=True)
class Spelling:
    """One obfuscated spelling of a word.

    Attributes:
        cls: the transformation class (one of :data:`CLASSES`).
        word: the plain word as written (lower case, or capitals for the ``_capital`` classes).
        text: the obfuscated word.
        glyphs: the substituted code points, in order.
        positions: their indices in ``text`` (each replaces one letter).
    """

    cls: str
    word: str
    text: str
    glyphs: tuple[Glyph, ...]
    positions: tuple[int, ...]

    @property
    def group(self) -> str:
        """The substitutes' group when they share one, else ``"mixed"``."""
        groups = {g.group for g in self.glyphs}
        return groups.pop() if len(groups) == 1 else "mixed"


# --- Unicode's confusables, from the package ------------------------------------------------------


@cache
def _confusables() -> tuple[dict[str, frozenset[str]], dict[str, str]]:
    """The package's mappings as an undirected graph (node → neighbours), and code point names."""
    neighbours: dict[str, set[str]] = defaultdict(set)
    names: dict[str, str] = {}
    for key, entries in load_package_data("confusables.json").items():
        a = key.translate(_BIDI_MARKS)
        for entry in entries:
            b = entry["c"].translate(_BIDI_MARKS)
            neighbours[a].add(b)
            neighbours[b].add(a)
            names[b] = entry["n"]
    return {k: frozenset(v) for k, v in neighbours.items()}, names


def skeleton(letter: str) -> str:
    """The UTS #39 prototype of ``letter`` in the package's data.

    ``confusables.txt`` maps each confusable code point to its prototype, and a prototype never maps
    further; the package stores each mapping in both directions. A code point that maps somewhere
    has exactly one neighbour, and that neighbour is a prototype: a sequence, or a code point that
    other code points map to as well.
    """
    graph, _ = _confusables()
    near = graph.get(letter, frozenset())
    if len(near) == 1:
        (other,) = near
        if len(other) > 1 or len(graph[other]) > 1:
            return other
    return letter


def script_group(char: str, name: str) -> str:
    """The reporting group of a look-alike: its Unicode script, with two blocks named apart.

    Mathematical alphanumerics (script Common) and full-width letters (script Latin) are their own
    groups; other Common code points are letterlike symbols and operators.
    """
    if name.startswith("MATHEMATICAL "):
        return "Mathematical alphanumeric"
    if name.startswith("FULLWIDTH "):
        return "Full-width"
    script = categories.alias(char)
    if script == "LATIN":
        return "Latin (non-ASCII)"
    if script == "COMMON":
        return "Common (letterlike, symbols)"
    return script.replace("_", " ").title()


@cache
def lookalikes(letter: str) -> tuple[Glyph, ...]:
    """The non-ASCII code points that Unicode's confusables data says look like ``letter``.

    A code point qualifies when its skeleton is the skeleton of ``letter``; marks (M*), separators
    (Z*) and controls/format characters (C*) are left out.
    """
    graph, names = _confusables()
    target = skeleton(letter)
    out = []
    for char in sorted(graph.get(target, frozenset()) | {target}):
        if len(char) != 1 or char.isascii() or skeleton(char) != target:
            continue
        if categories.category(char)[0] in "MZC":
            continue
        name = names.get(char) or unicodedata.name(char, f"U+{ord(char):04X}")
        out.append(Glyph(char, name, script_group(char, name)))
    return tuple(out)


# --- NFKC compatibility forms, from unicodedata --------------------------------------------------


def nfkc_family(name: str) -> str:
    """The reporting family of a compatibility form, from its name."""
    if name.startswith("MATHEMATICAL "):
        return "mathematical alphanumeric"
    if name.startswith("FULLWIDTH "):
        return "full-width"
    if any(word in name for word in ("CIRCLED", "SQUARED")):
        return "circled, squared"
    if any(word in name for word in ("SUPERSCRIPT", "SUBSCRIPT", "MODIFIER LETTER")):
        return "superscript, subscript, modifier"
    if "ROMAN NUMERAL" in name:
        return "Roman numeral"
    return "letterlike, other"


@cache
def _compatibility_table() -> dict[str, tuple[Glyph, ...]]:
    table: dict[str, list[Glyph]] = defaultdict(list)
    for cp in range(0x80, 0x110000):
        char = chr(cp)
        normal = unicodedata.normalize("NFKC", char)
        if len(normal) == 1 and normal.isascii() and normal.isalpha():
            name = unicodedata.name(char)
            table[normal].append(Glyph(char, name, nfkc_family(name)))
    return {k: tuple(v) for k, v in table.items()}


def nfkc_forms(letter: str) -> tuple[Glyph, ...]:
    """The non-ASCII code points whose NFKC normal form is exactly ``letter``."""
    return _compatibility_table().get(letter, ())


def _style(glyph: Glyph) -> str:
    """A compatibility form's style: its name less the letter (``MATHEMATICAL BOLD SMALL``)."""
    return glyph.name.rsplit(" ", 1)[0]


# --- spellings ------------------------------------------------------------------------------------


def core_words() -> tuple[str, ...]:
    """The 30 core words (``specs/library/profanity_core.txt``), part of the toxicity spec's
    ``profanity`` rule."""
    lines = (line.strip() for line in CORE_FILE.read_text("utf-8").splitlines())
    return tuple(dict.fromkeys(w for w in lines if w and not w.startswith("#")))


Forms = dict[str, tuple[Glyph, ...]]


def _spell(cls: str, word: str, picks: dict[int, Glyph]) -> Spelling:
    text = "".join(picks[i].char if i in picks else c for i, c in enumerate(word))
    order = sorted(picks)
    return Spelling(cls, word, text, tuple(picks[i] for i in order), tuple(order))


def _single(cls: str, word: str, forms: Forms) -> list[Spelling]:
    return [
        _spell(cls, word, {i: g}) for i, letter in enumerate(word) for g in forms.get(letter, ())
    ]


def _one_group(cls: str, word: str, forms: Forms, rng: random.Random) -> list[Spelling]:
    out = []
    for group in sorted({g.group for letter in word for g in forms.get(letter, ())}):
        picks = {}
        for i, letter in enumerate(word):
            options = [g for g in forms.get(letter, ()) if g.group == group]
            if options:
                picks[i] = rng.choice(options)
        if len(picks) >= 2:
            out.append(_spell(cls, word, picks))
    return out


def _all_letters(cls: str, word: str, forms: Forms, rng: random.Random) -> list[Spelling]:
    if not all(forms.get(letter) for letter in word):
        return []
    return [
        _spell(cls, word, {i: rng.choice(forms[letter]) for i, letter in enumerate(word)})
        for _ in range(SAMPLES)
    ]


def _mixed(cls: str, word: str, forms: Forms, rng: random.Random) -> list[Spelling]:
    out = []
    positions = [i for i, letter in enumerate(word) if forms.get(letter)]
    for _ in range(SAMPLES):
        for _attempt in range(100):
            picks = {i: rng.choice(forms[word[i]]) for i in positions if rng.random() < 0.5}
            if len(picks) >= 2 and len({g.group for g in picks.values()}) >= 2:
                out.append(_spell(cls, word, picks))
                break
    return out


def _one_style(cls: str, word: str, forms: Forms) -> list[Spelling]:
    styles: dict[str, dict[str, Glyph]] = defaultdict(dict)
    for letter in set(word):
        for g in forms.get(letter, ()):
            styles[_style(g)][letter] = g
    return [
        _spell(cls, word, {i: by_letter[c] for i, c in enumerate(word)})
        for _, by_letter in sorted(styles.items())
        if set(by_letter) == set(word)
    ]


def _dedupe(spellings: Iterable[Spelling]) -> list[Spelling]:
    seen: dict[tuple[str, str], Spelling] = {}
    for s in spellings:
        seen.setdefault((s.cls, s.text), s)
    return list(seen.values())


def _forms(words: Sequence[str], table: Callable[[str], tuple[Glyph, ...]]) -> Forms:
    return {c: table(c) for c in sorted({c for w in words for c in w + w.upper()})}


def confusable_spellings(words: Sequence[str], seed: int = SEED) -> list[Spelling]:
    """The confusables classes for ``words`` (lower-case ASCII words)."""
    rng = random.Random(seed)
    forms = _forms(words, lookalikes)
    out: list[Spelling] = []
    for word in words:
        out += _single("confusable_single", word, forms)
        out += _single("confusable_single_capital", word.upper(), forms)
        out += _one_group("confusable_one_script", word, forms, rng)
        out += _one_group("confusable_one_script_capital", word.upper(), forms, rng)
        out += _all_letters("confusable_all_letters", word, forms, rng)
        out += _mixed("confusable_mixed_scripts", word, forms, rng)
    return _dedupe(out)


def nfkc_spellings(words: Sequence[str], seed: int = SEED) -> list[Spelling]:
    """The NFKC classes for ``words`` (lower-case ASCII words)."""
    rng = random.Random(seed)
    forms = _forms(words, nfkc_forms)
    out: list[Spelling] = []
    for word in words:
        out += _single("nfkc_single", word, forms)
        out += _single("nfkc_single_capital", word.upper(), forms)
        out += _one_style("nfkc_one_style", word, forms)
        out += _one_style("nfkc_one_style", word.upper(), forms)
        out += _all_letters("nfkc_mixed", word, forms, rng)
    return _dedupe(out)


def all_spellings(words: Sequence[str]) -> list[Spelling]:
    """The confusables and NFKC spellings of ``words``, in class order."""
    return confusable_spellings(words) + nfkc_spellings(words)


# --- measuring ------------------------------------------------------------------------------------


#: What a look-alike is measured against: a letter that stands for no Latin letter. Spelled with it
#: at the same positions, a word is flagged only through a forbidden word left whole inside it.
NEUTRAL = "\u4e2d"  # CJK UNIFIED IDEOGRAPH-4E2D


@dataclass(frozen=True)
class Measurement:
    """What a shield found in a corpus.

    Attributes:
        spellings: the corpus.
        flagged: per spelling, whether a violation overlaps the obfuscated word.
        baseline: per spelling, whether it is flagged with :data:`NEUTRAL` at the substituted
            positions instead. A neutral letter is a non-word character, so it ends a word:
            ``fuck`` is flagged in ``fuck中ng``, while ``fuckιng`` is one word.
        rules: per spelling, the ids of the rules whose violations overlap it.
        stray: violations that overlap no obfuscated word (in the template): should be none.
    """

    spellings: tuple[Spelling, ...]
    flagged: tuple[bool, ...]
    baseline: tuple[bool, ...]
    rules: tuple[frozenset[str], ...]
    stray: tuple[Any, ...]

    def count(self, keep: Callable[[Spelling], bool], of: str = "flagged") -> tuple[int, int]:
        """(hits, total) over the spellings that ``keep`` accepts; ``of``: flagged or baseline."""
        hits = [h for s, h in zip(self.spellings, getattr(self, of), strict=True) if keep(s)]
        return sum(hits), len(hits)


def _scan_lines(guard: Any, texts: Sequence[str]) -> tuple[list[set[str]], list[Any]]:
    """Per text, the rules flagging it inside :data:`TEMPLATE`; and the violations outside it."""
    lines = [TEMPLATE.format(t) for t in texts]
    line_starts = list(itertools.accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
    rules: list[set[str]] = [set() for _ in texts]
    stray = []
    for v in guard.scan("\n".join(lines)):
        i = bisect.bisect_right(line_starts, v.start) - 1  # no violation crosses a newline
        start = line_starts[i] + _OFFSET
        if v.start < start + len(texts[i]) and v.end > start:
            rules[i].add(v.rule)
        else:
            stray.append(v)
    return rules, stray


def measure(guard: Any, spellings: Sequence[str | Spelling]) -> Measurement:
    """Scan every spelling, each inside :data:`TEMPLATE` on its own line, in one ``Shield.scan``.

    Lines are joined with newlines: no normalisation lets a match cross a newline, and a newline
    is a word boundary, so each line is judged as it would be alone (a test checks this). The
    neutral spellings (see :attr:`Measurement.baseline`) are scanned the same way.
    """
    items = [s if isinstance(s, Spelling) else Spelling("plain", s, s, (), ()) for s in spellings]
    rules, stray = _scan_lines(guard, [s.text for s in items])
    neutral = [
        "".join(NEUTRAL if i in s.positions else c for i, c in enumerate(s.word)) for s in items
    ]
    unique = sorted(set(neutral))
    neutral_rules, neutral_stray = _scan_lines(guard, unique)
    flagged_neutral = {t for t, r in zip(unique, neutral_rules, strict=True) if r}
    return Measurement(
        tuple(items),
        tuple(bool(r) for r in rules),
        tuple(t in flagged_neutral for t in neutral),
        tuple(frozenset(r) for r in rules),
        tuple(stray + neutral_stray),
    )


#: Groups with fewer spellings than this are one row of the tables.
FOLD_BELOW = 50
OTHER = "other"


def _pct(hits: int, total: int) -> str:
    return f"{100 * hits / total:.1f}%" if total else "–"


def recall_tables(m: Measurement) -> str:
    """The recall tables (Markdown): per class, per script group, per NFKC family."""
    out = [
        "| class | spellings | flagged | recall | baseline (neutral letter) |",
        "|---|--:|--:|--:|--:|",
    ]
    for cls in CLASSES:
        hits, total = m.count(lambda s, c=cls: s.cls == c)
        base = m.count(lambda s, c=cls: s.cls == c, of="baseline")
        out.append(f"| `{cls}` | {total} | {hits} | {_pct(hits, total)} | {_pct(*base)} |")
    for title, pair in (
        ("script group (confusables, one letter replaced)", CONFUSABLE_CLASSES[:2]),
        ("NFKC family (one letter replaced)", NFKC_CLASSES[:2]),
    ):
        out.append("")
        out.append(
            f"| {title} | code points | spellings | recall | lower case | capitals | baseline |"
        )
        out.append("|---|--:|--:|--:|--:|--:|--:|")
        sizes = Counter(s.group for s in m.spellings if s.cls in pair)
        small = frozenset(g for g, n in sizes.items() if n < FOLD_BELOW)
        rows = sorted(set(sizes) - small, key=lambda g: (-sizes[g], g))
        for group in [*rows, OTHER] if small else rows:

            def keep(
                s: Spelling, group: str = group, pair: tuple[str, ...] = pair, small=small
            ) -> bool:
                if s.cls not in pair:
                    return False
                return s.group in small if group == OTHER else s.group == group

            chars = {g.char for s in m.spellings if keep(s) for g in s.glyphs}
            low = m.count(lambda s, k=keep, c=pair[0]: k(s) and s.cls == c)
            cap = m.count(lambda s, k=keep, c=pair[1]: k(s) and s.cls == c)
            base = m.count(keep, of="baseline")
            both = m.count(keep)
            name = (
                f"{len(small)} other groups (< {FOLD_BELOW} spellings each)"
                if group == OTHER
                else group
            )
            out.append(
                f"| {name} | {len(chars)} | {both[1]} | {_pct(*both)} | {_pct(*low)} "
                f"| {_pct(*cap)} | {_pct(*base)} |"
            )
    return "\n".join(out)


def missed_glyphs(m: Measurement, classes: Sequence[str]) -> list[tuple[Glyph, int, int]]:
    """(glyph, spellings missed, spellings) for each single-substitution glyph missed at least once."""
    counts: dict[Glyph, list[int]] = defaultdict(lambda: [0, 0])
    for s, flagged in zip(m.spellings, m.flagged, strict=True):
        if s.cls in classes:
            (g,) = s.glyphs
            counts[g][1] += 1
            counts[g][0] += not flagged
    return sorted(
        ((g, a, b) for g, (a, b) in counts.items() if a), key=lambda x: (x[0].group, x[0].char)
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Print the recall tables; ``--missed`` also lists every look-alike missed at least once."""
    import argparse
    import importlib.metadata

    import shield  # to compile the spec that is measured; the corpus does not use it
    import specs

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--missed", action="store_true")
    args = parser.parse_args(argv)
    guard = shield.compile(specs.load_library("toxicity"))
    words = core_words()
    m = measure(guard, all_spellings(words))
    version = importlib.metadata.version("confusable-homoglyphs")
    print(f"{len(words)} core words of specs/library/toxicity.toml; ", end="")
    print(f"confusable-homoglyphs {version}; unicodedata {unicodedata.unidata_version}; ", end="")
    print(f"violations outside the words: {len(m.stray)}\n")
    print(recall_tables(m))
    for title, clean in (
        ("Clean words", CLEAN_WORDS),
        ("Words with a forbidden word inside", EMBEDDING_WORDS),
    ):
        c = measure(guard, all_spellings(clean))
        hits, total = c.count(lambda s: True)
        print(f"\n{title} ({len(clean)}): {hits} of {total} obfuscated spellings flagged", end="")
        print(f" ({_pct(hits, total)})")
    if args.missed:
        print("\nLook-alikes missed in single substitutions (spellings missed / spellings):")
        for g, a, b in missed_glyphs(m, CONFUSABLE_CLASSES[:2] + NFKC_CLASSES[:2]):
            print(f"  {g.code} {g.char} {g.name} [{g.group}] {a}/{b}")


if __name__ == "__main__":
    main()
