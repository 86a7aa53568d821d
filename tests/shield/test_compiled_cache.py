"""The compiled-shield cache: a hit behaves like a fresh compile; anything else is rebuilt.

Scenarios: a stored entry is read back (hit) and decides every text, span and lifted token like a
fresh compile (differential property); a changed rule, word list, limit or compiler version
misses; truncated, damaged and foreign entries are rejected and rebuilt; two processes writing
one key never leave a readable entry that is wrong; the opt-outs write nothing.
"""

from __future__ import annotations

import multiprocessing
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import shield
import shield.spec_compiler as spec_compiler
from shield.automata.limits import CompileLimits
from shield.compiled_cache import CompiledCache, compiler_version, default_cache
from shield.rules import (
    AfterRule,
    AtMostRule,
    ClassifierRule,
    LiteralRule,
    MatchOptions,
    MaxLengthRule,
    RegexRule,
    WordsRule,
)
from shield.store import NO_CACHE_ENV, cache_enabled, caching, read_entry, write_entry
from tests.shield.helpers import Spec

PACKAGE = Path(shield.__file__).resolve().parent

RULES = (
    WordsRule(
        id="swear",
        words=("fuck", "shit", "ass hat"),
        match=MatchOptions(
            case_insensitive=True, whole_word=True, normalize=frozenset({"leet", "repeats"})
        ),
    ),
    # A staged rule (normaliser composed with its letter automaton): cached as its two tables.
    WordsRule(
        id="swear-unicode",
        words=("shit", "ass"),
        match=MatchOptions(
            case_insensitive=True,
            whole_word=True,
            normalize=frozenset({"confusables", "nfkc", "zero_width", "diacritics", "leet"}),
        ),
    ),
    RegexRule(id="key", pattern=r"sk-[A-Za-z0-9]{4,}"),
    LiteralRule(id="lit", literal="BAD", match=MatchOptions(case_insensitive=True)),
    AfterRule(
        id="card-after",
        trigger=LiteralRule(id="card-after", literal="card"),
        forbid=RegexRule(id="card-after", pattern=r"[0-9]{4}"),
    ),
    AtMostRule(id="sorry", pattern=LiteralRule(id="sorry", literal="sorry"), count=1),
    MaxLengthRule(id="long", max_bytes=60),
    ClassifierRule(id="clf", scorer="profanity-check", threshold=0.9),
)
SPEC = Spec("mixed", RULES)
TEXT = st.lists(
    st.sampled_from(
        [
            *"fuckshitasBADsk-0123 4$@!.,\nüф",
            *("card", "sorry", "fuuuck", "ass hat"),
            *("\u0455", "\u0430", "\u200b", "\u0301", "\uff53"),  # look-alikes, invisibles
        ]
    ),
    max_size=24,
).map("".join)


