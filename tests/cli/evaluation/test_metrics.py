"""The statistics of the report on tiny literal fixtures with known answers."""

from __future__ import annotations

import math

import pytest

from shield.cli.evaluation import metrics


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (0, 10, 0.0, 0.27753),
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (1, 3, 0.06149, 0.79234),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Table I, method 3
    ],
)
def test_wilson_interval_known_values(successes: int, trials: int, low: float, high: float) -> None:
    interval = metrics.wilson_interval(successes, trials)
    assert interval is not None
    assert interval[0] == pytest.approx(low, abs=1e-4)
    assert interval[1] == pytest.approx(high, abs=1e-4)


def test_wilson_interval_edges() -> None:
    assert metrics.wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="successes <= trials"):
        metrics.wilson_interval(4, 3)
    low, high = metrics.wilson_interval(3, 7)  # type: ignore[misc]
    assert low < 3 / 7 < high


def test_bootstrap_is_reproducible_and_brackets_the_mean() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    first = metrics.bootstrap_mean_ci(values)
    assert first == metrics.bootstrap_mean_ci(values)
    assert first is not None
    assert first[0] < 0.6 < first[1]
    assert first[0] > 0.25 and first[1] < 0.95
    assert metrics.bootstrap_mean_ci([]) is None
    assert metrics.bootstrap_mean_ci([3.5]) == (3.5, 3.5)
    assert metrics.bootstrap_mean_ci([2.0, 2.0]) == (2.0, 2.0)


def test_distinct_n() -> None:
    texts = ["the cat the cat", "The dog"]
    # unigrams: the, cat, the, cat, the, dog -> 3 unique of 6
    assert metrics.distinct_n(texts, 1) == pytest.approx(0.5)
    # bigrams: (the cat), (cat the), (the cat), (the dog) -> 3 unique of 4; none across texts
    assert metrics.distinct_n(texts, 2) == pytest.approx(0.75)
    assert metrics.distinct_n(["one"], 2) is None
    assert metrics.distinct_n([], 1) is None
    with pytest.raises(ValueError, match="n >= 1"):
        metrics.distinct_n(texts, 0)


def test_expected_max_toxicity_and_probability() -> None:
    scores = [(0, 0.2), (0, 0.7), (1, 0.1), (1, 0.3), (2, 0.95), (2, 0.05)]
    value, maxima = metrics.expected_max_toxicity(scores)
    assert maxima == [0.7, 0.3, 0.95]
    assert value == pytest.approx((0.7 + 0.3 + 0.95) / 3)
    assert metrics.toxicity_probability(scores) == (2, 3)
    assert metrics.toxicity_probability(scores, threshold=0.8) == (1, 3)
    assert metrics.expected_max_toxicity([]) == (None, [])


def test_discard_ratio_and_ratio() -> None:
    assert metrics.discard_ratio([0, 6, 2], [10, 16, 14]) == pytest.approx(0.2)
    assert metrics.discard_ratio([], []) is None
    assert metrics.discard_ratio([0, 0], [5, 5]) == 0.0
    assert metrics.ratio(3, 0) is None


def test_pooled_perplexity() -> None:
    # Pooled over tokens, not averaged over samples: exp((2 + 4) / (1 + 3)).
    assert metrics.perplexity([(2.0, 1), (4.0, 3)]) == pytest.approx(math.exp(1.5))
    assert metrics.perplexity([(0.0, 0)]) is None
    assert metrics.perplexity([]) is None
    assert metrics.mean([]) is None
    assert metrics.mean([1, 2, 6]) == pytest.approx(3.0)
