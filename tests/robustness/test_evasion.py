"""Self-consistency of the normalisations on the labelled evasion corpus (issue 7, part 1).

The corpus (``evasion.py``) is generated from the compiler's own tables (``CONFUSABLES``, ``LEET``,
``ZERO_WIDTH``, ``SEPARATORS`` of ``shield.automata.normalize``), so its 100% recall shows that
the compiler implements those tables, not that the tables cover real obfuscations. Recall on
obfuscations from an independent source (Unicode's confusables data, NFKC) is measured by
``test_evasion_unicode.py``. What this file does show on its own: without the normalisation the
transformed words mostly pass, the clean sentences never match, and every cut into tokens is
caught.
"""

from __future__ import annotations

import pytest

import shield
from shield.rules import NORMALIZATIONS, MatchOptions, WordsRule
from tests.robustness.evasion import (
    CLAIMS,
    CLEAN,
    TRANSFORMS,
    build_corpus,
    load_corpus,
    sample_words,
)
from tests.shield.helpers import Spec


def _guard(normalize: frozenset[str]) -> shield.Shield:
    match = MatchOptions(case_insensitive=True, whole_word=True, normalize=normalize)
    return shield.compile(Spec("evasion", (WordsRule(id="w", words=sample_words(), match=match),)))


def _caught(guard: shield.Shield, text: str) -> bool:
    return guard.first_violation(text.encode("utf-8"), final=True) is not None


def test_stored_corpus_is_the_generated_one() -> None:
    assert load_corpus() == build_corpus(sample_words())


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_compiler_implements_its_own_normalisation_tables(kind: str) -> None:
    """Words transformed with the compiler's own tables are caught (self-consistency only)."""
    guard = _guard(CLAIMS[kind])
    texts = [r["text"] for r in load_corpus() if r["transformation"] == kind]
    missed = [t for t in texts if not _caught(guard, t)]
    assert len(texts) == 40
    assert missed == []


@pytest.mark.parametrize("kind", ["leet", "confusables", "fullwidth", "repeats", "separators"])
def test_without_the_normalisation_the_evasion_mostly_passes(kind: str) -> None:
    guard = _guard(frozenset())
    texts = [r["text"] for r in load_corpus() if r["transformation"] == kind]
    assert sum(_caught(guard, t) for t in texts) < len(texts) // 2


@pytest.mark.parametrize(
    "normalize",
    [frozenset(), frozenset({"leet", "repeats"}), frozenset(NORMALIZATIONS - {"nfkc"})],
    ids=["none", "leet+repeats", "all-but-nfkc"],
)
def test_clean_sentences_do_not_match(normalize: frozenset[str]) -> None:
    guard = _guard(normalize)
    assert [t for t in CLEAN if _caught(guard, t)] == []


def test_every_segmentation_is_caught() -> None:
    guard = _guard(frozenset({"leet"}))
    text = next(r["text"] for r in load_corpus() if r["transformation"] == "leet").encode()
    third = len(text) // 3
    chunks = [text[:third], text[third : 2 * third], text[2 * third :]]
    lifted = guard.lift([bytes([b]) for b in range(256)] + chunks)
    for cut in range(1, len(text)):
        for pieces in ([text[:cut], text[cut:]], [text[i : i + 1] for i in range(len(text))]):
            state = lifted.initial.copy()
            for piece in pieces:
                for b in piece:
                    state = lifted.step_token(state, b)
            assert lifted.end_violates(state) or lifted.violating[0, state[0]]
    canonical = lifted.initial.copy()
    for tid in (256, 257, 258):
        canonical = lifted.step_token(canonical, tid)
    assert lifted.end_violates(canonical)
