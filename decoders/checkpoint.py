"""Safetensors checkpoints as they ship: one file or shards with an index, read tensor by tensor.

:class:`SafetensorsCheckpoint` is a read-only ``Mapping`` from tensor name to a numpy array in
the file's own dtype (``BF16`` becomes ``ml_dtypes.bfloat16``, never float32). Opening it reads
only the headers (and ``model.safetensors.index.json``) and checks them completely: every shard the
index names exists, every tensor the index maps is in its shard, every tensor's byte range lies
inside its file, matches its dtype and shape, and no two tensors overlap. A tensor's bytes are read
only when it is used: a lookup maps that tensor's byte range alone (read-only ``np.memmap``), so
looking at its shape or dtype reads nothing.

Why one map per tensor and not one map of the whole file (what ``safetensors.safe_open`` keeps):
pages of a mapped file that have been touched count in the process's resident memory until the
mapping is closed, so mapping a whole checkpoint and copying every tensor to the device peaks at
the file's size *plus* the device copies (2 W on a CPU, where device memory is host memory). A
tensor's own map is closed as soon as the loader drops the array after placing it, so at most one
tensor's pages are resident beyond what the device holds.

Example:
    >>> checkpoint = SafetensorsCheckpoint.open(Path("Llama-3.2-1B"))  # doctest: +SKIP
    >>> checkpoint["model.norm.weight"].dtype  # doctest: +SKIP
    dtype(bfloat16)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from shield.errors import ModelLoadError

__all__ = [
    "INDEX_NAME",
    "SAFETENSORS_DTYPES",
    "SINGLE_NAME",
    "SafetensorsCheckpoint",
    "TensorEntry",
]

#: The file of a single-file checkpoint, and the index of a sharded one (transformers' names).
SINGLE_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
#: Safetensors dtypes this reader returns, and their numpy dtypes.
SAFETENSORS_DTYPES: dict[str, Any] = {
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F64": np.dtype(np.float64),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
#: The largest header this reader accepts (the format's own limit is 100 MB).
MAX_HEADER_BYTES = 100_000_000


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: its file, dtype name, shape and absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the tensor's elements."""
        return np.dtype(SAFETENSORS_DTYPES[self.dtype])

    @property
    def nbytes(self) -> int:
        """Its size in bytes."""
        return self.end - self.begin


