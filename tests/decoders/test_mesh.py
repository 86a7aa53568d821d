"""Tensor and data parallelism on a ``(data, model)`` mesh of 8 host CPU devices.

The decodes run in a subprocess that asks XLA for 8 CPU devices (this test process has the 4 of
``tests/conftest.py``); it decodes the same batch on one device and on meshes of shape 2x4, 4x2
and 1x8, plainly (sampled) and shielded (greedy backtracking with rollbacks that the test checks
happened), with dense weights (int8 weights on the 1x8 mesh). The placement rules themselves
are checked here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from decoders.linear import quantize_linear
from decoders.loading import Model
from decoders.sharding import (
    DATA_AXIS,
    MODEL_AXIS,
    make_mesh,
    param_sharding,
    placer,
    shard_params,
    shard_state,
)
from shield.errors import DecoderError
from tests.decoders.conftest import prefilled

ROOT = Path(__file__).resolve().parents[2]
#: The subprocess compiles each loop once per mesh; this is far above its ~1.5 minutes.
TIMEOUT_S = 600


def run_worker(module: str, *args: str, devices: int = 8) -> dict[str, Any]:
    """Run ``python -m module args`` with ``devices`` host CPU devices; its last line as JSON."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{module} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_meshes_decode_the_same_tokens_as_one_device() -> None:
    report = run_worker("tests.decoders.mesh_support", "dense", "int8")
    assert report["devices"] == 8
    for weights, runs in report["runs"].items():
        single = runs.pop("single")
        # The scenario: the shielded batch rolled back on one device.
        assert sum(row["rollbacks"] for row in single["shielded"]) > 0, weights
        assert set(runs) == ({"2x4", "4x2", "1x8"} if weights == "dense" else {"1x8"})
        for shape, sharded in runs.items():
            assert sharded["plain"] == single["plain"], (weights, shape)
            assert sharded["shielded"] == single["shielded"], (weights, shape)


def mesh_2x2() -> Any:
    return make_mesh(data=2, model=2, devices=jax.devices()[:4])


def test_projection_rules_split_columns_rows_and_vocabulary() -> None:
    mesh = mesh_2x2()
    spec = {
        name: param_sharding(name, shape, mesh).spec
        for name, shape in {
            "wqkv": (32, 64),
            "w_gate_up": (32, 96),
            "wo": (32, 32),
            "w_down": (48, 32),
            "embed": (264, 32),
            "lm_head": (32, 264),
            "attn_norm": (32,),
        }.items()
    }
    assert spec["wqkv"] == spec["w_gate_up"] == spec["lm_head"] == PartitionSpec(None, MODEL_AXIS)
    assert spec["wo"] == spec["w_down"] == spec["embed"] == PartitionSpec(MODEL_AXIS, None)
    assert spec["attn_norm"] == PartitionSpec()


def test_uneven_dimensions_and_int8_rows() -> None:
    mesh = mesh_2x2()
    # 33 output features do not split over 2 shards: replicated, never padded or dropped.
    assert param_sharding("wqkv", (32, 33), mesh).spec == PartitionSpec(None, None)
    # int8 rows are [out, in]: a column-parallel weight splits its rows.
    assert param_sharding("wqkv", (64, 32), mesh, rows=True).spec == PartitionSpec(MODEL_AXIS, None)
    assert param_sharding("wo", (32, 32), mesh, rows=True).spec == PartitionSpec(None, MODEL_AXIS)


def test_placer_puts_each_shard_on_its_device() -> None:
    mesh = mesh_2x2()
    put = placer(mesh)
    weight = np.arange(32 * 64, dtype=np.float32).reshape(32, 64)
    placed = put("layers.1.wqkv", weight)
    assert placed.sharding.spec == PartitionSpec(None, MODEL_AXIS)
    assert {shard.data.shape for shard in placed.addressable_shards} == {(32, 32)}
    np.testing.assert_array_equal(np.asarray(placed), weight)
    np.testing.assert_array_equal(np.asarray(placer(None)("embed", weight)), weight)


def test_shard_params_and_state_follow_the_rules(tiny_model: Model) -> None:
    mesh = mesh_2x2()
    params = shard_params(tiny_model.params, mesh)
    assert params.layers[0].wo.sharding.spec == PartitionSpec(MODEL_AXIS, None)
    assert shard_params(params, mesh).layers[0].wo is params.layers[0].wo  # no second copy
    head = quantize_linear(np.asarray(tiny_model.params.lm_head, np.float32))
    int8_head = shard_params(dataclasses.replace(tiny_model.params, lm_head=head), mesh).lm_head
    assert int8_head.q.sharding.spec == PartitionSpec(MODEL_AXIS, None)  # [V, H] rows
    state = shard_state(prefilled(tiny_model, [[5], [6, 7]]), mesh)
    # [L, B, K, S, D]: rows over data, the 2 key/value heads over model.
    assert state.cache.k.sharding.spec == PartitionSpec(None, DATA_AXIS, MODEL_AXIS)
    assert state.cursor.sharding.spec == PartitionSpec(DATA_AXIS)


def test_bad_meshes_are_refused(tiny_model: Model) -> None:
    with pytest.raises(DecoderError, match="must equal"):
        make_mesh(data=3, model=2, devices=jax.devices()[:4])
    with pytest.raises(DecoderError, match="multiple"):
        shard_state(prefilled(tiny_model, [[5], [6], [7]]), mesh_2x2())