class Counting:
    """Counts the rules ``shield.compile`` compiles (the hook that proves a rebuild or a hit)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = spec_compiler.compile_rule

        def counted(rule: object, limits: CompileLimits) -> object:
            self.calls += 1
            return original(rule, limits)  # type: ignore[arg-type]

        monkeypatch.setattr(spec_compiler, "compile_rule", counted)


def automaton_rules(spec: Spec) -> tuple:
    return tuple(r for r in spec.rules if not isinstance(r, ClassifierRule))


@pytest.fixture(scope="module")
def shields(tmp_path_factory: pytest.TempPathFactory) -> tuple[shield.Shield, shield.Shield, str]:
    """A fresh compile (which stores the entry) and the shield read back from that entry."""
    cache = CompiledCache(tmp_path_factory.mktemp("compiled"), compiler_version())
    rules = automaton_rules(SPEC)
    assert cache.load(rules, shield.CompileLimits()).status == "miss"
    fresh = shield.compile(SPEC, cache=cache)
    lookup = cache.load(rules, shield.CompileLimits())
    assert lookup.status == "hit"  # the scenario: the second shield really comes from disk
    cached = shield.compile(SPEC, cache=cache)
    return fresh, cached, lookup.status


def test_hit_has_the_same_automata(shields: tuple[shield.Shield, shield.Shield, str]) -> None:
    fresh, cached, status = shields
    assert status == "hit"
    assert [r.rule_id for r in cached.compiled] == [r.rule_id for r in fresh.compiled]
    assert any(r.composed is not None for r in cached.compiled)  # a staged rule came back
    for a, b in zip(fresh.compiled, cached.compiled, strict=True):
        assert a.kind == b.kind and a.rule == b.rule
        if a.composed is not None:
            assert b.composed is not None and b.dfa is None and b.matcher is None
            assert a.composed.initial == b.composed.initial
            for x, y in [
                (a.composed.letters, b.composed.letters),
                (a.composed.accepting, b.composed.accepting),
                (a.composed.normaliser.next_state, b.composed.normaliser.next_state),
                (a.composed.normaliser.emitted, b.composed.normaliser.emitted),
            ]:
                np.testing.assert_array_equal(x, y)
            continue
        for name in ("dfa", "matcher"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.initial == y.initial
            np.testing.assert_array_equal(x.transitions, y.transitions)
            np.testing.assert_array_equal(x.classes, y.classes)
            np.testing.assert_array_equal(x.accepting, y.accepting)
    assert cached.classifiers == fresh.classifiers


@given(text=TEXT)
def test_hit_decides_like_a_fresh_compile(
    shields: tuple[shield.Shield, shield.Shield, str], text: str
) -> None:
    fresh, cached, status = shields
    assert status == "hit"
    data = text.encode("utf-8")
    assert cached.first_violation(data, final=True) == fresh.first_violation(data, final=True)
    assert cached.scan(text) == fresh.scan(text)  # spans come from the rebuilt scanners


VOCABULARY = [
    piece.encode("utf-8")
    for piece in [*"fuckshitasBADsk-0123 4$@!.,\nüф", "card", "sorry", "fu", "ck", " sh", "it"]
]


@pytest.fixture(scope="module")
def lifted(shields: tuple[shield.Shield, shield.Shield, str]) -> tuple:
    fresh, cached, _ = shields
    return fresh.lift(VOCABULARY), cached.lift(VOCABULARY)


def test_hit_lifts_to_the_same_tables(lifted: tuple) -> None:
    a, b = lifted
    assert a.rule_ids == b.rule_ids and len(a.composed) == len(b.composed) == 1
    for name in ("byte_transitions", "violating", "initial", "state_counts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@given(ids=st.lists(st.integers(0, len(VOCABULARY) - 1), max_size=30))
def test_hit_walks_tokens_like_a_fresh_compile(lifted: tuple, ids: list[int]) -> None:
    a, b = lifted
    states_a, states_b = a.initial, b.initial
    for token in ids:
        np.testing.assert_array_equal(a.allowed_mask(states_a), b.allowed_mask(states_b))
        states_a, states_b = a.step_token(states_a, token), b.step_token(states_b, token)
        np.testing.assert_array_equal(states_a, states_b)
    assert a.end_violates(states_a) == b.end_violates(states_b)


@pytest.mark.parametrize(
    "change",
    [
        "word list",
        "match options",
        "regex",
        "rule order",
        "limits",
        "compiler version",
    ],
)
def test_any_change_misses(tmp_path: Path, change: str) -> None:
    version = compiler_version()
    rules, limits = automaton_rules(SPEC), shield.CompileLimits()
    CompiledCache(tmp_path, version).store(
        rules, limits, spec_compiler._compiled_rules(rules, limits, None)
    )
    assert CompiledCache(tmp_path, version).load(rules, limits).status == "hit"
    words = rules[0]
    assert isinstance(words, WordsRule)
    if change == "word list":
        rules = (replace(words, words=(*words.words, "crap")), *rules[1:])
    elif change == "match options":
        match = replace(words.match, normalize=frozenset({"leet"}))
        rules = (replace(words, match=match), *rules[1:])
    elif change == "regex":
        rules = (rules[0], RegexRule(id="key", pattern=r"sk-[A-Za-z0-9]{5,}"), *rules[2:])
    elif change == "rule order":
        rules = (rules[1], rules[0], *rules[2:])
    elif change == "limits":
        limits = shield.CompileLimits(max_dfa_states=100_000)
    else:
        version = "another compiler"
    assert CompiledCache(tmp_path, version).load(rules, limits).status == "miss"


def test_the_same_rules_from_another_spec_hit(tmp_path: Path) -> None:
    """The key is the resolved rules, not the spec's name, policy or classifier rules."""
    cache = CompiledCache(tmp_path, compiler_version())
    shield.compile(SPEC, cache=cache)
    other = Spec("renamed", automaton_rules(SPEC))
    assert cache.load(automaton_rules(other), shield.CompileLimits()).status == "hit"


def test_compiler_version_follows_the_source(tmp_path: Path) -> None:
    copy = tmp_path / "shield"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = compiler_version(copy)
    assert before == compiler_version(PACKAGE)
    (copy / "automata" / "minimize.py").write_text(
        (copy / "automata" / "minimize.py").read_text() + "\n# a change\n"
    )
    assert compiler_version(copy) != before
    (copy / "automata" / "new_pass.py").write_text("X = 1\n")  # a new compiler module counts
    assert len({before, compiler_version(copy)}) == 2


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped byte":  # inside the largest array's compressed data, not a zip header
        with zipfile.ZipFile(path) as archive:
            info = max(archive.infolist(), key=lambda i: i.compress_size)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        middle = start + info.compress_size // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    else:  # another key's complete entry under this name
        write_entry(path, "another key", {"format": 1, "rules": []}, {})


