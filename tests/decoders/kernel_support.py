"""Running a kernel check in a fresh interpreter with another build of the native kernels.

The instruction-set variants this CPU would not choose (AVX2, portable, AVX-512 without VNNI) are
forced by compiling with the wider units disabled; the build is per process, so each check runs a
small script in a subprocess with its own compiler flags and cache folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from decoders.native import compiler_command

ROOT = Path(__file__).resolve().parents[2]


def variant_compiler(flags: str) -> str:
    """``SHIELD_CXX`` for a build with ``flags`` (a system ``c++`` when there is one: zig
    rebuilds its C++ runtime, a minute, for every new set of CPU features; the system compiler
    does not)."""
    return f"{shutil.which('c++') or ' '.join(compiler_command())} {flags}"


def run_check(script: str, env: Mapping[str, str]) -> str:
    """Run ``script`` with ``python -c`` from the repository root under ``env`` (added to this
    process's environment); assert it succeeded and return the last line it printed."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def run_variant(script: str, flags: str, cache: Path) -> str:
    """:func:`run_check` with the kernels built with ``flags`` into the cache folder ``cache``."""
    return run_check(
        script, {"SHIELD_CXX": variant_compiler(flags), "SHIELD_CACHE_DIR": str(cache)}
    )
