"""Recall of the library toxicity spec on obfuscations built from Unicode's data.

The corpus (``evasion_unicode.py``) takes look-alikes from Unicode's confusables data as the
``confusable-homoglyphs`` package ships it, and compatibility forms from ``unicodedata``'s NFKC.
The spec promises its core words through "look-alike letters from other scripts" and "full-width
and other compatibility forms". The compiler's tables are generated from the same data
(``scripts/generate_confusables.py``, UTS #39 ``confusables.txt`` 13.0.0) and computed from
``unicodedata``, so recall is 100% in every class, script group and NFKC family, asserted exactly.
Whole-word matching counts look-alike letters as word characters, so obfuscating a clean word
never exposes a forbidden word inside it (``cockρit``).

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


#: The data the corpus is built from (``python -m tests.robustness.evasion_unicode``).
PACKAGE_VERSION = "3.3.1"

#: Script groups and NFKC families that must be present in the corpus (each caught in full).
SCRIPT_GROUPS = (
    "Cyrillic",
    "Greek",
    "Armenian",
    "Mathematical alphanumeric",
    "Full-width",
    "Common (letterlike, symbols)",
    "Latin (non-ASCII)",
)
NFKC_FAMILIES = (
    "mathematical alphanumeric",
    "full-width",
    "letterlike, other",
    "circled, squared",
    "superscript, subscript, modifier",
    "Roman numeral",
)


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


def test_the_compiler_tables_come_from_the_same_data(corpus: eu.Measurement) -> None:
    from shield.automata import confusables_data  # compared with, never used to build
    from shield.automata.normalize import CONFUSABLES

    assert confusables_data.CONFUSABLES_VERSION == "13.0.0"
    assert PACKAGE_VERSION in confusables_data.SOURCE
    assert CONFUSABLES is confusables_data.LOOKALIKES
    glyphs = {
        (s.word[i], g.char)
        for s in corpus.spellings
        if s.cls in eu.CONFUSABLE_CLASSES
        for i, g in zip(s.positions, s.glyphs, strict=True)
    }
    assert len(glyphs) > 1000
    assert [(c, g) for c, g in glyphs if g not in CONFUSABLES[c]] == []


def test_plain_words_are_flagged_and_the_template_is_not(guard: shield.Shield) -> None:
    words = eu.core_words()
    plain = eu.measure(guard, [*words, *(w.upper() for w in words), "friend", "neighbour"])
    assert plain.flagged == (True,) * (2 * len(words)) + (False, False)
    assert plain.stray == ()


def test_one_scan_of_joined_lines_matches_each_line_alone(
    guard: shield.Shield, corpus: eu.Measurement, clean: eu.Measurement
) -> None:
    rng = random.Random(3)
    pairs = [(corpus, i) for i in rng.sample(range(len(corpus.spellings)), 150)]
    pairs += [(clean, i) for i in rng.sample(range(len(clean.spellings)), 150)]
    alone = [
        guard.first_violation(eu.TEMPLATE.format(m.spellings[i].text).encode(), final=True)
        for m, i in pairs
    ]
    assert sum(m.flagged[i] for m, i in pairs) > 50
    assert sum(not m.flagged[i] for m, i in pairs) > 50
    assert [v is not None for v in alone] == [m.flagged[i] for m, i in pairs]
    assert corpus.stray == ()


# --- recall ----------------------------------------------------------------------------------------


def _missed(m: eu.Measurement, keep) -> list[str]:
    return [s.text for s, f in zip(m.spellings, m.flagged, strict=True) if keep(s) and not f]


@pytest.mark.parametrize("cls", eu.CLASSES)
def test_recall_per_class_is_100_percent(corpus: eu.Measurement, cls: str) -> None:
    hits, total = _recall(corpus, lambda s: s.cls == cls)
    assert total >= 250
    assert hits == total, (
        f"{cls}: {hits}/{total}; e.g. {_missed(corpus, lambda s: s.cls == cls)[:5]}"
    )


@pytest.mark.parametrize("group", SCRIPT_GROUPS)
def test_recall_per_script_is_100_percent(corpus: eu.Measurement, group: str) -> None:
    pair = eu.CONFUSABLE_CLASSES[:2]
    hits, total = _recall(corpus, lambda s: s.cls in pair and s.group == group)
    assert hits == total, f"{group}: {hits}/{total}"


@pytest.mark.parametrize("family", NFKC_FAMILIES)
def test_recall_per_nfkc_family_is_100_percent(corpus: eu.Measurement, family: str) -> None:
    pair = eu.NFKC_CLASSES[:2]
    hits, total = _recall(corpus, lambda s: s.cls in pair and s.group == family)
    assert hits == total, f"{family}: {hits}/{total}"


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


def test_obfuscating_a_clean_word_never_exposes_a_forbidden_word_inside(
    embedding: eu.Measurement,
) -> None:
    assert all(_forbidden_inside(w) for w in eu.EMBEDDING_WORDS)
    hits, total = _recall(embedding, lambda s: True)
    assert total > 1000
    # The scenario: with a neutral letter (not a look-alike) at the same positions, the word
    # inside is exposed ("cock中it"), so the look-alikes are what keeps these words whole.
    assert embedding.count(lambda s: True, of="baseline")[0] > 100
    flagged = [s.text for s, f in zip(embedding.spellings, embedding.flagged, strict=True) if f]
    assert flagged == [], f"{hits}/{total} flagged; e.g. {flagged[:5]}"
