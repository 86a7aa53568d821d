"""Memory-mapped ``.npz`` members equal ``np.load``'s arrays (every dtype and layout the weight
cache writes, and more), are read-only, and anything but a stored ``.npz`` of plain arrays is
refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from decoders.mapped_npz import ALIGNMENT, map_npz, save_aligned_npz

DTYPES = [np.float32, np.float16, np.int8, np.int32, np.int64, np.bool_, np.uint8]


def _saved(path: Path, arrays: dict[str, np.ndarray], *, compressed: bool = False) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)  # type: ignore[operator]
    return path


def _assert_like_np_load(path: Path) -> dict[str, np.ndarray]:
    mapped = map_npz(path)
    with np.load(path) as archive:
        loaded = {name: archive[name] for name in archive.files}
    assert list(mapped) == list(loaded)
    for name, array in loaded.items():
        assert mapped[name].dtype == array.dtype and mapped[name].shape == array.shape
        np.testing.assert_array_equal(mapped[name], array)
    return mapped


@settings(deadline=None, max_examples=40)
@given(
    st.lists(
        hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0)),
        min_size=1,
        max_size=4,
    )
)
def test_mapped_members_equal_np_load(arrays: list[np.ndarray]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = _saved(Path(folder) / "a.npz", {f"t{i}": a for i, a in enumerate(arrays)})
        _assert_like_np_load(path)


def test_weight_cache_layouts_are_views_that_cannot_be_written(tmp_path: Path) -> None:
    rows = np.arange(24, dtype=np.float32).reshape(4, 6)
    arrays = {
        "model.layers.0.self_attn.q_proj.weight": rows,
        "fortran": np.asfortranarray(rows),
        "bf16": rows.astype(ml_dtypes.bfloat16),
        "scalar": np.float32(3.5),
    }
    mapped = _assert_like_np_load(_saved(tmp_path / "w.npz", arrays))
    assert mapped["fortran"].flags.f_contiguous  # the scenario: a Fortran-order member
    assert not any(a.flags.writeable for a in mapped.values())
    with pytest.raises(ValueError):
        mapped["fortran"][0, 0] = 1.0


@pytest.mark.parametrize("damage", ["compressed", "truncated", "not a zip", "object array"])
def test_anything_else_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "w.npz"
    arrays = {"a": np.arange(1000, dtype=np.float32), "b": np.ones(3)}
    if damage == "compressed":
        _saved(path, arrays, compressed=True)
    elif damage == "object array":
        np.savez(path, a=np.array([{"x": 1}], dtype=object))
    else:
        data = _saved(path, arrays).read_bytes()
        path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"garbage" * 99)
    with pytest.raises(ValueError, match=str(path.name)):
        map_npz(path)


@settings(deadline=None, max_examples=40)
@given(
    st.lists(
        st.tuples(
            st.text("abcxyz._", min_size=1, max_size=70),
            hnp.arrays(
                st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0)
            ),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda item: item[0],
    )
)
def test_aligned_archives_are_npz_with_every_member_aligned(
    members: list[tuple[str, np.ndarray]],
) -> None:
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.npz"
        save_aligned_npz(path, dict(members))
        assert zipfile.ZipFile(path).testzip() is None  # CRCs right: any zip reader accepts it
        mapped = _assert_like_np_load(path)  # np.load reads it as its own
        for name, array in mapped.items():
            if array.size:
                assert array.ctypes.data % ALIGNMENT == 0, name


def test_an_aligned_member_is_adopted_by_the_cpu_without_a_copy(tmp_path: Path) -> None:
    import jax

    rows = np.arange(4096, dtype=np.float32).reshape(64, 64)
    save_aligned_npz(tmp_path / "w.npz", {"odd": np.ones(3, np.int8), "rows": rows})
    mapped = map_npz(tmp_path / "w.npz")["rows"]
    assert mapped.ctypes.data % ALIGNMENT == 0  # the scenario: an aligned, read-only view
    placed = jax.device_put(mapped)
    assert placed.unsafe_buffer_pointer() == mapped.ctypes.data
    np.testing.assert_array_equal(placed, rows)


def test_object_arrays_are_refused_when_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Python objects"):
        save_aligned_npz(tmp_path / "w.npz", {"a": np.array([{"x": 1}], dtype=object)})
