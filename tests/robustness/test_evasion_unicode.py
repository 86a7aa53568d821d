"""Recall of the library toxicity spec on obfuscations built from Unicode's data, not our tables.

The corpus (``evasion_unicode.py``) takes look-alikes from Unicode's confusables data as the
``confusable-homoglyphs`` package ships it, and compatibility forms from ``unicodedata``'s NFKC.
The spec promises its core words through "look-alike letters from other scripts" and "full-width
and other compatibility forms"; the compiler's hand-written tables fall short of Unicode's data,
so recall is below 100% today. Each class and script group is guarded twice:

- a floor at the measured recall less about one point (a regression fails the suite);
- the 100% target as ``xfail(strict=True, raises=KnownGap)``: the test raises :class:`KnownGap`
  while the gap exists, and turns into a failure (XPASS) once the tables cover Unicode's data, so
  that the floors are raised then. Any other failure inside it (a broken scenario) is a failure.

Every test first asserts its scenario: the corpus is non-empty, really obfuscated, and built from
the package's data; plain words are flagged and the template is not.
"""

from __future__ import annotations

import ast
import importlib.metadata
import random
import unicodedata
from pathlib import Path

import pytest

import shield
import specs
from tests.robustness import evasion_unicode as eu

#: One xdist worker runs the whole module, so the spec and the corpus are compiled and scanned once.
pytestmark = pytest.mark.xdist_group("evasion_unicode")


class KnownGap(Exception):
    """Recall below the spec's promise: expected until the tables come from Unicode's data."""


#: The data the floors were measured with (``python -m tests.robustness.evasion_unicode``).
PACKAGE_VERSION = "3.3.1"

#: Recall floors per class: measured value (in the comment) less about one point.
CLASS_FLOORS: dict[str, float] = {
    "confusable_single": 0.66,  # 2750 / 4102 = 67.0%
    "confusable_single_capital": 0.58,  # 2783 / 4686 = 59.4%
    "confusable_one_script": 0.37,  # 104 / 270 = 38.5%
    "confusable_one_script_capital": 0.18,  # 83 / 431 = 19.3%
    "confusable_all_letters": 0.24,  # 76 / 300 = 25.3%
    "confusable_mixed_scripts": 0.25,  # 78 / 300 = 26.0%
    "nfkc_single": 0.95,  # 2816 / 2911 = 96.7%
    "nfkc_single_capital": 0.91,  # 2675 / 2902 = 92.2%
    "nfkc_one_style": 0.92,  # 817 / 878 = 93.1%
    "nfkc_mixed": 0.80,  # 244 / 300 = 81.3%
}

#: Recall floors of single-letter substitutions (lower case and capitals) per script group.
SCRIPT_FLOORS: dict[str, float] = {
    "Cyrillic": 0.86,  # 245 / 282 = 86.9%
    "Greek": 0.74,  # 183 / 243 = 75.3%
    "Armenian": 0.66,  # 59 / 87 = 67.8%
    "Mathematical alphanumeric": 0.81,  # 4309 / 5239 = 82.2%
    "Full-width": 0.93,  # 215 / 228 = 94.3%
    "Common (letterlike, symbols)": 0.55,  # 243 / 428 = 56.8%
    "Latin (non-ASCII)": 0.15,  # 68 / 408 = 16.7%
}

#: The same per NFKC family; ``None`` marks a family caught in full today (asserted exactly).
FAMILY_FLOORS: dict[str, float | None] = {
    "mathematical alphanumeric": None,  # 4171 / 4171
    "full-width": None,  # 334 / 334
    "letterlike, other": None,  # 264 / 264
    "circled, squared": 0.66,  # 355 / 526 = 67.5%
    "superscript, subscript, modifier": 0.81,  # 363 / 442 = 82.1%
    "Roman numeral": 0.04,  # 4 / 76 = 5.3%
}

#: Obfuscated spellings of words with a forbidden word inside that are flagged: 558 / 3730 = 15.0%.
EMBEDDING_CEILING = 0.16


@pytest.fixture(scope="module")
def guard() -> shield.Shield:
    return shield.compile(specs.load_library("toxicity"))


@pytest.fixture(scope="module")
def corpus(guard: shield.Shield) -> eu.Measurement:
    return eu.measure(guard, eu.all_spellings(eu.core_words()))


@pytest.fixture(scope="module")
def clean(guard: shield.Shield) -> eu.Measurement:
    return eu.measure(guard, eu.all_spellings(eu.CLEAN_WORDS))


@pytest.fixture(scope="module")
def embedding(guard: shield.Shield) -> eu.Measurement:
    return eu.measure(guard, eu.all_spellings(eu.EMBEDDING_WORDS))


def _recall(m: eu.Measurement, keep) -> tuple[int, int]:
    hits, total = m.count(keep)
    assert total > 0, "the scenario is empty"
    return hits, total


