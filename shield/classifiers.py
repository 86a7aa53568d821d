"""Classifier scorers: host-side functions that map a batch of texts to probabilities.

A scorer is named in a spec as ``"profanity-check"`` (the bundled default: ``alt-profanity-check``,
a linear model over TF-IDF that ships its weights) or as ``"module:function"``, a function that
takes a list of texts and returns one probability in [0, 1] per text. Every answer is checked: a
scorer that raises, returns the wrong number of scores, or returns NaN or a value outside [0, 1]
makes the caller fail closed with :class:`~shield.errors.ClassifierError`; nothing is let through
on a scorer's failure.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from shield.errors import ClassifierError
from shield.rules import PROFANITY_CHECK, SCORER_REFERENCE, ClassifierRule

__all__ = ["BUILTIN_SCORERS", "Judgement", "Scorer", "judge", "resolve_scorer", "score"]

Scorer = Callable[[list[str]], Sequence[float]]


@dataclass(frozen=True)
class _LinearSigmoidEnsemble:
    """profanity-check's model in closed form: TF-IDF features, then per member a linear score
    ``f = x·w + c`` calibrated as ``expit(-(a f + b))``, averaged over the members.

    The same arithmetic as scikit-learn's ``CalibratedClassifierCV.predict_proba`` for sigmoid
    calibration of linear members, in the same order (so equal to the bit; tested), without its
    per-call input validation, which costs ~10x the arithmetic on the few sentences a decoding
    event scores.
    """

    vectorizer: object
    members: tuple[tuple[object, float, float, float], ...]  # (coef [F], intercept, a, b)

    def __call__(self, texts: list[str]) -> Sequence[float]:
        from scipy.special import expit

        features = self.vectorizer.transform(texts)  # type: ignore[attr-defined]
        calibrated = [
            expit(-(a * (features @ coef + intercept) + b))
            for coef, intercept, a, b in self.members
        ]
        total = calibrated[0]
        for more in calibrated[1:]:  # summed in member order, as scikit-learn does
            total = total + more
        return [float(p) for p in total / len(self.members)]


@cache
def _profanity_model() -> Scorer:
    """The closed form of profanity-check's model, or its own ``predict_prob`` when the model
    is not the expected sigmoid-calibrated ensemble of binary linear classifiers."""
    from profanity_check import predict_prob
    from profanity_check import profanity_check as package

    model = package.model
    try:
        members = []
        for member in model.calibrated_classifiers_:
            (calibrator,) = member.calibrators  # binary: one calibrator per member
            coef = member.estimator.coef_
            if member.method != "sigmoid" or coef.shape[0] != 1:
                raise ValueError("not a binary sigmoid-calibrated linear member")
            members.append(
                (coef[0], float(member.estimator.intercept_[0]), calibrator.a_, calibrator.b_)
            )
        if not members or list(model.classes_) != [0, 1]:
            raise ValueError("not a binary ensemble")
    except (AttributeError, ValueError, TypeError):
        return lambda texts: [float(p) for p in predict_prob(texts)]
    return _LinearSigmoidEnsemble(package.vectorizer, tuple(members))


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