def _header(file: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """The tensors of one safetensors file, checked against its size; and its metadata."""
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelLoadError(f"{file}: truncated safetensors file ({size} bytes).")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise ModelLoadError(
                    f"{file}: corrupt safetensors header length {length} in a file of {size} "
                    "bytes; the file is truncated or not safetensors."
                )
            raw = json.loads(handle.read(length).decode("utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{file}: checkpoint shard is missing.") from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelLoadError(f"{file}: unreadable safetensors header ({error}).") from error
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{file}: safetensors header is not a JSON object.")
    metadata = raw.pop("__metadata__", None) or {}
    base = 8 + length
    entries = {name: _entry(file, name, value, base, size) for name, value in raw.items()}
    spans = sorted((e.begin, e.end, name) for name, e in entries.items())
    for (_, end, before), (begin, _, after) in itertools.pairwise(spans):
        if begin < end:
            raise ModelLoadError(f"{file}: tensors {before!r} and {after!r} overlap; corrupt file.")
    return entries, dict(metadata)


def _entry(file: Path, name: str, value: Any, base: int, size: int) -> TensorEntry:
    try:
        dtype, shape = str(value["dtype"]), tuple(int(d) for d in value["shape"])
        begin, end = (base + int(o) for o in value["data_offsets"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelLoadError(f"{file}: tensor {name!r} has a malformed header entry.") from error
    if dtype not in SAFETENSORS_DTYPES:
        raise ModelLoadError(
            f"{file}: tensor {name!r} has dtype {dtype}; supported: "
            f"{', '.join(SAFETENSORS_DTYPES)}. Convert the checkpoint (e.g. to BF16)."
        )
    expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
    if end - begin != expected or begin < base or min(shape, default=0) < 0:
        raise ModelLoadError(
            f"{file}: tensor {name!r} declares dtype {dtype} and shape {shape} ({expected} "
            f"bytes) but spans {end - begin} bytes; the header does not match its data."
        )
    if end > size:
        raise ModelLoadError(
            f"{file}: tensor {name!r} ends at byte {end}, past the end of the {size}-byte file; "
            "the shard is truncated (download it again)."
        )
    return TensorEntry(file=file, dtype=dtype, shape=shape, begin=begin, end=end)


class SafetensorsCheckpoint(Mapping[str, np.ndarray]):
    """The tensors of a safetensors checkpoint, read on lookup in the file's dtype.

    Build one with :meth:`open`. Each lookup returns a new read-only map of that tensor (nothing
    is cached), so a loader that drops each tensor after placing it holds one at a time.

    Args:
        entries: every tensor's location, already checked.
        source: the directory, named in errors.
    """

    def __init__(self, entries: Mapping[str, TensorEntry], source: Path) -> None:
        self._entries = dict(entries)
        self.source = source

    @classmethod
    def open(cls, directory: Path) -> SafetensorsCheckpoint:
        """Index the checkpoint of a Hugging Face directory.

        The index ``model.safetensors.index.json`` when present, else ``model.safetensors``,
        else every ``*.safetensors`` file of the directory.

        Args:
            directory: the model directory.

        Returns:
            The checkpoint (headers read and checked, no tensor read).

        Raises:
            ModelLoadError: no weights; a shard missing or corrupt; the index names a tensor its
                shard lacks; a tensor in two files; an unsupported dtype; a header that does not
                match its data.
        """
        index = directory / INDEX_NAME
        if index.is_file():
            return cls._from_index(directory, index)
        files = [directory / SINGLE_NAME] if (directory / SINGLE_NAME).is_file() else []
        files = files or sorted(directory.glob("*.safetensors"))
        if not files:
            raise ModelLoadError(
                f"{directory}: no weights; expected {SINGLE_NAME}, {INDEX_NAME} with its shards, "
                "or *.safetensors files."
            )
        entries: dict[str, TensorEntry] = {}
        for file in files:
            for name, entry in _header(file)[0].items():
                if name in entries:
                    raise ModelLoadError(
                        f"{directory}: tensor {name!r} is in both {entries[name].file.name} and "
                        f"{file.name}; remove the stray file."
                    )
                entries[name] = entry
        return cls(entries, directory)

    @classmethod
    def _from_index(cls, directory: Path, index: Path) -> SafetensorsCheckpoint:
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            pairs = {str(name): str(file) for name, file in weight_map.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelLoadError(
                f"{index}: unreadable index (expected JSON with a 'weight_map' of tensor name to "
                f"shard file; {error})."
            ) from error
        headers: dict[str, dict[str, TensorEntry]] = {}
        entries = {}
        for name, file_name in sorted(pairs.items()):
            shard = directory / file_name
            if Path(file_name).name != file_name:
                raise ModelLoadError(f"{index}: shard {file_name!r} is not a file name.")
            if file_name not in headers:
                if not shard.is_file():
                    raise ModelLoadError(
                        f"{shard}: checkpoint shard named by {index.name} is missing; download "
                        "every shard of the model."
                    )
                headers[file_name] = _header(shard)[0]
            if name not in headers[file_name]:
                raise ModelLoadError(
                    f"{shard}: the index maps tensor {name!r} to this shard, which does not hold "
                    "it; the shard or the index is corrupt."
                )
            entries[name] = headers[file_name][name]
        return cls(entries, directory)

    def entry(self, name: str) -> TensorEntry:
        """Where tensor ``name`` lives.

        Raises:
            ModelLoadError: the checkpoint has no tensor of that name.
        """
        found = self._entries.get(name)
        if found is None:
            raise ModelLoadError(
                f"{self.source}: tensor {name!r} is missing from the checkpoint "
                f"({len(self._entries)} tensors); the checkpoint is incomplete or of another model."
            )
        return found

    @property
    def nbytes(self) -> int:
        """The bytes of every tensor together (W)."""
        return sum(entry.nbytes for entry in self._entries.values())

    @property
    def largest(self) -> int:
        """The bytes of the largest tensor."""
        return max((entry.nbytes for entry in self._entries.values()), default=0)

    def dtypes(self) -> set[str]:
        """The safetensors dtypes of the floating-point tensors."""
        return {
            e.dtype
            for e in self._entries.values()
            if e.numpy_dtype.kind == "f" or e.dtype == "BF16"
        }

    def __getitem__(self, name: str) -> np.ndarray:
        entry = self.entry(name)
        if entry.nbytes == 0:  # nothing to map
            return np.empty(entry.shape, entry.numpy_dtype)
        try:
            return np.memmap(
                entry.file, dtype=entry.numpy_dtype, mode="r", offset=entry.begin, shape=entry.shape
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"{entry.file}: tensor {name!r} cannot be read ({error})."
            ) from error

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
