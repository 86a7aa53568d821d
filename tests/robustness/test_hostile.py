"""Hostile specs compile within stated bounds or fail fast with a CompileError naming the limit.

Time bounds are asserted loosely (several times the measured cost on a shared 2-core machine);
``bench/bench_robustness.py`` prints the exact times and peak memory.
"""

from __future__ import annotations

import random
import string
import time
import tracemalloc

import pytest

import shield
from shield.automata.limits import CompileLimits
from shield.errors import CompileError, SpecError
from shield.rules import AfterRule, AtMostRule, LiteralRule, MatchOptions, RegexRule, WordsRule
from tests.shield.helpers import Spec

#: Loose bounds for these tests (seconds, bytes of Python allocations).
SECONDS = 60.0  # far above the measured cost (< 5 s): catches a runaway, not a slow runner
PEAK_BYTES = 400 * 2**20


def _timed(rules: tuple, limits: CompileLimits | None = None) -> tuple[float, int, object]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        out: object = shield.compile(Spec("hostile", rules), limits=limits or CompileLimits())
    except (CompileError, SpecError) as error:
        out = error
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, out


@pytest.mark.parametrize(
    "pattern",
    [r"(a+)+b", r"(a|aa)*c", r"(x+x+)+y", r"(.*a){12}", r"([a-z]+)*[0-9]", r"(\w+\s?)*!$"],
)
def test_catastrophic_backtracking_patterns_compile_to_small_dfas(pattern: str) -> None:
    elapsed, peak, out = _timed((RegexRule(id="r", pattern=pattern),))
    assert isinstance(out, shield.Shield), out
    assert elapsed < SECONDS and peak < PEAK_BYTES
    assert out.compiled[0].dfa.n_states < 5_000


@pytest.mark.parametrize(
    ("pattern", "limit"),
    [
        (r"a{100000}", "max_repeat"),
        (r"(a{1000}){1000}", "max_nfa_states"),
        (r"((a{999}){999}){999}", "max_nfa_states"),
        (r"(a|b)*a(a|b){15}", "max_dfa_states"),
    ],
)
def test_exploding_patterns_fail_fast_naming_the_limit(pattern: str, limit: str) -> None:
    elapsed, _, out = _timed(
        (RegexRule(id="r", pattern=pattern),), CompileLimits(max_dfa_states=20_000)
    )
    assert isinstance(out, CompileError), out
    assert limit in str(out) and "rule r" in str(out)
    assert elapsed < SECONDS


def test_large_classes_compile() -> None:
    pattern = "[\\u0000-\\U0010FFFF]{3}[^a-z]{2}[\\u4e00-\\u9fff]+"
    elapsed, peak, out = _timed((RegexRule(id="r", pattern=pattern),))
    assert isinstance(out, shield.Shield), out
    assert elapsed < SECONDS and peak < PEAK_BYTES


def test_time_budget_is_a_named_limit() -> None:
    limits = CompileLimits(max_rule_seconds=1, max_dfa_states=10**7)
    elapsed, _, out = _timed((RegexRule(id="r", pattern=r"(a|b)*a(a|b){22}"),), limits)
    assert isinstance(out, CompileError) and "max_rule_seconds" in str(out)
    assert elapsed < SECONDS


def _random_words(n: int, seed: int = 0) -> tuple[str, ...]:
    rng = random.Random(seed)
    return tuple(
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10)))
        for _ in range(n)
    )


def test_word_list_of_100k_entries_fails_fast_naming_the_limit() -> None:
    rule = WordsRule(id="w", words=_random_words(100_000), match=MatchOptions(whole_word=True))
    elapsed, _, out = _timed((rule,))
    assert isinstance(out, CompileError) and "max_dfa_states" in str(out)
    assert elapsed < SECONDS


def test_word_list_of_2k_entries_compiles() -> None:
    rule = WordsRule(
        id="w",
        words=_random_words(2_000),
        match=MatchOptions(case_insensitive=True, whole_word=True),
    )
    elapsed, peak, out = _timed((rule,))
    assert isinstance(out, shield.Shield), out
    assert elapsed < SECONDS and peak < PEAK_BYTES


def test_very_long_literal_fails_fast() -> None:
    elapsed, _, out = _timed((LiteralRule(id="l", literal="x" * 1_000_000),))
    assert isinstance(out, CompileError) and "max_word_chars" in str(out)
    assert elapsed < SECONDS


def test_long_literal_within_limit_compiles() -> None:
    elapsed, _, out = _timed((LiteralRule(id="l", literal="ab" * 100),))
    assert isinstance(out, shield.Shield) and elapsed < SECONDS


def test_deep_group_nesting_is_a_spec_error() -> None:
    elapsed, _, out = _timed((RegexRule(id="r", pattern="(" * 5000 + "a" + ")" * 5000),))
    assert isinstance(out, SpecError) and elapsed < SECONDS


def test_temporal_rules_over_hostile_patterns_stay_bounded() -> None:
    rules = (
        AfterRule(
            id="after",
            trigger=RegexRule(id="t", pattern=r"(a+)+b"),
            forbid=RegexRule(id="f", pattern=r"[0-9]{4}([ -]?[0-9]{4}){3}"),
        ),
        AtMostRule(id="most", pattern=RegexRule(id="p", pattern=r"(x|xx)+y"), count=1_000),
    )
    elapsed, peak, out = _timed(rules)
    assert isinstance(out, shield.Shield | CompileError), out
    assert elapsed < 2 * SECONDS and peak < PEAK_BYTES
