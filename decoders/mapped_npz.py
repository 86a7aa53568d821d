"""Read an uncompressed ``.npz`` archive as memory-mapped arrays, without reading it.

``np.load`` of an ``.npz`` reads every member into memory and checks its CRC: for the converted
float32 weights of the bundled model (540 MB) that is about 0.8 s of every start, spent before the
weights are copied once more into their device layout. An archive written by ``np.savez`` (not
``savez_compressed``) stores each ``.npy`` member as is, so each array can be a view of one
read-only mapping of the file instead: the loader's one copy into the device layout then reads the
pages straight from the page cache.

What is checked: the archive's directory parses, every member is stored uncompressed and
unencrypted, its local header and ``.npy`` header parse, and its data lies inside the file. What
is not: the members' CRCs (reading every byte to check them is the cost this avoids). Writers of
such archives replace them atomically (a new file, then ``os.replace``), so a mapping never sees a
half-written file; the old file's pages stay valid for as long as they are mapped.

:func:`save_aligned_npz` writes such an archive with every member's data at a multiple of
:data:`ALIGNMENT` bytes (padding in each member's zip extra field, as Android's ``zipalign`` does;
``np.load`` and any zip reader still read it): a CPU device adopts an aligned, C-contiguous view
without copying it, so arrays stored in their final layout cost no copy at all on load.
"""

from __future__ import annotations

import mmap
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["ALIGNMENT", "map_npz", "save_aligned_npz"]

#: Alignment of every member's data in :func:`save_aligned_npz` archives (what XLA's CPU client
#: needs to alias a host buffer instead of copying it).
ALIGNMENT = 64
#: Zip extra-field id of the padding (the one ``zipalign`` uses; readers skip unknown ids).
_PADDING_ID = 0xD935

#: Layout of a zip local file header (APPNOTE 4.3.7): signature, ..., name length, extra length.
_LOCAL_HEADER = struct.Struct("<4s22xHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"


def map_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` file as read-only views of one mapping of it.

    Args:
        path: an archive written by ``np.savez``.

    Returns:
        The arrays by member name (without ``.npy``), read-only, in the archive's order. The
        mapping is released when the last of them is.

    Raises:
        OSError: the file cannot be opened or mapped.
        ValueError: the file is not an uncompressed ``.npz`` of plain arrays (a compressed or
            encrypted member, a damaged header, an object array, data past the end of the file).

    Example:
        >>> named = map_npz(Path("weights.npz"))  # doctest: +SKIP
        >>> named["model.norm.weight"].flags.writeable  # doctest: +SKIP
        False
    """
    with path.open("rb") as handle:
        try:
            members = zipfile.ZipFile(handle).infolist()
        except zipfile.BadZipFile as error:
            raise ValueError(f"{path}: not a zip archive ({error})") from error
        size = handle.seek(0, 2)
        if size == 0:
            return {}
        mapping = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
    buffer = memoryview(mapping)
    arrays = {}
    for member in members:
        name = member.filename.removesuffix(".npy")
        arrays[name] = _member_array(path, buffer, member, size)
    return arrays


def save_aligned_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` whose members' data are 64-byte aligned.

    Args:
        path: the archive to write (replaced if it exists; callers write a new file and rename
            it, so that readers never map a half-written one).
        arrays: the arrays by name, written in this order; each is read once.

    Raises:
        OSError: the file cannot be written.
        ValueError: an array holds Python objects.

    Example:
        >>> save_aligned_npz(Path("w.npz"), {"w": np.ones((2, 3), np.float32)})  # doctest: +SKIP
        >>> map_npz(Path("w.npz"))["w"].ctypes.data % ALIGNMENT  # doctest: +SKIP
        0
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            array = np.asanyarray(value)
            if array.dtype.hasobject:
                raise ValueError(
                    f"{path}: array {name!r} holds Python objects; expected plain arrays"
                )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.CRC = info.compress_size = info.file_size = 0  # set for real when written
            # np.lib.format pads the .npy header to a multiple of 64 bytes itself; the local zip
            # header before it is padded here. Members near the 4 GiB zip limit get zip64 fields.
            zip64 = array.nbytes + 4096 > zipfile.ZIP64_LIMIT
            start = archive.fp.tell() if archive.fp is not None else 0
            pad = -(start + len(info.FileHeader(zip64))) % ALIGNMENT
            if 0 < pad < 4:  # an extra field needs 4 bytes of its own
                pad += ALIGNMENT
            if pad:
                info.extra = struct.pack("<HH", _PADDING_ID, pad - 4) + bytes(pad - 4)
            with archive.open(info, "w", force_zip64=zip64) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _member_array(path: Path, buffer: memoryview, member: zipfile.ZipInfo, size: int) -> np.ndarray:
    """One stored ``.npy`` member as a read-only view of ``buffer``."""
    where = f"{path}: member {member.filename!r}"
    if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 0x1:
        raise ValueError(f"{where} is compressed or encrypted; expected np.savez's stored members")
    start = member.header_offset
    if start + _LOCAL_HEADER.size > size:
        raise ValueError(f"{where}: local header past the end of the file")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(buffer, start)
    if signature != _LOCAL_SIGNATURE:
        raise ValueError(f"{where}: damaged local header")
    begin = start + _LOCAL_HEADER.size + name_length + extra_length
    end = begin + member.file_size
    if end > size:
        raise ValueError(f"{where}: data past the end of the file ({end} > {size} bytes)")
    header = _NpyHeader(buffer[begin:end])
    shape, fortran, dtype = header.read_header()
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects; expected plain arrays")
    count = int(np.prod(shape, dtype=np.int64))
    if header.offset + count * dtype.itemsize != member.file_size:
        raise ValueError(f"{where}: its size does not match its header {shape} {dtype}")
    flat = np.frombuffer(buffer, dtype=dtype, count=count, offset=begin + header.offset)
    return flat.reshape(shape, order="F" if fortran else "C")


class _NpyHeader:
    """A file-like reader over a member's bytes, for numpy's ``.npy`` header parser."""

    def __init__(self, data: memoryview) -> None:
        self._data, self.offset = data, 0

    def read(self, size: int | None = None) -> bytes:
        """``size`` bytes from the current offset (numpy's header reader calls this)."""
        if size is None:  # the header parser always passes a size; a whole read is not ours
            raise ValueError("unbounded read of a mapped member")
        chunk = bytes(self._data[self.offset : self.offset + size])
        self.offset += len(chunk)
        return chunk

    def read_header(self) -> tuple[tuple[int, ...], bool, np.dtype]:
        """The member's shape, Fortran order and dtype (moves past the header)."""
        try:
            version = np.lib.format.read_magic(self)  # type: ignore[arg-type]
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(self)  # type: ignore[arg-type]
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(self)  # type: ignore[arg-type]
        except (ValueError, SyntaxError, struct.error) as error:
            raise ValueError(f"damaged .npy header ({error})") from error
        raise ValueError(f".npy format version {version} (np.savez writes 1.0 or 2.0)")
