"""Build llama-cpp-python from source into a scratch virtual environment, for the benchmarks.

Run: ``python -m bench.llama_cpp_env [--venv PATH] [--force]``. Not part of CI, and nothing in the
packages imports it: llama.cpp is the baseline that ``bench.bench_gguf`` (and ``bench.bench_start``)
measure beside ours when this environment exists.

llama-cpp-python ships no wheel, so pip compiles llama.cpp (CMake, a C++ compiler, about 20
minutes on 2 cores). ``CMAKE_ARGS`` carries the llama.cpp CMake options, as the package's README
documents; ``-DGGML_NATIVE=ON`` compiles ggml for this CPU (``-march=native``: AVX2, AVX-512, VNNI
where present), which is what a user building it here gets. A second run finds the built package
and returns at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".bench-venv" / "llama-cpp"
PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
CMAKE_ARGS = "-DGGML_NATIVE=ON"
BUILD_JOBS = os.cpu_count() or 1
CHECK_TIMEOUT_S = 60  # importing llama_cpp loads its shared libraries: seconds, not minutes
BUILD_TIMEOUT_S = 3 * 3600  # pip compiling llama.cpp; hours means it hangs
JOB_TIMEOUT_S = 300  # one start-up job (load + 48 tokens) takes about a second

# Issue 15's start-up job done by llama.cpp: a fresh process loads the GGUF and writes one greedy
# chat answer (the GGUF's chat template, no shield), as `shield generate --chat` does with ours.
STARTUP_JOB = """\
import json, sys
from llama_cpp import Llama
model, max_new, prompt, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
counts = {"n_threads": int(threads[0]), "n_threads_batch": int(threads[0])} if threads else {}
llm = Llama(model_path=model, verbose=False, **counts)
answer = llm.create_chat_completion(
    messages=[{"role": "user", "content": prompt}], max_tokens=max_new, temperature=0.0)
