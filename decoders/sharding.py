"""Sharding a decode over a device mesh: rows split along a ``batch`` axis, weights replicated.

Every row of a :class:`DecodeState` is independent (its own cursor, keys and cache rows), so the
batch axis shards without communication beyond the replicated weights; the jitted pieces need no
change, GSPMD propagates the input shardings.

Example:
    >>> mesh = batch_mesh()  # doctest: +SKIP
    >>> state = shard_state(state, mesh); params = replicate(params, mesh)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from decoders.model import KVCache
from decoders.state import DecodeState
from shield.errors import DecoderError

__all__ = ["BATCH_AXIS", "batch_mesh", "replicate", "shard_state"]

#: Name of the mesh axis the batch is split along.
BATCH_AXIS = "batch"
T = TypeVar("T")


def batch_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh over ``devices`` (all local devices when None)."""
    chosen = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(chosen), (BATCH_AXIS,))


def replicate(tree: T, mesh: Mesh) -> T:
    """Place every array of ``tree`` whole on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_state(state: DecodeState, mesh: Mesh) -> DecodeState:
    """Split the rows of ``state`` over the ``batch`` axis of ``mesh``.

    Raises:
        DecoderError: the batch size is not a multiple of the mesh size.
    """
    size = mesh.shape[BATCH_AXIS]
    if state.batch_size % size:
        raise DecoderError(
            f"shard_state: batch size {state.batch_size} is not a multiple of the {size} devices "
            "of the mesh; pad the batch (generate() does this) or use fewer devices."
        )
    rows = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    cache_rows = NamedSharding(mesh, PartitionSpec(None, BATCH_AXIS))  # [L, B, K, S, D]
    cache = KVCache(
        k=jax.device_put(state.cache.k, cache_rows), v=jax.device_put(state.cache.v, cache_rows)
    )
    per_row = {
        field: jax.device_put(getattr(state, field), rows)
        for field in (
            "tokens",
            "cursor",
            "start",
            "seed",
            "attempt",
            "finish",
            "generated",
            "discarded",
            "rollbacks",
            "max_rollback",
        )
    }
    return DecodeState(cache=cache, **per_row)
