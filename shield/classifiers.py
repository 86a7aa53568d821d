"""Classifier scorers: host-side functions that map a batch of texts to probabilities.

A scorer is named in a spec as ``"profanity-check"`` (the bundled default: ``alt-profanity-check``'s
linear model over TF-IDF, scored from its arrays in ``shield/data/profanity_check.npz``, so neither
the package nor scikit-learn is imported at run time) or as ``"module:function"``, a function that
takes a list of texts and returns one probability in [0, 1] per text. Every answer is checked: a
scorer that raises, returns the wrong number of scores, or returns NaN or a value outside [0, 1]
makes the caller fail closed with :class:`~shield.errors.ClassifierError`; nothing is let through
on a scorer's failure.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shield.errors import ClassifierError
from shield.rules import PROFANITY_CHECK, SCORER_REFERENCE, ClassifierRule
from shield.store import read_entry

__all__ = [
    "BUILTIN_SCORERS",
    "PROFANITY_ARRAYS",
    "PROFANITY_KEY",
    "Judgement",
    "Scorer",
    "judge",
    "resolve_scorer",
    "score",
]

Scorer = Callable[[list[str]], Sequence[float]]


#: profanity-check's model as plain arrays (``scripts/extract_profanity_check.py`` writes it from
#: the ``alt-profanity-check`` package; its metadata records the package version and license).
PROFANITY_ARRAYS = Path(__file__).resolve().parent / "data" / "profanity_check.npz"
#: The key of that :mod:`shield.store` entry.
PROFANITY_KEY = "profanity-check"


@dataclass(frozen=True)
class _ProfanityArrays:
    """profanity-check's model scored from arrays: TF-IDF features, then per member a linear
    score ``f = x·w + c`` calibrated as ``expit(-(a f + b))``, averaged over the members.

    The arithmetic of scikit-learn's ``TfidfVectorizer.transform`` and
    ``CalibratedClassifierCV.predict_proba`` for this model, in the same order (counts times idf,
    an L2 norm summed in feature order, each dot product summed in feature order, members summed
    in order), so the probabilities equal the package's own (tested against it). Scoring needs
    neither scikit-learn nor SciPy: importing them to unpickle the package's model cost about
    1.5 s of every start.
    """

    token_pattern: re.Pattern[str]
    index: dict[str, int]  # word -> feature
    idf: tuple[float, ...]
    members: tuple[tuple[tuple[float, ...], float, float, float], ...]  # (coef, intercept, a, b)

    def probability(self, text: str) -> float:
        """The probability that ``text`` is offensive (the package's ``predict_prob``)."""
        counts: dict[int, int] = {}
        for token in self.token_pattern.findall(text.lower()):
            feature = self.index.get(token)  # stop words are never features (checked at extraction)
            if feature is not None:
                counts[feature] = counts.get(feature, 0) + 1
        features = sorted(counts)
        values = [float(counts[f]) * self.idf[f] for f in features]
        squares = 0.0
        for value in values:
            squares += value * value
        if squares != 0.0:
            norm = math.sqrt(squares)
            values = [value / norm for value in values]
        total = 0.0
        for coef, intercept, a, b in self.members:
            dot = 0.0
            for feature, value in zip(features, values, strict=True):
                dot += value * coef[feature]
            calibrated = -(a * (dot + intercept) + b)
            total += 1.0 / (1.0 + math.exp(-calibrated))  # SciPy's expit, as scikit-learn calls it
        return total / len(self.members)

    def __call__(self, texts: list[str]) -> Sequence[float]:
        return [self.probability(text) for text in texts]


@cache
def _profanity_model() -> _ProfanityArrays:
    """profanity-check's model, read once from :data:`PROFANITY_ARRAYS`.

    Raises:
        ClassifierError: the file is missing or fails its checks.
    """
    entry = read_entry(PROFANITY_ARRAYS, PROFANITY_KEY)
    if entry.status != "hit":
        raise ClassifierError(
            f"profanity-check: expected its model arrays in {PROFANITY_ARRAYS}; the file is "
            f"{entry.status} {entry.reason}. Regenerate it with "
            "scripts/extract_profanity_check.py (needs alt-profanity-check installed)."
        )
    arrays = entry.arrays
    words = arrays["words"].tobytes().decode("utf-8").split("\n")
    members = tuple(
        (tuple(coef), float(intercept), float(a), float(b))
        for coef, intercept, a, b in zip(
            arrays["coef"].tolist(),
            arrays["intercept"].tolist(),
            arrays["a"].tolist(),
            arrays["b"].tolist(),
            strict=True,
        )
    )
    return _ProfanityArrays(
        token_pattern=re.compile(str(entry.meta["token_pattern"])),
        index={word: i for i, word in enumerate(words)},
        idf=tuple(arrays["idf"].tolist()),
        members=members,
    )


def _profanity_check(texts: list[str]) -> Sequence[float]:
    return _profanity_model()(texts)


#: Scorers known by a short name.
BUILTIN_SCORERS: dict[str, Scorer] = {PROFANITY_CHECK: _profanity_check}


@cache
def resolve_scorer(name: str) -> Scorer:
    """The scorer function for a spec's classifier ``name``.

    Args:
        name: ``"profanity-check"`` or ``"module:function"``.

    Returns:
        A callable mapping a list of texts to one probability per text.

    Raises:
        ClassifierError: the name is neither a built-in nor an importable ``module:function``.

    Example:
        >>> scorer = resolve_scorer("profanity-check")
        >>> len(scorer(["hello", "world"]))
        2
    """
    if name in BUILTIN_SCORERS:
        return BUILTIN_SCORERS[name]
    reference = SCORER_REFERENCE.fullmatch(name)
    if reference is None:
        raise ClassifierError(
            f"classifier must be one of {sorted(BUILTIN_SCORERS)} or 'module:function'; got {name!r}"
        )
    module_name, function_name = reference["module"], reference["function"]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ClassifierError(
            f"classifier {name!r}: cannot import module {module_name!r} ({error}); install it or fix the name"
        ) from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ClassifierError(
            f"classifier {name!r}: module {module_name!r} has no callable {function_name!r}"
        )
    return function  # type: ignore[no-any-return]


def score(name: str, texts: Sequence[str]) -> list[float]:
    """Score ``texts`` with the scorer ``name``, checking the answer.

    Args:
        name: the scorer's name (see :func:`resolve_scorer`).
        texts: the texts to score; an empty batch scores nothing.

    Returns:
        One probability in [0, 1] per text.

    Raises:
        ClassifierError: the scorer raised, or answered with the wrong number of scores, a
            non-number, NaN, or a value outside [0, 1].
    """
    batch = list(texts)
    if not batch:
        return []
    scorer = resolve_scorer(name)
    try:
        raw = scorer(batch)
    except Exception as error:  # any scorer failure must stop generation, never pass text
        raise ClassifierError(
            f"classifier {name!r} raised {type(error).__name__}: {error}"
        ) from error
    try:
        scores = [float(value) for value in raw]
    except (TypeError, ValueError) as error:
        raise ClassifierError(
            f"classifier {name!r} must return one number per text; got {type(raw).__name__} ({error})"
        ) from error
    if len(scores) != len(batch):
        raise ClassifierError(
            f"classifier {name!r} must return {len(batch)} scores (one per text); got {len(scores)}"
        )
    for value in scores:
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ClassifierError(
                f"classifier {name!r} must return probabilities in [0, 1]; got {value!r}"
            )
    return scores


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """The verdict of one classifier rule on one text."""

    rule: str
    score: float
    violates: bool


def judge(rules: Sequence[ClassifierRule], texts: Sequence[str]) -> list[Judgement | None]:
    """Judge each text by every rule; the first violated rule per text, or None when all pass.

    Texts are batched per scorer, so each scorer is called once.

    Args:
        rules: the classifier rules to apply.
        texts: the windows to judge (sentences, token windows or whole responses).

    Returns:
        For each text, the :class:`Judgement` of the first rule (in spec order) whose score
        reaches its threshold, or None.

    Raises:
        ClassifierError: a scorer failed (see :func:`score`).
    """
    verdicts: list[Judgement | None] = [None] * len(texts)
    for rule in rules:
        pending = [i for i, v in enumerate(verdicts) if v is None and texts[i].strip()]
        scores = score(rule.scorer, [texts[i] for i in pending])
        for i, value in zip(pending, scores, strict=True):
            if value >= rule.threshold:
                verdicts[i] = Judgement(rule=rule.id, score=value, violates=True)
    return verdicts
