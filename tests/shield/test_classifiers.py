"""The bundled profanity-check scorer: its closed form equals the library's own predict_prob to
the bit (differential), and a model of another shape falls back to the library."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profanity_check import predict_prob
from profanity_check import profanity_check as package

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


def test_closed_form_is_used_and_equals_the_library_to_the_bit() -> None:
    assert isinstance(classifiers._profanity_model(), classifiers._LinearSigmoidEnsemble)
    texts = _texts()
    ours = np.asarray(score("profanity-check", texts))
    np.testing.assert_array_equal(ours, predict_prob(texts))


@settings(deadline=None, max_examples=50)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=6))
def test_closed_form_equals_the_library_on_any_text(texts: list[str]) -> None:
    np.testing.assert_array_equal(
        np.asarray(classifiers._profanity_check(texts)), predict_prob(texts)
    )


def test_an_unexpected_model_falls_back_to_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    class Opaque:
        """A model without the calibrated linear members the closed form reads."""

        classes_ = np.array([0, 1])

        def predict_proba(self, features: object) -> np.ndarray:
            rows = features.shape[0]  # type: ignore[attr-defined]
            return np.tile([0.25, 0.75], (rows, 1))

    classifiers._profanity_model.cache_clear()
    monkeypatch.setattr(package, "model", Opaque())
    try:
        assert classifiers._profanity_check(["anything", "else"]) == [0.75, 0.75]
    finally:
        classifiers._profanity_model.cache_clear()


def test_resolve_scorer_reads_the_rules_reference_form() -> None:
    assert classifiers.resolve_scorer("math:fsum") is math.fsum
    for bad in ("pkg..mod:f", "math:fsum\n", "math"):
        with pytest.raises(ClassifierError, match="'module:function'"):
            classifiers.resolve_scorer(bad)