@pytest.mark.parametrize("how", ["truncated", "empty", "flipped byte", "foreign"])
def test_a_damaged_entry_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    cache = CompiledCache(tmp_path, compiler_version())
    rules, limits = automaton_rules(SPEC), shield.CompileLimits()
    shield.compile(SPEC, cache=cache)
    path = cache.path_for(rules, limits)
    _damage(path, how)
    assert cache.load(rules, limits).status == "corrupt"  # detected, never used
    counting = Counting(monkeypatch)
    rebuilt = shield.compile(SPEC, cache=cache)
    assert counting.calls == len(rules)  # the rebuild happened
    assert cache.load(rules, limits).status == "hit"  # and replaced the damaged file
    assert rebuilt.scan("fuuuck, sk-abcd") == [
        shield.Violation("swear", 0, 6, "fuuuck"),
        shield.Violation("key", 8, 15, "sk-abcd"),
    ]


def test_a_hit_compiles_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = CompiledCache(tmp_path, compiler_version())
    shield.compile(SPEC, cache=cache)
    counting = Counting(monkeypatch)
    shield.compile(SPEC, cache=cache)
    assert counting.calls == 0


def _writer(path: str, writer: int, rounds: int) -> None:
    for round_ in range(rounds):
        value = writer * 1000 + round_
        arrays = {"a": np.full(50_000, value, dtype=np.int32), "b": np.arange(value % 97)}
        write_entry(Path(path), "the key", {"value": value}, arrays)


def test_concurrent_writers_never_leave_a_wrong_entry(tmp_path: Path) -> None:
    """Two processes rewrite one key while this one reads it: every read is whole or absent."""
    path = tmp_path / "entry.npz"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(path), w, 40)) for w in (1, 2)]
    for process in writers:
        process.start()
    statuses = []
    while any(p.is_alive() for p in writers) or not statuses:
        entry = read_entry(path, "the key")
        statuses.append(entry.status)
        if entry.status == "hit":
            value = entry.meta["value"]
            assert value // 1000 in (1, 2)
            assert (entry.arrays["a"] == value).all() and entry.arrays["a"].shape == (50_000,)
            np.testing.assert_array_equal(entry.arrays["b"], np.arange(value % 97))
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert "corrupt" not in statuses
    assert "hit" in statuses  # the scenario: reads overlapped the writes
    final = read_entry(path, "the key")
    assert final.status == "hit" and final.meta["value"] in (39, 1039, 2039)
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


def test_store_refuses_what_it_cannot_store_safely(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Python objects"):
        write_entry(tmp_path / "x.npz", "k", {}, {"a": np.array([object()])})
    with pytest.raises(ValueError, match="reserved"):
        write_entry(tmp_path / "x.npz", "k", {}, {"__meta__": np.zeros(1)})
    assert read_entry(tmp_path / "missing.npz", "k").status == "miss"


def test_opt_outs_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIELD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    assert default_cache() is None  # a library call outside caching(True): no files
    shield.compile(SPEC)
    with caching(False):
        shield.compile(SPEC)
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    with caching(True):
        assert not cache_enabled()
        assert default_cache() is None
        shield.compile(SPEC)
    assert not any(tmp_path.iterdir())
    monkeypatch.setenv(NO_CACHE_ENV, "0")
    with caching(True):
        cache = default_cache()
        assert cache is not None and cache.directory == tmp_path / "compiled"
        shield.compile(SPEC)
    assert len(list((tmp_path / "compiled").glob("*.npz"))) == 1  # the scenario: on, it writes


def test_the_folder_keeps_at_most_max_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shield.compiled_cache as compiled_cache

    monkeypatch.setattr(compiled_cache, "MAX_ENTRIES", 2)
    cache = CompiledCache(tmp_path, compiler_version())
    specs = [Spec(f"s{i}", (LiteralRule(id="lit", literal=f"word{i}"),)) for i in range(4)]
    for spec in specs:
        shield.compile(spec, cache=cache)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    limits = shield.CompileLimits()
    assert [cache.load(s.rules, limits).status for s in specs] == ["miss", "miss", "hit", "hit"]


@pytest.mark.slow
def test_the_library_toxicity_spec_round_trips(tmp_path: Path) -> None:
    """The spec the command line uses most: its cached shield scans like the fresh one."""
    import specs

    spec = specs.load_library("toxicity")  # compiled once here, without a cache
    fresh = specs.shield_for(spec)
    cache = CompiledCache(tmp_path, compiler_version())
    cache.store(automaton_rules(spec), shield.CompileLimits(), fresh.compiled)
    lookup = cache.load(automaton_rules(spec), shield.CompileLimits())
    assert lookup.status == "hit"
    cached = shield.compile(spec, cache=cache)
    texts = [
        "What a lovely autumn day.",
        "you are a f.u.c.k.i.n.g idiot",
        "sh1t, that fuuuck was a B1TCH move",
        "Ｆｕｃｋ this and the ѕhit",
        "The Samsung Galaxy A55 has a good camera.",
    ]
    assert sum(bool(fresh.scan(text)) for text in texts) >= 3  # texts that violate, too
    for text in texts:
        assert cached.scan(text) == fresh.scan(text)
