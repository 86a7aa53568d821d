"""Sharding a decode over a device mesh: rows over a ``data`` axis, weights over a ``model`` axis.

A mesh has two named axes. ``data`` splits the rows of a :class:`DecodeState` (every row is
independent: its own cursor, keys and cache rows), ``model`` splits the weights Megatron-style:

* column-parallel (output features split): the fused ``wqkv`` and ``w_gate_up`` projections and
  the untied ``lm_head``, and the biases of column-parallel projections;
* row-parallel (input features split): ``wo`` and ``w_down``;
* the embedding table split along the vocabulary;
* norms and every other vector replicated;
* the KV cache split over rows (``data``) and over key/value heads (``model``) when the heads
  divide evenly, else replicated along ``model``.

A dimension is split only when the axis size divides it; otherwise that weight is replicated along
``model``. The jitted pieces are unchanged: GSPMD propagates these input shardings and inserts the
collectives, so a sharded run computes what a single device computes (the fused q/k/v columns of
one shard need not align with whole heads; GSPMD moves the data it needs, correctness first).

Several processes (``jax.distributed``) form one mesh. The host loop of every process reads the
per-row values of the whole batch (cursors, tokens), so :func:`make_mesh` keeps the ``data`` axis
inside each process and lays the ``model`` axis across processes: every process then holds every
row, and only weights and cache heads are split between hosts.

Example:
    >>> mesh = make_mesh(data=2, model=4)  # doctest: +SKIP
    >>> params = shard_params(model.params, mesh); state = shard_state(state, mesh)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import mmap
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from decoders.mapped_npz import ALIGNMENT
from decoders.model import KVCache
from decoders.state import DecodeState
from shield.errors import DecoderError

__all__ = [
    "BATCH_AXIS",
    "DATA_AXIS",
    "MODEL_AXIS",
    "PARAM_RULES",
    "batch_mesh",
    "data_size",
    "make_mesh",
    "param_sharding",
    "placer",
    "replicate",
    "shard_params",
    "shard_state",
]

#: The mesh axis the rows of a batch are split along.
DATA_AXIS = "data"
#: The mesh axis the weights (and cache heads) are split along: tensor parallelism.
MODEL_AXIS = "model"
#: The former name of the row axis (a one-axis mesh named ``batch``); kept as an alias.
BATCH_AXIS = DATA_AXIS
T = TypeVar("T")

#: Which dimension of a parameter (named by its field) is split along ``model``: ``-1`` for the
#: output features of a column-parallel weight (``[in, out]``), ``0`` for the input features of a
#: row-parallel one or the vocabulary rows of the embedding. Fields not listed are replicated.
#: int8 weights (:class:`~decoders.linear.QuantizedLinear`, rows ``[out, in]``) flip the axis.
PARAM_RULES: dict[str, int] = {
    "wqkv": -1,
    "bqkv": -1,
    "w_gate_up": -1,
    "lm_head": -1,
    "wo": 0,
    "w_down": 0,
    "embed": 0,
}


def make_mesh(
    data: int | None = None, model: int = 1, devices: Sequence[Any] | None = None
) -> Mesh:
    """A ``(data, model)`` mesh over ``devices`` (all devices of all processes when None).

    Args:
        data: rows are split into this many groups (default: every device not used by ``model``).
        model: weights are split into this many shards (tensor parallelism).
        devices: the devices; with several processes, the global ``jax.devices()``.

    Returns:
        The mesh; with several processes the ``data`` axis lies within each process (see the
        module docstring) and the ``model`` axis spans the processes.

    Raises:
        DecoderError: the axis sizes do not multiply to the number of devices, or (several
            processes) ``data`` does not divide the devices of one process.

    Example:
        >>> make_mesh(data=2, model=4).shape  # doctest: +SKIP
        {'data': 2, 'model': 4}
    """
    chosen = list(jax.devices() if devices is None else devices)
    if model < 1 or (data is not None and data < 1):
        raise DecoderError(f"make_mesh: expected positive axis sizes, received {data}, {model}.")
    rows = len(chosen) // model if data is None else data
    if rows * model != len(chosen):
        raise DecoderError(
            f"make_mesh: data ({rows}) x model ({model}) must equal the {len(chosen)} devices; "
            "choose sizes whose product is the device count."
        )
    processes = sorted({d.process_index for d in chosen})
    if len(processes) == 1:
        return Mesh(np.array(chosen).reshape(rows, model), (DATA_AXIS, MODEL_AXIS))
    per_process = [sorted((d for d in chosen if d.process_index == p), key=lambda d: d.id)
                   for p in processes]  # fmt: skip
    local = len(per_process[0])
    if any(len(group) != local for group in per_process) or local % rows:
        raise DecoderError(
            f"make_mesh: with {len(processes)} processes of {local} devices each, data ({rows}) "
            "must divide the devices of one process (every process holds every row)."
        )
    # [process, data, local model] -> [data, process * local model]
    grid = np.array(per_process, dtype=object).reshape(len(processes), rows, local // rows)
    return Mesh(grid.transpose(1, 0, 2).reshape(rows, model), (DATA_AXIS, MODEL_AXIS))


def batch_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A data-parallel mesh: every device on the ``data`` axis, weights replicated."""
    chosen = list(jax.devices() if devices is None else devices)
    return make_mesh(data=len(chosen), model=1, devices=chosen)


