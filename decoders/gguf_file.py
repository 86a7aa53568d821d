"""A GGUF file, memory-mapped: its metadata and each tensor as a view of the file's bytes.

The ``gguf`` package's reader builds a Python object per metadata value and per string of the
vocabulary (seconds for a 49k-token vocabulary, plus half a second to import the package); a
load that is to take a fraction of a second cannot afford it. :func:`open_gguf` reads the header
once: scalars and numeric arrays with ``numpy``, string arrays as lazy :class:`StringArray`
values (their lengths walked now, their strings decoded when first read), and the tensor table; every tensor is a read-only view of one ``np.memmap`` of the file, so nothing is read
until it is used. A tensor in a block format is ``uint8 [rows, row_bytes]``; ``F32`` and ``F16``
ones are their own dtype in the numpy shape (the file's dimensions reversed).

Example:
    >>> f = open_gguf(bundled_model_path())  # doctest: +SKIP
    >>> f.tensors["blk.0.attn_q.weight"].type_name, f.tensors["blk.0.attn_q.weight"].data.shape
    ('Q4_1', (576, 360))
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shield.errors import ModelLoadError

__all__ = ["GGML_TYPES", "GGUFFile", "GGUFTensor", "StringArray", "open_gguf"]

#: GGML tensor types by number: (name, weights per block, bytes per block). Only the types a
#: file may use are needed to find each tensor's bytes; which ones a loader accepts is its choice.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    30: ("BF16", 1, 2),
}
_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
#: Metadata value types with a fixed width: struct format.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_NUMPY = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8"}
_NUMPY.update({11: "<i8", 12: "<f8"})
_STRING, _ARRAY = 8, 9


@dataclasses.dataclass(frozen=True)
class GGUFTensor:
    """One tensor: ``data`` is a read-only view of the file (see the module docstring)."""

    name: str
    type_name: str
    shape: tuple[int, ...]  # numpy order: rows first, the row length last
    data: np.ndarray


@dataclasses.dataclass(frozen=True)
class GGUFFile:
    """A parsed GGUF file: metadata by key and tensors by name, in file order."""

    path: Path
    metadata: Mapping[str, Any]
    tensors: Mapping[str, GGUFTensor]


class _Cursor:
    """Reads little-endian values from the header; running off the end is a ModelLoadError."""

    def __init__(self, buffer: memoryview, path: Path) -> None:
        self.buffer, self.path, self.at = buffer, path, 0

    def take(self, size: int) -> memoryview:
        if size < 0 or self.at + size > len(self.buffer):
            raise ModelLoadError(f"{self.path}: truncated GGUF header at byte {self.at}.")
        view = self.buffer[self.at : self.at + size]
        self.at += size
        return view

    def scalar(self, code: str) -> Any:
        return struct.unpack("<" + code, self.take(struct.calcsize(code)))[0]

    def string(self) -> str:
        return bytes(self.take(self.scalar("Q"))).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ModelLoadError(f"{self.path}: unknown GGUF metadata type {kind}.")
        inner, count = self.scalar("I"), self.scalar("Q")
        if inner in _NUMPY:
            dtype = np.dtype(_NUMPY[inner])
            return np.frombuffer(self.take(count * dtype.itemsize), dtype).tolist()
        if inner == _STRING:
            return self.strings(count)
        return [self.value(inner) for _ in range(count)]

    def strings(self, count: int) -> StringArray:
        # Only the lengths are walked now; the strings decode when first read.
        offsets = np.empty(count + 1, np.int64)
        buffer, at = self.buffer, self.at
        unpack = struct.Struct("<Q").unpack_from
        for index in range(count):
            if at + 8 > len(buffer):
                raise ModelLoadError(f"{self.path}: truncated GGUF header at byte {at}.")
            offsets[index] = at + 8
            at += 8 + unpack(buffer, at)[0]
        offsets[count] = at + 8
        self.take(at - self.at)
        return StringArray(buffer, offsets)


class StringArray(Sequence[str]):
    """A GGUF string array, decoded on first access (a vocabulary is read only when needed)."""

    def __init__(self, buffer: memoryview, offsets: np.ndarray) -> None:
        self._buffer, self._offsets = buffer, offsets  # string i: offsets[i] .. offsets[i+1] - 8
        self._decoded: list[str] | None = None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _decode(self, index: int) -> str:
        start, end = int(self._offsets[index]), int(self._offsets[index + 1]) - 8
        return bytes(self._buffer[start:end]).decode("utf-8", errors="replace")

    def __getitem__(self, index: Any) -> Any:
        if self._decoded is None and isinstance(index, int):
            return self._decode(range(len(self))[index])
        if self._decoded is None:
            self._decoded = [self._decode(i) for i in range(len(self))]
        return self._decoded[index]

    def __iter__(self) -> Iterator[str]:
        if self._decoded is None:
            self._decoded = [self._decode(i) for i in range(len(self))]
        return iter(self._decoded)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def open_gguf(path: Path) -> GGUFFile:
    """Parse the header of a GGUF file and map its tensors.

    Args:
        path: the ``.gguf`` file.

    Returns:
        The metadata and the tensors (views of a read-only memory map).

    Raises:
        ModelLoadError: the file is missing, not GGUF, truncated, or holds a tensor of a type
            missing from :data:`GGML_TYPES` or of a size the file does not hold.
    """
    try:
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path}: cannot map the GGUF file ({error}).") from error
    cursor = _Cursor(memoryview(mapped.data), path)
    if bytes(cursor.take(4)) != _MAGIC:
        raise ModelLoadError(f"{path}: not a GGUF file (expected the magic bytes 'GGUF').")
    version = cursor.scalar("I")
    if version not in (2, 3):
        raise ModelLoadError(f"{path}: GGUF version {version} is not supported; expected 2 or 3.")
    tensor_count, kv_count = cursor.scalar("Q"), cursor.scalar("Q")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.scalar("I"))
    table = []
    for _ in range(tensor_count):
        name = cursor.string()
        dims = [cursor.scalar("Q") for _ in range(cursor.scalar("I"))]
        table.append((name, dims, cursor.scalar("I"), cursor.scalar("Q")))
    alignment = int(metadata.get("general.alignment", _DEFAULT_ALIGNMENT))
    start = -(-cursor.at // alignment) * alignment
    tensors = {
        name: _tensor(mapped, path, start, dims, kind, offset, name)
        for name, dims, kind, offset in table
    }
    return GGUFFile(path=path, metadata=metadata, tensors=tensors)


def _tensor(
    mapped: np.ndarray, path: Path, start: int, dims: list[int], kind: int, offset: int, name: str
) -> GGUFTensor:
    if kind not in GGML_TYPES:
        raise ModelLoadError(f"{path}: tensor {name!r} has unknown GGML type {kind}.")
    type_name, block_weights, block_bytes = GGML_TYPES[kind]
    shape = tuple(reversed(dims)) or (1,)
    if shape[-1] % block_weights:
        raise ModelLoadError(
            f"{path}: tensor {name!r} rows of {shape[-1]} are not whole {type_name} blocks."
        )
    row_bytes = shape[-1] // block_weights * block_bytes
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    begin = start + offset
    if begin + rows * row_bytes > mapped.shape[0]:
        raise ModelLoadError(f"{path}: tensor {name!r} runs past the end of the file.")
    raw = mapped[begin : begin + rows * row_bytes]
    if block_weights == 1:  # F32, F16, BF16: the values themselves, in numpy's shape
        dtype = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[type_name]
        data = raw.view(dtype).reshape(shape)
    else:
        data = raw.reshape(*shape[:-1], row_bytes)
    return GGUFTensor(name=name, type_name=type_name, shape=shape, data=data)
