"""The loader's memory bound: loading a bfloat16 checkpoint of W bytes onto the CPU (where device
memory is host memory) peaks under ``1.1 W + the largest tensor`` of resident memory above the
process's baseline after importing JAX and the decoder.

Each test writes a random checkpoint of realistic shape (>= 300M parameters) with transformers
and loads it in a fresh subprocess, which reports its resident set before loading and its peak
while loading (``VmHWM`` of ``/proc/self/status``, reset by ``clear_refs`` after the baseline;
``ru_maxrss`` would include the parent process it was forked from). Writing one takes most of a test's time, so the slow tests cover the
three checkpoint layouts (Llama names, Gemma's norms and sandwich norms, Phi-3's fused tensors);
``python -m tests.decoders.test_load_memory`` measures every family and prints the table of the
README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The bound: peak above baseline <= SLACK * W + the largest tensor.
SLACK = 1.1
#: Realistic shapes shared by every family: 18 blocks of width 1024, a 32k vocabulary.
SHAPE: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 18,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "max_position_embeddings": 4096,
}
#: Per family, what its config needs on top of :data:`SHAPE`.
EXTRA: dict[str, dict[str, Any]] = {
    "gemma2": {"query_pre_attn_scalar": 64},
    "gemma3": {
        "query_pre_attn_scalar": 64,
        "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 3,
    },
}
#: The layouts the slow tests cover (every family is measured by the module's main).
TESTED = ("llama", "gemma3", "phi3")
#: The subprocess loads ~0.7 GB; far above the seconds it takes.
TIMEOUT_S = 900

_WORKER = """
import json, sys
import psutil
import jax, jax.numpy as jnp
from decoders.checkpoint import SafetensorsCheckpoint
from decoders.loading import load_model
from pathlib import Path

def high_water():  # this process's own peak (ru_maxrss would count the parent it forked from)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

jnp.zeros(8).block_until_ready()  # the CPU backend is up before the baseline
baseline = psutil.Process().memory_info().rss
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak restarts from here
model, _ = load_model(sys.argv[1])
jax.block_until_ready(model.params)
peak = high_water()
checkpoint = SafetensorsCheckpoint.open(Path(sys.argv[1]))
leaves = jax.tree_util.tree_leaves(model.params)
print(json.dumps({
    "baseline": baseline, "peak": peak, "weights": checkpoint.nbytes,
    "largest": checkpoint.largest, "params": sum(int(x.size) for x in leaves),
    "dtypes": sorted({str(x.dtype) for x in leaves}),
}))
"""


def measure(directory: Path) -> dict[str, Any]:
    """Load ``directory`` in a fresh process; its baseline, peak, W and largest tensor."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(directory)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"loading {directory} failed:\n{done.stderr[-4000:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def write(family: str, directory: Path) -> Path:
    from tests.decoders.family_support import write_checkpoint

    overrides = {**SHAPE, **EXTRA.get(family, {})}
    return write_checkpoint(family, directory, dtype="bfloat16", overrides=overrides)


@pytest.mark.slow
@pytest.mark.parametrize("family", TESTED)
def test_loading_peaks_under_the_bound(family: str, tmp_path: Path) -> None:
    report = measure(write(family, tmp_path / family))
    # The scenario: a realistic bfloat16 checkpoint, loaded without changing its dtype.
    assert report["params"] >= 300_000_000
    assert report["dtypes"] == ["bfloat16"]
    used = report["peak"] - report["baseline"]
    bound = SLACK * report["weights"] + report["largest"]
    assert used <= bound, f"{family}: {used / 2**20:.0f} MiB > {bound / 2**20:.0f} MiB"


def main() -> None:
    """Measure every family and print the README's table (Markdown)."""
    import tempfile

    from tests.decoders.family_support import FAMILIES

    print("| family | parameters | W (MiB) | largest (MiB) | peak above baseline (MiB) | / W |")
    print("|---|---|---|---|---|---|")
    for family in FAMILIES:
        with tempfile.TemporaryDirectory() as scratch:
            r = measure(write(family, Path(scratch) / family))
        used, mib = r["peak"] - r["baseline"], 2**20
        print(
            f"| {family} | {r['params'] / 1e6:.0f}M | {r['weights'] / mib:.0f} | "
            f"{r['largest'] / mib:.0f} | {used / mib:.0f} | {used / r['weights']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