print(json.dumps({"tokens": answer["usage"]["completion_tokens"]}))
"""


class LlamaCppBuildError(RuntimeError):
    """llama-cpp-python could not be built (missing tool, failed compile)."""


def venv_python(venv_dir: Path = DEFAULT_VENV) -> Path:
    """The interpreter of the scratch environment (which may not exist yet).

    Args:
        venv_dir: the virtual environment's folder.

    Returns:
        Its ``bin/python`` path.
    """
    return venv_dir / "bin" / "python"


def built_version(venv_dir: Path = DEFAULT_VENV) -> str | None:
    """The llama_cpp version importable in the scratch environment, or None.

    Args:
        venv_dir: the virtual environment's folder.

    Returns:
        ``llama_cpp.__version__`` as its interpreter reports it; None when the environment or the
        package is missing or does not import (a broken build counts as not built).
    """
    python = venv_python(venv_dir)
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=CHECK_TIMEOUT_S,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def is_built(venv_dir: Path = DEFAULT_VENV) -> bool:
    """Whether the scratch environment holds llama-cpp-python of :data:`VERSION`.

    Args:
        venv_dir: the virtual environment's folder.

    Returns:
        True when ``llama_cpp`` imports there and reports :data:`VERSION`.
    """
    return built_version(venv_dir) == VERSION


def missing_tools() -> list[str]:
    """The build tools this machine lacks, each with how to install it.

    Returns:
        One line per missing tool (empty when cmake and a C and C++ compiler are on ``PATH``, or
        named by ``CC`` / ``CXX``).
    """
    missing = []
    if shutil.which("cmake") is None:
        missing.append(
            "cmake (not on PATH): install it, e.g. `apt-get install cmake` or `pip install cmake`"
        )
    for variable, names, package in (
        ("CC", ("cc", "gcc", "clang"), "gcc"),
        ("CXX", ("c++", "g++", "clang++"), "g++"),
    ):
        chosen = os.environ.get(variable)
        candidates = (chosen,) if chosen else names
        if not any(shutil.which(name) for name in candidates):
            wanted = f"${variable}={chosen}" if chosen else f"any of {', '.join(names)}"
            missing.append(
                f"a {'C++' if variable == 'CXX' else 'C'} compiler ({wanted} not found): install "
                f"one, e.g. `apt-get install {package}` (or set {variable} to its path)"
            )
    return missing


def build(venv_dir: Path = DEFAULT_VENV, *, force: bool = False) -> Path:
    """Build llama-cpp-python :data:`VERSION` into ``venv_dir`` unless it is already there.

    Args:
        venv_dir: the virtual environment's folder (created when absent).
        force: rebuild even when the package is already importable.

    Returns:
        The environment's interpreter.

    Raises:
        LlamaCppBuildError: a build tool is missing (the message names it and how to install it),
            or pip failed (the message holds the end of pip's output and the command to rerun).

    Example:
        >>> python = build()  # doctest: +SKIP
        >>> is_built()  # doctest: +SKIP
        True
    """
    if is_built(venv_dir) and not force:
        return venv_python(venv_dir)
    missing = missing_tools()
    if missing:
        raise LlamaCppBuildError(
            f"cannot build {PACKAGE} {VERSION} from source; missing: " + "; ".join(missing)
        )
    if not venv_python(venv_dir).exists():
        venv.create(venv_dir, with_pip=True)
    command = [str(venv_python(venv_dir)), "-m", "pip", "install", "--no-binary", PACKAGE]
    command += [
        *(["--force-reinstall", "--no-cache-dir"] if force else []),
        f"{PACKAGE}=={VERSION}",
    ]
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(BUILD_JOBS)}
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, timeout=BUILD_TIMEOUT_S
    )
    if done.returncode != 0 or not is_built(venv_dir):
        output = (done.stdout + done.stderr)[-4000:]
        raise LlamaCppBuildError(
            f"building {PACKAGE} {VERSION} failed (pip exit status {done.returncode}); the end of "
            f"its output:\n{output}\nRerun by hand to see all of it: CMAKE_ARGS='{CMAKE_ARGS}' "
            f"{' '.join(command)} --verbose"
        )
    return venv_python(venv_dir)


@dataclass(frozen=True)
class StartupTimes:
    """Wall seconds of llama.cpp's start-up job, each in a fresh process."""

    first_s: float  # the first process of the run: cold-ish (the file may be in the page cache)
    warm_s: tuple[float, ...]  # the processes after it
    tokens: int  # tokens generated (fewer than asked when the model ends its answer)

    @property
    def warm_median_s(self) -> float:
        """The median of :attr:`warm_s`."""
        return float(statistics.median(self.warm_s))


def startup_seconds(
    *,
    runs: int = 3,
    max_new_tokens: int = 48,
    prompt: str = "Write one friendly sentence about autumn.",
    model: Path | None = None,
    threads: int | None = None,
    venv_dir: Path = DEFAULT_VENV,
) -> StartupTimes | None:
    """Time issue 15's start-up job done by llama.cpp: a fresh interpreter of the scratch
    environment imports llama_cpp, loads ``model`` and writes a greedy chat answer.

    Args:
        runs: warm processes after the first one (their median is the warm time).
        max_new_tokens: the answer's token limit.
        prompt: the user message (the GGUF's chat template wraps it).
        model: the GGUF file; None for the bundled SmolLM2 (:func:`decoders.bundled_model_path`).
        threads: llama.cpp threads; None keeps llama-cpp-python's defaults (half the cores for
            generation, all of them for the prompt), what a user of ``Llama()`` gets.
        venv_dir: the scratch environment.

    Returns:
        The times, or None when llama-cpp-python is not built there (see :func:`build`).

    Raises:
        RuntimeError: a process failed (the message holds the end of its error output).

    Example:
        >>> times = startup_seconds()  # doctest: +SKIP
        >>> times.warm_median_s if times else "not built"  # doctest: +SKIP
    """
    if not is_built(venv_dir):
        return None
    if model is None:
        from decoders.paths import bundled_model_path

        model = bundled_model_path()
    command = [str(venv_python(venv_dir)), "-c", STARTUP_JOB, str(model), str(max_new_tokens)]
    command += [prompt, *([] if threads is None else [str(threads)])]
    walls, tokens = [], 0
    for _ in range(runs + 1):
        began = time.perf_counter()
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=JOB_TIMEOUT_S
        )
        walls.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise RuntimeError(f"llama.cpp start-up job failed:\n{done.stderr[-3000:]}")
        tokens = json.loads(done.stdout.strip().splitlines()[-1])["tokens"]
    return StartupTimes(first_s=walls[0], warm_s=tuple(walls[1:]), tokens=tokens)


def main() -> None:
    """Build (or find) the environment and print its interpreter."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="environment folder")
    parser.add_argument("--force", action="store_true", help="rebuild even when already built")
    parser.add_argument(
        "--startup", action="store_true", help="then time issue 15's start-up job with it"
    )
    args = parser.parse_args()
    if is_built(args.venv) and not args.force:
        print(f"{PACKAGE} {VERSION} already built: {venv_python(args.venv)}")
    else:
        _build_verbosely(args.venv, args.force)
    if args.startup:
        times = startup_seconds(venv_dir=args.venv)
        assert times is not None  # built just above
        warm = ", ".join(f"{s:.2f}" for s in times.warm_s)
        print(
            f"llama.cpp start-up job ({times.tokens} tokens): first process {times.first_s:.2f} s, "
            f"warm median {times.warm_median_s:.2f} s ({warm})"
        )


def _build_verbosely(venv_dir: Path, force: bool) -> None:
    print(f"building {PACKAGE} {VERSION} into {venv_dir} (CMAKE_ARGS={CMAKE_ARGS}); this takes")
    print("about 20 minutes on 2 cores ...", flush=True)
    try:
        python = build(venv_dir, force=force)
    except LlamaCppBuildError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"built: {python}")


if __name__ == "__main__":
    main()