# --- the corpus ------------------------------------------------------------------------------------


def test_the_corpus_source_is_the_package_and_unicodedata_not_our_tables() -> None:
    tree = ast.parse(Path(eu.__file__).read_text("utf-8"))
    builders = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "main")]
    imported = set()
    for node in (n for top in builders for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    # Only main() (which prints the table) imports shield, to compile the spec.
    assert {"confusable_homoglyphs", "confusable_homoglyphs.utils", "unicodedata"} <= imported
    assert [m for m in imported if m.split(".")[0] == "shield"] == []
    assert importlib.metadata.version("confusable-homoglyphs") == PACKAGE_VERSION
    # Facts of Unicode's confusables.txt, read through the package.
    assert eu.skeleton("a") == "a" and eu.skeleton("m") == "rn" and eu.skeleton("I") == "l"
    assert {"\u0430", "\u03b1", "\U0001d41a"} <= {g.char for g in eu.lookalikes("a")}
    assert {g.group for g in eu.lookalikes("o")} >= {"Cyrillic", "Greek", "Armenian"}
    assert "\uff46" in {g.char for g in eu.nfkc_forms("f")}  # FULLWIDTH LATIN SMALL LETTER F


def test_the_corpus_is_non_trivial_and_really_obfuscated(corpus: eu.Measurement) -> None:
    words = set(eu.core_words())
    assert len(words) == 30
    for cls in eu.CLASSES:
        assert sum(s.cls == cls for s in corpus.spellings) >= 250, cls
    for s in corpus.spellings:
        assert s.word.lower() in words
        assert s.text != s.word and not s.text.isascii() and len(s.text) == len(s.word)
        assert s.positions and len(s.positions) == len(s.glyphs)
        for i, c in enumerate(s.text):
            assert c == (s.glyphs[s.positions.index(i)].char if i in s.positions else s.word[i])
        for i, g in zip(s.positions, s.glyphs, strict=True):
            assert not g.char.isascii() and g.name and g.group
            if s.cls in eu.NFKC_CLASSES:
                assert unicodedata.normalize("NFKC", g.char) == s.word[i]
            else:
                assert eu.skeleton(g.char) == eu.skeleton(s.word[i])
        if s.cls in eu.NFKC_CLASSES:
            assert unicodedata.normalize("NFKC", s.text) == s.word
    groups = {s.group for s in corpus.spellings if s.cls == "confusable_single"}
    assert {"Cyrillic", "Greek", "Armenian", "Mathematical alphanumeric"} <= groups
    assert len(groups) >= 20


def test_the_corpus_reaches_beyond_our_tables(corpus: eu.Measurement) -> None:
    from shield.automata.normalize import CONFUSABLES  # compared with, never used to build

    ours = {c for chars in CONFUSABLES.values() for c in chars}
    theirs = {g.char for s in corpus.spellings if s.cls in eu.CONFUSABLE_CLASSES for g in s.glyphs}
    cyrillic_greek = {
        g.char
        for s in corpus.spellings
        if s.cls in eu.CONFUSABLE_CLASSES
        for g in s.glyphs
        if g.group in ("Cyrillic", "Greek")
    }
    assert len(theirs - ours) > 500
    assert cyrillic_greek - ours  # Unicode lists Cyrillic/Greek look-alikes that we do not


def test_plain_words_are_flagged_and_the_template_is_not(guard: shield.Shield) -> None:
    words = eu.core_words()
    plain = eu.measure(guard, [*words, *(w.upper() for w in words), "friend", "neighbour"])
    assert plain.flagged == (True,) * (2 * len(words)) + (False, False)
    assert plain.stray == ()


def test_one_scan_of_joined_lines_matches_each_line_alone(
    guard: shield.Shield, corpus: eu.Measurement
) -> None:
    rng = random.Random(3)
    sample = rng.sample(range(len(corpus.spellings)), 300)
    alone = [
        guard.first_violation(eu.TEMPLATE.format(corpus.spellings[i].text).encode(), final=True)
        for i in sample
    ]
    assert sum(corpus.flagged[i] for i in sample) > 50
    assert sum(not corpus.flagged[i] for i in sample) > 50
    assert [v is not None for v in alone] == [corpus.flagged[i] for i in sample]
    assert corpus.stray == ()


# --- recall ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", eu.CLASSES)
def test_recall_per_class_stays_at_its_floor(corpus: eu.Measurement, cls: str) -> None:
    hits, total = _recall(corpus, lambda s: s.cls == cls)
    assert hits / total >= CLASS_FLOORS[cls], f"{cls}: {hits}/{total}"


@pytest.mark.parametrize("cls", eu.CLASSES)
@pytest.mark.xfail(
    strict=True,
    raises=KnownGap,
    reason="the compiler's hand-written confusables and NFKC tables miss look-alikes and "
    "compatibility forms that Unicode's data lists; another issue replaces them",
)
def test_recall_per_class_reaches_the_promised_100_percent(
    corpus: eu.Measurement, cls: str
) -> None:
    hits, total = _recall(corpus, lambda s: s.cls == cls)
    if hits < total:
        missed = [s.text for s, f in zip(corpus.spellings, corpus.flagged, strict=True) if not f]
        raise KnownGap(f"{cls}: {hits}/{total}; e.g. {missed[:5]}")


@pytest.mark.parametrize("group", sorted(SCRIPT_FLOORS))
def test_recall_per_script_stays_at_its_floor(corpus: eu.Measurement, group: str) -> None:
    pair = eu.CONFUSABLE_CLASSES[:2]
    hits, total = _recall(corpus, lambda s: s.cls in pair and s.group == group)
    assert hits / total >= SCRIPT_FLOORS[group], f"{group}: {hits}/{total}"


@pytest.mark.parametrize("group", ["Cyrillic", "Greek", "Armenian", "Mathematical alphanumeric"])
@pytest.mark.xfail(
    strict=True,
    raises=KnownGap,
    reason="the hand-written table lists one or two look-alikes per letter and script",
)
def test_recall_per_script_reaches_the_promised_100_percent(
    corpus: eu.Measurement, group: str
) -> None:
    pair = eu.CONFUSABLE_CLASSES[:2]
    hits, total = _recall(corpus, lambda s: s.cls in pair and s.group == group)
    if hits < total:
        raise KnownGap(f"{group}: {hits}/{total}")


@pytest.mark.parametrize("family", sorted(FAMILY_FLOORS))
def test_recall_per_nfkc_family(corpus: eu.Measurement, family: str) -> None:
    pair = eu.NFKC_CLASSES[:2]
    hits, total = _recall(corpus, lambda s: s.cls in pair and s.group == family)
    floor = FAMILY_FLOORS[family]
    if floor is None:
        assert hits == total, f"{family}: {hits}/{total}"
    else:
        assert hits / total >= floor, f"{family}: {hits}/{total}"


@pytest.mark.parametrize("family", sorted(f for f, floor in FAMILY_FLOORS.items() if floor))
@pytest.mark.xfail(
    strict=True,
    raises=KnownGap,
    reason="the compiler's NFKC table scans a fixed list of blocks: it lacks Roman numerals "
    "(U+2160..), squared letters (U+1F130..) and most modifier letters (U+02B0.., U+1D9C..)",
)
def test_recall_per_nfkc_family_reaches_the_promised_100_percent(
    corpus: eu.Measurement, family: str
) -> None:
    pair = eu.NFKC_CLASSES[:2]
    hits, total = _recall(corpus, lambda s: s.cls in pair and s.group == family)
    if hits < total:
        raise KnownGap(f"{family}: {hits}/{total}")


# --- false positives -------------------------------------------------------------------------------


def _forbidden_inside(word: str) -> list[str]:
    spec = specs.load_library("toxicity")
    lists = [r.words for r in spec.rules if getattr(r, "words", None)]
    return [w for words in lists for w in words if w.lower() in word]


def test_obfuscated_clean_words_are_not_flagged(clean: eu.Measurement) -> None:
    assert [w for w in eu.CLEAN_WORDS if _forbidden_inside(w)] == []
    assert clean.count(lambda s: s.word.lower() in eu.CLEAN_WORDS)[1] > 10_000
    assert all(not s.text.isascii() and s.text != s.word for s in clean.spellings)
    for cls in eu.CLASSES:
        assert clean.count(lambda s, c=cls: s.cls == c)[1] > 0, cls
    flagged = [s.text for s, f in zip(clean.spellings, clean.flagged, strict=True) if f]
    assert flagged == []
    assert clean.stray == ()


def test_obfuscating_next_to_a_forbidden_word_inside_a_clean_word_stays_rare(
    embedding: eu.Measurement,
) -> None:
    assert all(_forbidden_inside(w) for w in eu.EMBEDDING_WORDS)
    hits, total = _recall(embedding, lambda s: True)
    assert hits > 0  # e.g. "cockρit": the look-alike ends the word "cock" for whole-word matching
    assert hits / total <= EMBEDDING_CEILING, f"{hits}/{total}"


@pytest.mark.xfail(
    strict=True,
    raises=KnownGap,
    reason="whole-word matching counts only ASCII [A-Za-z0-9_] as word characters, so a "
    "look-alike letter next to 'cock' in 'cockpit' ends the word",
)
def test_obfuscating_a_clean_word_never_exposes_a_forbidden_word_inside(
    embedding: eu.Measurement,
) -> None:
    hits, total = _recall(embedding, lambda s: True)
    if hits:
        flagged = [s.text for s, f in zip(embedding.spellings, embedding.flagged, strict=True) if f]
        raise KnownGap(f"{hits}/{total} flagged; e.g. {flagged[:5]}")
