"""The bundled profanity-check scorer: scored from the arrays extracted into the repository, it
equals the package's own predict_prob to the bit (differential) without importing scikit-learn; a
missing or damaged arrays file fails closed; the extracted arrays are those of the installed
package."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profanity_check import predict_prob

from shield import classifiers
from shield.classifiers import score
from shield.errors import ClassifierError

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "data" / "rtp_challenging_dev.jsonl"
EVASION = ROOT / "tests" / "robustness" / "evasion_corpus.jsonl"


def _texts() -> list[str]:
    dev = [json.loads(line)["prompt"] for line in DEV.read_text(encoding="utf-8").splitlines()]
    corpus = [json.loads(line)["text"] for line in EVASION.read_text(encoding="utf-8").splitlines()]
    return [*dev, *corpus, "", " ", "Ünïcödé ☃ text", "a" * 5000]


def test_the_arrays_score_as_the_library_to_the_bit() -> None:
    texts = _texts()
    assert len(texts) > 300  # the scenario: a few hundred real and adversarial texts
    assert isinstance(classifiers._profanity_model(), classifiers._ProfanityArrays)
    ours = np.asarray(score("profanity-check", texts))
    np.testing.assert_array_equal(ours, predict_prob(texts))


@settings(deadline=None, max_examples=50)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=6))
def test_the_arrays_equal_the_library_on_any_text(texts: list[str]) -> None:
    np.testing.assert_array_equal(
        np.asarray(classifiers._profanity_check(texts)), predict_prob(texts)
    )


def test_scoring_imports_neither_scikit_learn_nor_scipy() -> None:
    code = (
        "import sys; from shield.classifiers import score; score('profanity-check', ['hi']); "
        "print(sorted(m for m in ('sklearn', 'scipy', 'profanity_check') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_missing_or_damaged_arrays_fail_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    broken = tmp_path / "profanity_check.npz"
    if damage == "truncated":
        broken.write_bytes(classifiers.PROFANITY_ARRAYS.read_bytes()[:1000])
    monkeypatch.setattr(classifiers, "PROFANITY_ARRAYS", broken)
    classifiers._profanity_model.cache_clear()
    try:
        with pytest.raises(ClassifierError, match="extract_profanity_check"):
            score("profanity-check", ["anything"])
    finally:
        classifiers._profanity_model.cache_clear()


def test_the_extracted_arrays_are_the_installed_packages() -> None:
    script = ROOT / "scripts" / "extract_profanity_check.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert "up to date" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0


def test_resolve_scorer_reads_the_rules_reference_form() -> None:
    assert classifiers.resolve_scorer("math:fsum") is math.fsum
    for bad in ("pkg..mod:f", "math:fsum\n", "math"):
        with pytest.raises(ClassifierError, match="'module:function'"):
            classifiers.resolve_scorer(bad)
