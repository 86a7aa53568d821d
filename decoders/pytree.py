"""Frozen dataclasses that are JAX pytrees: the one way decoder values are declared.

The decoder's parameters, state and tables are frozen dataclasses whose array fields are pytree
leaves and whose configuration fields (formats, sizes, names) are static metadata, so that
``jax.jit`` traces the arrays and keys its cache on the rest. ``jax.tree_util.register_dataclass``
does exactly this; importing Flax for its ``struct.dataclass`` cost about 0.2 s of every start
(it imports all of ``flax.linen``) and a dependency tree the decoder does not otherwise use.

Example:
    >>> import jax.numpy as jnp
    >>> @pytree_dataclass
    ... class Scaled:
    ...     values: jnp.ndarray
    ...     name: str = static_field()
    >>> leaves = jax.tree.leaves(Scaled(jnp.ones(2), "w"))
    >>> len(leaves)
    1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

import jax

__all__ = ["pytree_dataclass", "static_field"]

_T = TypeVar("_T", bound=type)


def static_field(**kwargs: Any) -> Any:
    """A dataclass field kept out of the pytree's leaves (part of its static structure).

    Args:
        **kwargs: passed on to :func:`dataclasses.field` (``default``, ``default_factory``...).

    Returns:
        The field, marked static for :func:`jax.tree_util.register_dataclass`.
    """
    metadata = {**kwargs.pop("metadata", {}), "static": True}
    return dataclasses.field(metadata=metadata, **kwargs)


@overload
def pytree_dataclass(cls: _T, /) -> _T: ...


@overload
def pytree_dataclass(*, kw_only: bool = False) -> Callable[[_T], _T]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(static_field, dataclasses.field))
def pytree_dataclass(cls: Any = None, /, *, kw_only: bool = False) -> Any:
    """Declare a frozen dataclass and register it as a JAX pytree.

    Fields are leaves unless declared with :func:`static_field`.

    Args:
        cls: the class (when used as a bare decorator).
        kw_only: fields are keyword-only in ``__init__``.

    Returns:
        The frozen dataclass, registered with JAX (or a decorator that makes it).
    """

    def wrap(target: _T) -> _T:
        frozen: Any = dataclasses.dataclass(frozen=True, kw_only=kw_only)(target)
        registered: _T = jax.tree_util.register_dataclass(frozen)
        return registered

    return wrap if cls is None else wrap(cls)