def data_size(mesh: Mesh) -> int:
    """The number of row groups of ``mesh`` (its ``data`` axis; 1 if it has none)."""
    return int(dict(mesh.shape).get(DATA_AXIS, 1))


def _model_size(mesh: Mesh) -> int:
    return int(dict(mesh.shape).get(MODEL_AXIS, 1))


def _place(array: Any, sharding: NamedSharding) -> jax.Array:
    """``array`` with ``sharding``; across processes, each process places its own shards."""
    if sharding.is_fully_addressable:
        return jax.device_put(array, sharding)
    host = np.asarray(array)  # the same value in every process
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: T, mesh: Mesh) -> T:
    """Place every array of ``tree`` whole on every device of ``mesh``."""
    whole = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda leaf: _place(leaf, whole), tree)


def _split(shape: tuple[int, ...], axis: int, mesh: Mesh) -> NamedSharding:
    """Split dimension ``axis`` of ``shape`` along ``model`` if it divides evenly, else replicate."""
    spec: list[str | None] = [None] * len(shape)
    if shape and shape[axis] % _model_size(mesh) == 0:
        spec[axis] = MODEL_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def param_sharding(field: str, shape: tuple[int, ...], mesh: Mesh, *, rows: bool = False) -> Any:
    """The sharding of one parameter array.

    Args:
        field: the parameter's field name (``wqkv``, ``embed``, ...; see :data:`PARAM_RULES`).
        shape: its shape.
        mesh: the mesh.
        rows: the array is stored ``[out, in]`` (int8 rows and their block scales), which flips
            the split dimension of a projection.

    Returns:
        A :class:`NamedSharding`; replicated along ``model`` for fields without a rule, vectors of
        row-parallel weights, and dimensions the axis size does not divide.
    """
    rule = PARAM_RULES.get(field)
    if rule is None or not shape or (len(shape) == 1 and rule == 0):
        return NamedSharding(mesh, PartitionSpec())
    axis = rule
    if rows and field != "embed" and len(shape) == 2:
        axis = 0 if rule == -1 else -1
    return _split(shape, axis if len(shape) > 1 else 0, mesh)


def _field_name(path: str | Sequence[Any]) -> str:
    parts = path.split(".") if isinstance(path, str) else [getattr(p, "name", p) for p in path]
    names = [str(p) for p in parts if not str(p).isdigit()]
    # The int8 leaves q/scale/offset belong to the projection named before them.
    while names and names[-1] in ("q", "scale", "offset"):
        names.pop()
    return names[-1] if names else ""


#: Arrays at least this large get their own page-aligned anonymous mapping (see
#: :func:`_owned_host_copy`); smaller ones are copied by JAX as usual.
_OWN_MAPPING_BYTES = 1 << 20


