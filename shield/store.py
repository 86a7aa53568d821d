"""The on-disk store: where cached files live, whether caching is on, and checksummed entries.

One cache root serves every cache of the project (compiled shields here; converted models, native
kernels and JAX's compilation cache in ``decoders``): ``$SHIELD_CACHE_DIR``, by default
``~/.cache/shield``. ``decoders.paths.cache_root`` is this function.

An entry is one ``.npz`` file (numpy arrays, never pickles) whose member ``__meta__`` holds JSON
metadata: the entry's key, free-form fields, and a SHA-256 digest of the metadata and of every
array (name, dtype, shape and bytes). A reader trusts an entry only when it parses, names the key
it was asked for and matches its digest; anything else (a truncated or corrupt file, a file of
another key) is reported as ``corrupt`` and never used. Writers write a temporary file in the
entry's folder and ``os.replace`` it onto the entry, so a reader sees either the old complete file
or the new complete file, and two writers of one key leave one of their complete files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "CACHE_DIR_ENV",
    "MAX_ENTRY_BYTES",
    "NO_CACHE_ENV",
    "Entry",
    "cache_enabled",
    "cache_root",
    "caching",
    "evict",
    "read_entry",
    "sources_digest",
    "write_entry",
]

#: The environment variable that moves the cache root.
CACHE_DIR_ENV = "SHIELD_CACHE_DIR"
#: The environment variable that turns the compile caches off (any value but ``""`` or ``"0"``).
NO_CACHE_ENV = "SHIELD_NO_CACHE"
#: Larger files are not read: no entry of ours comes near this, so such a file is not ours.
MAX_ENTRY_BYTES = 1 << 30
#: The name of the metadata member of an entry.
_META = "__meta__"
#: Version of the entry layout (the metadata member and the digest).
_LAYOUT = 1

_ENABLED: ContextVar[bool | None] = ContextVar("shield_cache_enabled", default=None)


def cache_root() -> Path:
    """Where cached files are stored.

    Returns:
        ``$SHIELD_CACHE_DIR`` when set, else ``~/.cache/shield``.
    """
    override = os.environ.get(CACHE_DIR_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "shield"


def cache_enabled(*, default: bool = False) -> bool:
    """Whether the compile caches (compiled shields, JAX compilations) may be read and written.

    ``$SHIELD_NO_CACHE`` (any value but ``""`` or ``"0"``) turns them off everywhere; otherwise the
    innermost :func:`caching` block decides. The command line runs every command inside
    ``caching(True)``; a library call outside any block gets ``default``.

    Args:
        default: the answer outside any :func:`caching` block (the compiled-shield cache asks with
            False, so ``shield.compile`` writes no files unless asked to; an explicit
            ``decoders.enable_compilation_cache()`` asks with True).

    Returns:
        Whether caching is on here.
    """
    if os.environ.get(NO_CACHE_ENV, "").strip() not in ("", "0"):
        return False
    override = _ENABLED.get()
    return default if override is None else override


@contextlib.contextmanager
def caching(enabled: bool) -> Iterator[None]:
    """Turn the compile caches on or off inside a ``with`` block (this thread and task only).

    Args:
        enabled: the setting inside the block (``$SHIELD_NO_CACHE`` still turns them off).

    Yields:
        Nothing; the previous setting is restored on exit.

    Example:
        >>> import shield, specs
        >>> with caching(True):  # doctest: +SKIP
        ...     guard = shield.compile(specs.load_library("toxicity"))  # stored, then read back
    """
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


@dataclass(frozen=True)
class Entry:
    """The outcome of reading an entry.

    Attributes:
        status: ``hit`` (complete and checked), ``miss`` (no file) or ``corrupt`` (a file that
            failed a check; ``reason`` says which).
        meta: the metadata (``hit`` only; without the digest).
        arrays: the arrays by name (``hit`` only).
        reason: why a file was rejected (``corrupt`` only).
    """

    status: Literal["hit", "miss", "corrupt"]
    meta: Mapping[str, Any] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    reason: str = ""


def _digest(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    hasher = hashlib.sha256(json.dumps(meta, sort_keys=True).encode("utf-8"))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])  # no copy for what np.load returns
        header = json.dumps([name, array.dtype.str, list(array.shape)])
        hasher.update(len(header).to_bytes(8, "little") + header.encode("utf-8"))
        hasher.update(array.reshape(-1).view(np.uint8).data)
    return hasher.hexdigest()


def write_entry(
    path: Path, key: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Write an entry atomically (a temporary file in the same folder, then ``os.replace``).

    Args:
        path: the entry's file.
        key: the entry's key; :func:`read_entry` rejects the file unless asked for this key.
        meta: JSON-serialisable metadata (a ``dict`` of plain values).
        arrays: the arrays by name (numeric dtypes; object arrays are refused).

    Raises:
        ValueError: an array name is reserved or an array holds Python objects.
        OSError: the folder cannot be created or written.
    """
    if _META in arrays:
        raise ValueError(f"{_META!r} is reserved for the metadata; rename that array")
    for name, array in arrays.items():
        if np.asarray(array).dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects; store numeric arrays only")
    body = {"layout": _LAYOUT, "key": key, "meta": dict(meta)}
    record = {**body, "digest": _digest(body, arrays)}
    encoded = np.frombuffer(json.dumps(record, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            members: dict[str, Any] = {_META: encoded, **arrays}
            np.savez_compressed(handle, **members)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_entry(path: Path, key: str) -> Entry:
    """Read and check an entry written by :func:`write_entry`.

    Args:
        path: the entry's file.
        key: the key the caller expects.

    Returns:
        An :class:`Entry`: ``hit`` with the metadata and arrays, ``miss`` when there is no file,
        ``corrupt`` when the file is unreadable, truncated, of another key or fails its digest.
    """
    try:
        with path.open("rb") as handle:  # one read: a concurrent os.replace cannot mix files
            data = handle.read(MAX_ENTRY_BYTES + 1)
    except FileNotFoundError:
        return Entry("miss")
    except OSError as error:
        return Entry("corrupt", reason=f"unreadable: {error}")
    if len(data) > MAX_ENTRY_BYTES:
        return Entry("corrupt", reason=f"larger than MAX_ENTRY_BYTES={MAX_ENTRY_BYTES}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        record = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
        body = {name: record[name] for name in ("layout", "key", "meta")}
        digest = record["digest"]
    except Exception as error:  # a damaged zip fails in many ways (zlib, struct, ...): none trusted
        return Entry("corrupt", reason=f"not a complete entry: {type(error).__name__}: {error}")
    if body["layout"] != _LAYOUT or body["key"] != key:
        return Entry("corrupt", reason="written for another key or layout")
    if _digest(body, arrays) != digest:
        return Entry("corrupt", reason="digest mismatch")
    return Entry("hit", meta=body["meta"], arrays=arrays)


def evict(directory: Path, keep: int, pattern: str = "*.npz") -> None:
    """Delete the least recently used entries beyond ``keep`` (a reader that already opened one
    still reads it whole; a later reader misses and rebuilds it).

    Args:
        directory: the folder of the entries.
        keep: how many entries to keep (readers touch an entry when they use it).
        pattern: which files are entries.
    """
    entries = []
    for path in directory.glob(pattern):
        with contextlib.suppress(OSError):  # another process may have deleted it meanwhile
            entries.append((path.stat().st_mtime, path))
    entries.sort()
    for _, path in entries[: max(0, len(entries) - keep)]:
        with contextlib.suppress(OSError):
            path.unlink()


def sources_digest(files: Iterable[Path], *, salt: str, root: Path | None = None) -> str:
    """A SHA-256 of source files (names and contents) and ``salt``: the version of the code that
    wrote an entry, so that an edit to it misses every entry it wrote.

    Args:
        files: the files to hash (sorted here; their order does not matter).
        salt: mixed in first (e.g. a format version).
        root: names are hashed relative to it; the file names alone when None.

    Returns:
        A hex digest.

    Raises:
        OSError: a file cannot be read.
    """
    hasher = hashlib.sha256(salt.encode("utf-8"))
    for path in sorted(files):
        content = path.read_bytes()
        name = (path.relative_to(root).as_posix() if root else path.name).encode("utf-8")
        hasher.update(len(name).to_bytes(8, "little") + name)
        hasher.update(len(content).to_bytes(8, "little") + content)
    return hasher.hexdigest()
