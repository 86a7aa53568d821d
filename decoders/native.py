"""The native CPU kernels for quantised weights: compiled once, cached on disk, registered with XLA.

XLA's CPU backend lowers ``x @ w.astype(float32)`` by writing the float32 weights to memory
before the dot, so quantised weights end up slower than float32 ones. The kernels in
``decoders/kernels/`` convert each weight row in registers instead: ``int8_matmul.cc`` for int8
rows, ``gguf_matmul.cc`` for the GGUF block formats as the file stores them (float32
activations, exact), ``gguf_q8_matmul.cc`` for the same blocks against activations quantised to
8 bits per block of 32 (integer block products, llama.cpp's scheme). All are XLA FFI handlers in
one library, called from jitted code through :func:`jax.ffi.ffi_call` like any other
operation.

The shared library is compiled on first use for the machine it runs on (``-march=native``) and
stored under ``$SHIELD_CACHE_DIR/kernels/`` (see :func:`decoders.paths.cache_root`), keyed by the
source, the compiler, the JAX version and the CPU's feature flags, so a changed source or machine
gets a fresh build and every later process only loads the file. The compiler is, in order,
``$SHIELD_CXX`` (a command line), the ``ziglang`` package installed with shield (a pinned,
self-contained clang), or ``c++`` on the ``PATH``.

Example:
    >>> path = build_kernel()  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'libshield_kernels.so'
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

from decoders.paths import cache_root
from shield.errors import DecoderError

__all__ = [
    "CUSTOM_CALL_TARGETS",
    "GGUF_MATMUL_TARGET",
    "GGUF_Q8_MATMUL_TARGET",
    "INT8_MATMUL_TARGET",
    "KERNEL_DIRECTORY",
    "KERNEL_SOURCES",
    "NativeKernelError",
    "build_kernel",
    "compiler_command",
    "register_kernels",
    "require_kernel",
]

#: The C++ sources and headers of the kernels, shipped with the package.
KERNEL_DIRECTORY = Path(__file__).parent / "kernels"
#: The translation units compiled into the one library (headers live beside them).
KERNEL_SOURCES: tuple[Path, ...] = (
    KERNEL_DIRECTORY / "int8_matmul.cc",
    KERNEL_DIRECTORY / "gguf_matmul.cc",
    KERNEL_DIRECTORY / "gguf_q8_matmul.cc",
)
#: Name under which the int8 matmul is registered with XLA (CPU platform).
INT8_MATMUL_TARGET = "shield_int8_matmul"
#: Name under which the GGUF block matmul is registered with XLA (CPU platform).
GGUF_MATMUL_TARGET = "shield_gguf_matmul"
#: Name of the GGUF block matmul with activations quantised to 8 bits per block (CPU platform).
GGUF_Q8_MATMUL_TARGET = "shield_gguf_q8_matmul"
#: Exported symbol of each target.
_SYMBOLS = {
    INT8_MATMUL_TARGET: "ShieldInt8Matmul",
    GGUF_MATMUL_TARGET: "ShieldGgufMatmul",
    GGUF_Q8_MATMUL_TARGET: "ShieldGgufQ8Matmul",
}
#: Every custom-call target the library registers (``jax.export`` must be told to allow them:
#: ``export.DisabledSafetyCheck.custom_call(target)``; they are rebuilt per machine, so an export
#: holding them is valid only where this library is registered).
CUSTOM_CALL_TARGETS: tuple[str, ...] = tuple(_SYMBOLS)
#: Seconds a compile may take before it is abandoned (zig builds its C++ runtime on first use).
COMPILE_TIMEOUT_S = 600.0
_LIBRARY_NAME = "libshield_kernels.so"
# -ffp-contract=off: the GGUF kernel rounds q * scale and + offset separately, as gguf does.
_FLAGS = (
    "-O3",
    "-march=native",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-fvisibility=hidden",
    "-ffp-contract=off",
    "-w",
)


class NativeKernelError(DecoderError):
    """The native kernel could not be compiled or loaded."""


def compiler_command() -> list[str]:
    """The C++ compiler command line used to build the kernel.

    Returns:
        ``$SHIELD_CXX`` split like a shell would, else ``python -m ziglang c++`` when the
        ``ziglang`` package is installed, else ``c++``/``g++``/``clang++`` from the ``PATH``.

    Raises:
        NativeKernelError: no compiler is available.
    """
    override = os.environ.get("SHIELD_CXX")
    if override:
        return shlex.split(override)
    if importlib.util.find_spec("ziglang") is not None:
        return [sys.executable, "-m", "ziglang", "c++"]
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return [found]
    raise NativeKernelError(
        "quantised weights on the CPU need a C++17 compiler to build their kernels, and none was found: "
        "expected the `ziglang` package (installed with shield), `c++` on the PATH or "
        "$SHIELD_CXX. Install one, or load the model with weights='dense'."
    )


def _cpu_flags() -> str:
    # The build is -march=native: a cache shared between machines must not hand one CPU's
    # binary to another.
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build_key(command: list[str]) -> str:
    digest = hashlib.sha256()
    sources = sorted(KERNEL_DIRECTORY.glob("*.[ch]*"))  # the headers too
    for part in (
        *(path.read_bytes() for path in sources),
        " ".join(command).encode(),
        " ".join(_FLAGS).encode(),
        jax.__version__.encode(),
        _cpu_flags().encode(),
    ):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def build_kernel(cache_directory: Path | None = None) -> Path:
    """Compile the kernel library if no build for this source, compiler and CPU is cached.

    Args:
        cache_directory: where builds are kept; defaults to ``cache_root() / "kernels"``.

    Returns:
        The path of the shared library.

    Raises:
        NativeKernelError: no compiler, or the compile failed (the message quotes the compiler).
    """

    command = compiler_command()
    directory = (cache_directory or cache_root() / "kernels") / _build_key(command)
    library = directory / _LIBRARY_NAME
    if library.is_file():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    # Compile beside the target and rename: concurrent builders (test workers) each finish
    # with a complete file, and a reader never sees a partial one.
    handle, staging = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=directory)
    os.close(handle)
    args = [
        *command,
        *_FLAGS,
        f"-I{jax.ffi.include_dir()}",
        *(str(path) for path in KERNEL_SOURCES),
        "-o",
        staging,
    ]
    try:
        completed = subprocess.run(
            args, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        Path(staging).unlink(missing_ok=True)
        raise NativeKernelError(
            f"compiling {KERNEL_DIRECTORY} with {shlex.join(command)} failed: {error}. Set "
            "$SHIELD_CXX to a working C++17 compiler, or load the model with weights='dense'."
        ) from error
    if completed.returncode != 0:
        Path(staging).unlink(missing_ok=True)
        tail = (completed.stderr or completed.stdout).strip()[-2000:]
        raise NativeKernelError(
            f"compiling {KERNEL_DIRECTORY} with {shlex.join(command)} exited with "
            f"{completed.returncode}:\n{tail}\nSet $SHIELD_CXX to a working C++17 compiler, or "
            "load the model with weights='dense'."
        )
    os.replace(staging, library)
    return library


@functools.cache
def register_kernels() -> Path:
    """Build (if needed), load and register the kernels with XLA; idempotent per process.

    Returns:
        The path of the loaded library.

    Raises:
        NativeKernelError: the library could not be built or loaded.
    """
    library = build_kernel()
    try:
        handle = ctypes.cdll.LoadLibrary(str(library))
        symbols = {target: getattr(handle, name) for target, name in _SYMBOLS.items()}
    except (OSError, AttributeError) as error:
        raise NativeKernelError(
            f"{library}: the kernel library does not load ({error}); delete the file to rebuild."
        ) from error
    for target, symbol in symbols.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(symbol), platform="cpu")
    return library


def require_kernel() -> None:
    """Build and register the kernel when the default backend is the CPU; otherwise nothing.

    Called wherever quantised weights are made or used, so a missing compiler is reported there and
    accelerator hosts never compile it (their products never lower the CPU branch).

    Raises:
        NativeKernelError: the kernel cannot be built or loaded.
    """
    if jax.default_backend() == "cpu":
        register_kernels()
