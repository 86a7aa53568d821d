"""Two processes on localhost, joined by JAX's own ``jax.distributed`` (gloo collectives on the
CPU), decode one batch sharded over their 8 devices (``data`` 4 within each process, ``model`` 2
across them), plainly and shielded with rollbacks, and get the tokens of one process alone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.decoders.mesh_support import decode_all, tiny

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 2
DEVICES_PER_PROCESS = 4
#: The two processes compile and decode in about 80 s on 2 cores; this only stops a hang.
TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_processes() -> list[tuple[int, str, str]]:
    """Start every process, wait for all (or kill all at the deadline); (code, stdout, stderr)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"
    port = str(free_port())
    command = [sys.executable, "-m", "tests.decoders.mesh_support", "multihost"]
    procs = [
        subprocess.Popen(
            [*command, str(rank), str(PROCESSES), port],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(PROCESSES)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    outcomes = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outcomes.append((proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.communicate()
        pytest.fail(f"the {PROCESSES} processes did not finish within {TIMEOUT_S} s")
    return outcomes


@pytest.mark.slow
def test_two_processes_decode_what_one_process_decodes() -> None:
    outcomes = run_processes()
    for rank, (code, out, err) in enumerate(outcomes):
        assert code == 0, f"process {rank} exited with {code}:\n{out[-2000:]}\n{err[-4000:]}"
    report: dict[str, Any] = json.loads(outcomes[0][1].strip().splitlines()[-1])
    assert (report["processes"], report["devices"]) == (PROCESSES, 8)
    assert report["mesh"] == {"data": DEVICES_PER_PROCESS, "model": PROCESSES}
    single = decode_all(None, *tiny())
    # The scenario: the shielded batch rolled back (on the mesh and alone).
    assert sum(row["rollbacks"] for row in single["shielded"]) > 0
    assert report["runs"]["plain"] == single["plain"]
    assert report["runs"]["shielded"] == single["shielded"]
