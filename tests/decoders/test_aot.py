"""Ahead-of-time exports: an exported call equals the jitted one, a later process loads the export
instead of tracing, another key misses, a damaged entry is exported again, and off means off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoders import aot, step
from decoders.config import DecodeConfig
from decoders.loading import Model
from decoders.plain import generate_plain
from decoders.pytree import pytree_dataclass, static_field
from decoders.shielded import generate_shielded
from decoders.state import DecodeState, init_state
from decoders.tokenizer import Tokenizer
from shield.rules import LiteralRule
from shield.store import CACHE_DIR_ENV, read_entry
from tests.decoders.scenario_support import PROMPTS, judge_of

pytest.importorskip("flatbuffers", reason="jax.export serialises with flatbuffers")

STATIC = ("config", "window")
#: The jitted prefill itself (decoders.step.prefill is exported ahead of time too).
JITTED = step.prefill.jitted


@pytest.fixture
def aot_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    before = aot.aot_enabled()
    aot.set_aot_enabled(True)
    try:
        yield tmp_path / "aot"
    finally:
        aot.set_aot_enabled(before)


def _arguments(model: Model, length: int = 5) -> tuple:
    state = init_state(model.config, DecodeConfig(batch_size=2, max_slots=32))
    tokens = jnp.asarray(np.arange(2 * length, dtype=np.int32).reshape(2, length) % 7 + 1)
    lengths = jnp.asarray([length, length - 2], jnp.int32)
    return model.params, model.config, state, tokens, lengths


def _assert_same(found: DecodeState, expected: DecodeState) -> None:
    leaves, tree = jax.tree_util.tree_flatten(found)
    expected_leaves, expected_tree = jax.tree_util.tree_flatten(expected)
    assert tree == expected_tree
    for a, b in zip(leaves, expected_leaves, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz"))


def test_the_exported_prefill_equals_the_jitted_one(aot_on: Path, tiny_model: Model) -> None:
    exported = aot.AheadOfTime(JITTED, static_argnames=STATIC)
    args = _arguments(tiny_model)
    found = exported(*args, window=32)
    assert len(_entries(aot_on)) == 1  # the scenario: it was exported and stored
    _assert_same(found, JITTED(*args, window=32))


def test_a_later_process_loads_instead_of_tracing(
    aot_on: Path, tiny_model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _arguments(tiny_model)
    aot.AheadOfTime(JITTED, static_argnames=STATIC)(*args, window=32)
    later = aot.AheadOfTime(JITTED, static_argnames=STATIC)  # nothing in memory
    monkeypatch.setattr(later, "_export", _never)
    _assert_same(later(*args, window=32), JITTED(*args, window=32))


def _never(*_: object) -> None:
    raise AssertionError("exported again although a valid entry existed")


def test_another_static_argument_or_shape_misses(aot_on: Path, tiny_model: Model) -> None:
    exported = aot.AheadOfTime(JITTED, static_argnames=STATIC)
    exported(*_arguments(tiny_model), window=32)
    exported(*_arguments(tiny_model), window=16)  # another static argument
    args = _arguments(tiny_model, length=6)  # another shape
    found = exported(*args, window=32)
    assert len(_entries(aot_on)) == 3
    _assert_same(found, JITTED(*args, window=32))


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_damaged_entry_is_exported_again(aot_on: Path, tiny_model: Model, how: str) -> None:
    args = _arguments(tiny_model)
    aot.AheadOfTime(JITTED, static_argnames=STATIC)(*args, window=32)
    (path,) = _entries(aot_on)
    data = path.read_bytes()
    middle = len(data) // 2
    path.write_bytes(
        data[:middle] if how == "truncated" else data[:middle] + b"\0" * 64 + data[middle + 64 :]
    )
    assert read_entry(path, path.stem).status == "corrupt"  # the scenario: a bad file
    found = aot.AheadOfTime(JITTED, static_argnames=STATIC)(*args, window=32)
    _assert_same(found, JITTED(*args, window=32))
    assert read_entry(path, path.stem).status == "hit"  # rewritten whole


def test_off_calls_the_jitted_function_and_writes_nothing(
    tmp_path: Path, tiny_model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    before = aot.aot_enabled()
    aot.set_aot_enabled(False)
    try:
        args = _arguments(tiny_model)
        found = aot.AheadOfTime(JITTED, static_argnames=STATIC)(*args, window=32)
    finally:
        aot.set_aot_enabled(before)
    assert not (tmp_path / "aot").exists()
    _assert_same(found, JITTED(*args, window=32))


def test_unknown_static_names_are_refused() -> None:
    with pytest.raises(ValueError, match="no arguments"):
        aot.AheadOfTime(JITTED, static_argnames=("config", "windw"))


def test_shielded_generation_through_the_exports_equals_the_jitted_one(
    aot_on: Path, tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    """The decorated prefill and shielded loop, end to end: a backtracking run that rewinds."""
    plain = generate_plain(tiny_model, tiny_tokenizer, PROMPTS, max_new_tokens=10, temperature=0.0)
    data = b"".join(tiny_tokenizer.token_bytes[t] for t in plain[0].tokens)
    forbidden = data[len(data) // 3 : len(data) // 3 + 2].decode("latin-1")
    judge = judge_of(tiny_tokenizer, LiteralRule(id="x", literal=forbidden), max_retries=2)

    def run() -> list:
        results = generate_shielded(
            tiny_model, tiny_tokenizer, PROMPTS, judge=judge, max_new_tokens=10, temperature=0.0
        )
        return [(r.tokens, r.finish_reason, r.events) for r in results]

    exported = run()
    # The scenario: the first row rewound, through the exports (stored for both functions).
    assert any(event.kind == "rollback" for event in exported[0][2])
    assert {p.name.rpartition("-")[0] for p in _entries(aot_on)} == {"prefill", "shielded_loop"}
    aot.set_aot_enabled(False)
    assert exported == run()


@pytree_dataclass
class Box:
    """A pytree node with static fields that nest tuples (like BlockLinear's formats)."""

    x: jax.Array
    names: tuple[tuple[str, int], ...] = static_field()


def _doubled(box: Box, scale: int) -> Box:
    return Box(x=box.x * scale, names=box.names)


def test_static_fields_with_nested_tuples_survive_the_round_trip(
    aot_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Box(x=jnp.arange(3.0), names=(("q4_k", 1), ("q6_k", 2)))
    first = aot.ahead_of_time(_doubled, static_argnames=("scale",))(box, 2)
    assert len(_entries(aot_on)) == 1  # stored: the structure survived serialisation
    later = aot.ahead_of_time(_doubled, static_argnames=("scale",))
    monkeypatch.setattr(later, "_export", _never)
    found = later(box, 2)  # read back and called with the same tree
    assert found.names == first.names == box.names
    np.testing.assert_array_equal(np.asarray(found.x), [0.0, 2.0, 4.0])
