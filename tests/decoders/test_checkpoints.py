"""Hugging Face checkpoints loaded as they ship: single-file and sharded safetensors written by
transformers, read tensor by tensor in the file's dtype, placed on the device or a mesh; corrupt or
incomplete checkpoints refused by name."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import PartitionSpec

import decoders.loading
from decoders.checkpoint import INDEX_NAME, SINGLE_NAME, SafetensorsCheckpoint
from decoders.loading import load_model
from decoders.plain import generate_plain
from decoders.sharding import MODEL_AXIS, make_mesh, placer
from shield.errors import ModelLoadError
from tests.decoders.family_support import hf_model, write_checkpoint

PROMPTS = ["the cat", "hello world, the"]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bfloat16 Llama checkpoint in one ``model.safetensors``."""
    return write_checkpoint("llama", tmp_path_factory.mktemp("single"), dtype="bfloat16")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory, single: Path) -> Path:
    """The same weights saved by transformers in 60 KB shards with an index."""
    directory = tmp_path_factory.mktemp("sharded")
    hf_model("llama", dtype="bfloat16").save_pretrained(directory, max_shard_size="60KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(single / name, directory / name)
    return directory


def copy_of(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


def bits(array: Any) -> np.ndarray:
    """The raw 16-bit patterns of a bfloat16 array (exact comparison)."""
    return np.asarray(array).astype(ml_dtypes.bfloat16).view(np.uint16)


def test_sharded_checkpoint_is_indexed_from_its_shards(sharded: Path, single: Path) -> None:
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 1 and (sharded / INDEX_NAME).is_file()  # the scenario: really sharded
    whole, parts = SafetensorsCheckpoint.open(single), SafetensorsCheckpoint.open(sharded)
    assert set(whole) == set(parts)
    assert {parts.entry(name).file.name for name in parts} == set(shards)
    for name in whole:
        assert whole[name].dtype == np.dtype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(bits(whole[name]), bits(parts[name]))
    assert (
        whole.nbytes == parts.nbytes
        and whole.largest == whole.entry("model.embed_tokens.weight").nbytes
    )


def test_tensors_equal_the_files_bit_for_bit(single: Path) -> None:
    import torch
    from safetensors.torch import load_file

    reference = load_file(str(single / SINGLE_NAME))
    checkpoint = SafetensorsCheckpoint.open(single)
    for name, tensor in reference.items():
        expected = tensor.view(dtype=torch.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(bits(checkpoint[name]), expected, err_msg=name)


def test_load_keeps_the_checkpoint_dtype_and_never_makes_a_float32_copy(
    single: Path, sharded: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SHIELD_CACHE_DIR", str(tmp_path / "cache"))
    placed: list[tuple[str, Any]] = []

    def recording(mesh: Any, *, adopt: bool = False) -> Any:
        assert not adopt  # a user's checkpoint is never aliased: the file may change under it
        put = placer(mesh)

        def record(path: str, array: Any) -> Any:
            placed.append((path, np.asarray(array).dtype))
            return put(path, array)

        return record

    monkeypatch.setattr(decoders.loading, "placer", recording)
    model, _ = load_model(single)  # no dtype: the checkpoint's own (config.json says bfloat16)
    assert placed, "the loader placed nothing through put"
    assert {dtype for _, dtype in placed} == {np.dtype(ml_dtypes.bfloat16)}
    assert model.config.dtype == "bfloat16"
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(model.params)} == {
        np.dtype(ml_dtypes.bfloat16)
    }
    assert not (tmp_path / "cache").exists()  # no conversion cache for safetensors directories
    from_shards, _ = load_model(sharded)
    for a, b in zip(
        jax.tree_util.tree_leaves(model.params),
        jax.tree_util.tree_leaves(from_shards.params),
        strict=True,
    ):
        np.testing.assert_array_equal(bits(a), bits(b))
    widened, _ = load_model(single, dtype="float32")
    assert widened.config.dtype == "float32"
    np.testing.assert_array_equal(
        np.asarray(widened.params.final_norm),
        np.asarray(model.params.final_norm).astype(np.float32),
    )


def test_load_onto_a_mesh_places_each_weight_with_its_sharding(single: Path) -> None:
    mesh = make_mesh(data=2, model=2, devices=jax.devices()[:4])
    sharded_model, tokenizer = load_model(single, dtype="float32", mesh=mesh)
    wqkv = sharded_model.params.layers[0].wqkv
    assert wqkv.sharding.spec == PartitionSpec(None, MODEL_AXIS)
    assert len(wqkv.sharding.device_set) == 4
    model, _ = load_model(single, dtype="float32")
    expected = generate_plain(model, tokenizer, PROMPTS, max_new_tokens=6, temperature=0.0)
    found = generate_plain(
        sharded_model, tokenizer, PROMPTS, max_new_tokens=6, temperature=0.0, mesh=mesh
    )
    assert [r.tokens for r in found] == [r.tokens for r in expected]


def test_missing_shard_is_named(sharded: Path, tmp_path: Path) -> None:
    directory = copy_of(sharded, tmp_path)
    victim = sorted(directory.glob("model-*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(ModelLoadError, match=f"{victim.name}: checkpoint shard .* is missing"):
        load_model(directory)


def test_truncated_shard_is_named(sharded: Path, tmp_path: Path) -> None:
    directory = copy_of(sharded, tmp_path)
    victim = sorted(directory.glob("model-*.safetensors"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelLoadError, match=f"{victim.name}: tensor .* past the end"):
        load_model(directory)


def test_garbage_file_is_refused(single: Path, tmp_path: Path) -> None:
    directory = copy_of(single, tmp_path)
    (directory / SINGLE_NAME).write_bytes(b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="corrupt safetensors header"):
        load_model(directory)


def test_index_naming_a_tensor_its_shard_lacks_is_refused(sharded: Path, tmp_path: Path) -> None:
    directory = copy_of(sharded, tmp_path)
    index = json.loads((directory / INDEX_NAME).read_text())
    first = sorted(directory.glob("model-*.safetensors"))[0].name
    stray = next(name for name, file in index["weight_map"].items() if file != first)
    index["weight_map"][stray] = first
    (directory / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match=f"maps tensor '{stray}' to this shard"):
        load_model(directory)


def test_missing_tensor_is_named(sharded: Path, tmp_path: Path) -> None:
    directory = copy_of(sharded, tmp_path)
    index = json.loads((directory / INDEX_NAME).read_text())
    del index["weight_map"]["model.layers.1.mlp.down_proj.weight"]
    (directory / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(
        ModelLoadError, match=re.escape("'model.layers.1.mlp.down_proj.weight' is missing")
    ):
        load_model(directory)


def rewrite_header(file: Path, edit: Any) -> None:
    """Apply ``edit`` to the JSON header of a safetensors file, keeping its data."""
    data = file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    edit(header)
    raw = json.dumps(header).encode()  # offsets count from the end of the header: still valid
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def test_dtype_that_does_not_match_the_data_is_named(single: Path, tmp_path: Path) -> None:
    directory = copy_of(single, tmp_path)

    def as_float32(header: dict[str, Any]) -> None:
        header["model.norm.weight"]["dtype"] = "F32"  # the bytes hold bfloat16 values

    rewrite_header(directory / SINGLE_NAME, as_float32)
    with pytest.raises(ModelLoadError, match=re.escape("'model.norm.weight' declares dtype F32")):
        load_model(directory)


def test_unsupported_dtype_is_named(single: Path, tmp_path: Path) -> None:
    directory = copy_of(single, tmp_path)

    def as_fp8(header: dict[str, Any]) -> None:
        header["model.norm.weight"]["dtype"] = "F8_E4M3"

    rewrite_header(directory / SINGLE_NAME, as_fp8)
    with pytest.raises(ModelLoadError, match=re.escape("'model.norm.weight' has dtype F8_E4M3")):
        load_model(directory)


def test_directory_without_weights_is_refused(single: Path, tmp_path: Path) -> None:
    directory = copy_of(single, tmp_path)
    (directory / SINGLE_NAME).unlink()
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(directory)


def test_the_command_line_generates_and_evaluates_from_a_directory(
    single: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shield.cli import main

    generate = ["generate", "--model", str(single), "--spec", "pii", "--prompt", "the cat"]
    assert main([*generate, "--max-new-tokens", "4", "--temperature", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["stats"]["generated_tokens"] == 4 and len(result["tokens"]) == 4
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\nhello\n", encoding="utf-8")
    evaluate = ["eval", "--model", str(single), "--spec", "pii", "--prompts", str(prompts)]
    out = tmp_path / "eval"
    options = ["--strategies", "none,backtrack", "--max-new-tokens", "3", "--out", str(out)]
    assert main([*evaluate, *options, "--no-plots", "--quiet"]) == 0
    assert json.loads((out / "report.json").read_text())  # the report was written
