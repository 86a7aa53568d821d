"""Extract ``alt-profanity-check``'s model into ``shield/data/profanity_check.npz`` as plain arrays.

The ``profanity-check`` classifier is a TF-IDF vectorizer followed by five linear SVMs, each
calibrated with a sigmoid, their probabilities averaged (scikit-learn's
``CalibratedClassifierCV``). The package ships it as a pickle, and unpickling it imports
scikit-learn and SciPy: about 1.5 s of every ``shield generate`` start. The runtime
(:mod:`shield.classifiers`) scores from the arrays written here instead, so neither the package
nor scikit-learn is needed to run a spec; only this script and the equality test need them.

Written (one checksummed entry of :mod:`shield.store`, key ``profanity-check``):

* ``words``: the vectorizer's vocabulary, UTF-8, one word per line, in feature-index order;
* ``idf``: float64 [F], the inverse document frequencies;
* ``coef``: float64 [M, F], ``intercept``, ``a``, ``b``: float64 [M], per member the SVM's
  weights and intercept and the sigmoid calibration ``p = expit(-(a f + b))``;
* metadata: the package's name, version and license, scikit-learn's version, the token pattern.

The script refuses a model of any other shape (another analyzer, n-grams, sublinear tf, a
different calibration, ...): the array scorer implements exactly this one.

Usage (from the repository root, with ``alt-profanity-check`` installed)::

    .venv/bin/python scripts/extract_profanity_check.py          # rewrite the arrays
    .venv/bin/python scripts/extract_profanity_check.py --check  # exit 1 if they are stale

The package is MIT-licensed: Copyright (c) 2018 Victor Zhou, 2021 Menelaos Kotoglou, and
Dimitrios Mistriotis (the notice is stored in the entry's metadata).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shield.classifiers import PROFANITY_ARRAYS, PROFANITY_KEY  # noqa: E402
from shield.store import read_entry, write_entry  # noqa: E402

PACKAGE = "alt-profanity-check"
LICENSE = (
    "MIT License. Copyright (c) 2018 Victor Zhou, 2021 Menelaos Kotoglou, and Dimitrios "
    "Mistriotis. Permission is hereby granted, free of charge, to any person obtaining a copy of "
    "this software and associated documentation files, to deal in the Software without "
    "restriction, subject to including the copyright and permission notice."
)
#: The vectorizer settings the array scorer implements; any other value is refused.
EXPECTED_VECTORIZER = {
    "analyzer": "word",
    "binary": False,
    "input": "content",
    "lowercase": True,
    "ngram_range": (1, 1),
    "norm": "l2",
    "preprocessor": None,
    "strip_accents": None,
    "sublinear_tf": False,
    "tokenizer": None,
    "use_idf": True,
}


def extract() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The model's metadata and arrays.

    Raises:
        SystemExit: the installed model is not of the shape the array scorer implements.
    """
    from profanity_check import profanity_check as package

    vectorizer, model = package.vectorizer, package.model
    params = vectorizer.get_params()
    wrong = {k: params[k] for k, v in EXPECTED_VECTORIZER.items() if params[k] != v}
    if wrong or list(model.classes_) != [0, 1]:
        raise SystemExit(f"unexpected vectorizer settings or classes: {wrong}, {model.classes_}")
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    words = sorted(vocabulary, key=vocabulary.__getitem__)
    if [vocabulary[w] for w in words] != list(range(len(words))) or any("\n" in w for w in words):
        raise SystemExit("the vocabulary's indices have gaps or a word holds a newline")
    stop = vectorizer.get_stop_words() or frozenset()
    if stop & set(words):  # stop words are dropped before counting; none may be a feature
        raise SystemExit(f"stop words in the vocabulary: {sorted(stop & set(words))[:5]}")
    coef, intercept, a, b = [], [], [], []
    for member in model.calibrated_classifiers_:
        (calibrator,) = member.calibrators
        weights = member.estimator.coef_
        if member.method != "sigmoid" or weights.shape != (1, len(words)):
            raise SystemExit("expected binary sigmoid-calibrated linear members")
        coef.append(weights[0])
        intercept.append(float(member.estimator.intercept_[0]))
        a.append(float(calibrator.a_))
        b.append(float(calibrator.b_))
    meta = {
        "package": PACKAGE,
        "version": importlib.metadata.version(PACKAGE),
        "scikit_learn": importlib.metadata.version("scikit-learn"),
        "license": LICENSE,
        "token_pattern": params["token_pattern"],
    }
    arrays = {
        "words": np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8),
        "idf": np.asarray(vectorizer.idf_, dtype=np.float64),
        "coef": np.asarray(coef, dtype=np.float64),
        "intercept": np.asarray(intercept, dtype=np.float64),
        "a": np.asarray(a, dtype=np.float64),
        "b": np.asarray(b, dtype=np.float64),
    }
    return meta, arrays


def main() -> int:
    """Write (or check) the arrays; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    meta, arrays = extract()
    if args.check:
        entry = read_entry(PROFANITY_ARRAYS, PROFANITY_KEY)
        same = entry.status == "hit" and dict(entry.meta) == meta
        same = same and all(np.array_equal(entry.arrays[k], v) for k, v in arrays.items())
        print(f"{PROFANITY_ARRAYS}: {'up to date' if same else 'STALE'}")
        return 0 if same else 1
    write_entry(PROFANITY_ARRAYS, PROFANITY_KEY, meta, arrays)
    print(f"wrote {PROFANITY_ARRAYS} ({meta['package']} {meta['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