def _owned_host_copy(array: Any) -> Any:
    """One host copy of ``array`` that a CPU device can adopt without copying it again.

    On a CPU, ``jax.device_put`` of a C-contiguous array whose data is 64-byte aligned aliases
    it instead of copying (on an accelerator it is a transfer either way). So a large tensor is
    copied once, already in its final layout (a transposed view is transposed by this copy),
    into a page-aligned anonymous mapping that the device array then keeps: one copy, where
    ``jnp.asarray`` of a transposed checkpoint tensor makes two. The mapping is returned to
    the system when the array dies, so freed copies never fragment the heap. The source (a
    read-only map of the checkpoint) is never aliased: the weights stay valid if the file
    changes.
    """
    host = np.asarray(array)
    if host.nbytes < _OWN_MAPPING_BYTES:
        return np.array(host, order="C")
    buffer = mmap.mmap(-1, host.nbytes)
    copy = np.frombuffer(buffer, dtype=host.dtype, count=host.size).reshape(host.shape)
    np.copyto(copy, host)
    return copy


def placer(mesh: Mesh | None, *, adopt: bool = False) -> Callable[[Any, Any], jax.Array]:
    """A ``put(field_path, array)`` that places one host array on the mesh with its sharding.

    The array is cut on the host and each device receives only its own shard
    (:func:`jax.make_array_from_callback`), so a weight never exists whole on every device and a
    process only touches the shards its devices hold (several processes each call it with the
    same array).

    Args:
        mesh: the mesh; None places arrays on the default device.
        adopt: without a mesh, hand arrays that are already C-contiguous and aligned to the
            device as they are (a CPU device aliases them: no copy). Only for maps of files
            that are replaced, never rewritten in place (the converted-model cache); a user's
            checkpoint is always copied, so that the weights stay valid if the file changes.

    Returns:
        The placement function; ``field_path`` is a dotted string or a key path, and its last
        name that is not a layer index chooses the rule.
    """

    def put(field_path: Any, array: Any) -> jax.Array:
        if mesh is None:
            host = np.asarray(array)
            if adopt and host.flags.c_contiguous and host.ctypes.data % ALIGNMENT == 0:
                return jax.device_put(host)
            return jax.device_put(_owned_host_copy(host))
        rows = isinstance(field_path, str) and field_path.split(".")[-1] in ("q", "scale", "offset")
        name = _field_name(field_path)
        host = np.asarray(array)
        sharding = param_sharding(name, host.shape, mesh, rows=rows)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return put


def shard_params(params: T, mesh: Mesh) -> T:
    """Place every weight of ``params`` on ``mesh`` by :data:`PARAM_RULES`.

    Arrays already placed with that sharding are not copied.

    Args:
        params: a :class:`~decoders.model.Params` (dense or int8).
        mesh: the mesh.

    Returns:
        The same pytree, sharded.
    """

    def place(path: Any, leaf: Any) -> Any:
        names = [getattr(p, "name", getattr(p, "key", getattr(p, "idx", p))) for p in path]
        last = str(names[-1]) if names else ""
        rows = last in ("q", "scale", "offset")
        sharding = param_sharding(_field_name(names), tuple(leaf.shape), mesh, rows=rows)
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        return _place(leaf, sharding)

    return jax.tree_util.tree_map_with_path(place, params)


def shard_state(state: DecodeState, mesh: Mesh) -> DecodeState:
    """Split the rows of ``state`` over the ``data`` axis of ``mesh`` (cache heads over ``model``).

    Raises:
        DecoderError: the batch size is not a multiple of the ``data`` axis.
    """
    size = data_size(mesh)
    if state.batch_size % size:
        raise DecoderError(
            f"shard_state: batch size {state.batch_size} is not a multiple of the {size} row "
            "groups of the mesh; pad the batch (generate() does this) or use fewer devices."
        )
    rows = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    heads = state.cache.k.shape[2]  # [L, B, K, S, D]
    head_axis = MODEL_AXIS if heads % _model_size(mesh) == 0 else None
    cache_spec = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS, head_axis))
    cache = KVCache(k=_place(state.cache.k, cache_spec), v=_place(state.cache.v, cache_spec))
    per_row = {
        field.name: _place(getattr(state, field.name), rows)
        for field in dataclasses.fields(state)
        if field.name != "cache"
    }
    return DecodeState(cache=cache, **per_row)
