"""Ahead-of-time exports of the decoder's jitted functions, so that a warm start does not trace.

JAX's persistent compilation cache (:mod:`decoders.compilation_cache`) stores compiled
executables, but its key is the lowered program: every new process still traces each jitted
function (the model is unrolled over its layers, so the prefill and the shielded loop take about
0.3 s and 0.6 s to trace on a CPU) only to find the executable it already has. An
:class:`AheadOfTime` function exports the jitted function once with :func:`jax.export` (the
traced and lowered program, serialised) and later processes deserialise it and call it: no
tracing. Its compilation still goes through the persistent compilation cache.

Entries live under ``cache_root()/aot/``, one checksummed entry of :mod:`shield.store` each, keyed
by a SHA-256 of the function's name, the source of the ``decoders`` and ``shield`` packages (any
edit misses), the JAX and jaxlib versions, the backend and its devices, the JAX settings that
change programs, the static arguments and the tree structure, shapes, dtypes and shardings of the
array arguments. A damaged entry, or one that does not deserialise, is exported again and
rewritten. The cache is on when JAX's compilation cache is (``shield generate`` without
``--no-cache``; see :func:`decoders.enable_compilation_cache`); otherwise, on arguments spread over
several devices, or without the ``flatbuffers`` package (which ``jax.export`` serialises with),
the jitted function is called as is. Outputs equal the jitted function's (tested), but arguments
are not donated.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jaxlib
import numpy as np
from jax import export

from decoders.native import CUSTOM_CALL_TARGETS
from shield.store import cache_root, evict, read_entry, sources_digest, write_entry

__all__ = [
    "FORMAT",
    "MAX_ENTRIES",
    "AheadOfTime",
    "ahead_of_time",
    "aot_enabled",
    "set_aot_enabled",
]

#: Version of what an entry holds.
FORMAT = 1
#: Entries kept in the cache folder; beyond it the least recently used are deleted.
MAX_ENTRIES = 64
#: The packages whose source the exported programs are made of.
_PACKAGES = ("decoders", "shield")
_ROOT = Path(__file__).resolve().parent.parent
_LOG = logging.getLogger(__name__)
_STATE = {"enabled": False}
#: The library's own custom calls, allowed in exports (see decoders.native).
_ALLOWED_CUSTOM_CALLS = [export.DisabledSafetyCheck.custom_call(t) for t in CUSTOM_CALL_TARGETS]


def set_aot_enabled(enabled: bool) -> None:
    """Turn the ahead-of-time cache on or off for this process.

    :func:`decoders.enable_compilation_cache` turns it on with JAX's compilation cache.

    Args:
        enabled: the new setting.
    """
    _STATE["enabled"] = bool(enabled)


def aot_enabled() -> bool:
    """Whether :class:`AheadOfTime` functions read and write their entries.

    Returns:
        The setting, False without the ``flatbuffers`` package.
    """
    return _STATE["enabled"] and _can_serialise()


@functools.cache
def _can_serialise() -> bool:
    available = importlib.util.find_spec("flatbuffers") is not None
    if not available:
        _LOG.info("ahead-of-time exports off: jax.export needs the 'flatbuffers' package")
    return available


def ahead_of_time(
    function: Callable[..., Any],
    *,
    static_argnames: Iterable[str] = (),
    donate_argnames: Iterable[str] = (),
) -> AheadOfTime:
    """``jax.jit`` with these arguments, exported ahead of time when the cache is on (a decorator).

    Args:
        function: the function to jit.
        static_argnames: its static arguments (as for ``jax.jit``).
        donate_argnames: arguments donated by the jitted function (an exported call does not
            donate: its outputs are new buffers).

    Returns:
        The :class:`AheadOfTime` function.

    Example:
        >>> @functools.partial(ahead_of_time, static_argnames=("config", "window"))  # doctest: +SKIP
        ... def prefill(params, config, state, tokens, lengths, *, window): ...
    """
    static, donated = tuple(static_argnames), tuple(donate_argnames)
    jitted = jax.jit(function, static_argnames=static, donate_argnames=donated)
    return AheadOfTime(jitted, static_argnames=static)


class AheadOfTime:
    """A jitted function, exported once and called from its export in later processes.

    Args:
        jitted: a ``jax.jit`` function.
        static_argnames: the names of its static arguments (as given to ``jax.jit``).

    Example:
        >>> prefill = AheadOfTime(jax.jit(f, static_argnames=("config",)), static_argnames=("config",))
        >>> state = prefill(params, config, state, tokens)  # doctest: +SKIP
    """

    def __init__(self, jitted: Callable[..., Any], *, static_argnames: Iterable[str]) -> None:
        self._jitted = jitted
        self._name = f"{jitted.__module__}.{jitted.__qualname__}"
        self._signature = inspect.signature(jitted)
        self._static = tuple(static_argnames)
        unknown = set(self._static) - set(self._signature.parameters)
        if unknown:
            raise ValueError(f"{self._name} has no arguments {sorted(unknown)}")
        self._calls: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()
        functools.update_wrapper(self, jitted)

    @property
    def jitted(self) -> Callable[..., Any]:
        """The jitted function (what a call runs when the cache is off)."""
        return self._jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function: from its export when the cache is on, else the jitted one."""
        if not aot_enabled():
            return self._jitted(*args, **kwargs)
        bound = self._signature.bind(*args, **kwargs)
        dynamic_args = tuple(
            value
            for name, value in zip(self._signature.parameters, bound.args, strict=False)
            if name not in self._static
        )
        dynamic_kwargs = {k: v for k, v in bound.kwargs.items() if k not in self._static}
        leaves, tree = jax.tree_util.tree_flatten((dynamic_args, dynamic_kwargs))
        if not all(_on_one_device(leaf) for leaf in leaves):  # meshes, or inside a trace
            return self._jitted(*args, **kwargs)
        static = {name: bound.arguments.get(name) for name in self._static}
        key = self._key(static, tree, leaves)
        with self._lock:
            call = self._calls.get(key)
            if call is None:
                exported = self._load(key, tree) or self._export(key, bound, tree)
                call = self._calls[key] = jax.jit(exported.call)
        return call(*dynamic_args, **dynamic_kwargs)

    def _key(self, static: dict[str, Any], tree: Any, leaves: list[Any]) -> str:
        material = {
            "function": self._name,
            "version": _version(),
            "static": {name: repr(value) for name, value in static.items()},
            "tree": str(tree),
            "leaves": [_describe(leaf) for leaf in leaves],
        }
        encoded = json.dumps(material, sort_keys=True).encode("utf-8")
        return f"{self._jitted.__name__}-{hashlib.sha256(encoded).hexdigest()}"

    def _load(self, key: str, tree: Any) -> export.Exported | None:
        path = _folder() / f"{key}.npz"
        entry = read_entry(path, key)
        if entry.status == "miss":
            return None
        if entry.status == "corrupt":
            _LOG.warning(
                "ignoring ahead-of-time entry %s (%s); exporting again", path, entry.reason
            )
            return None
        try:
            _register(_node_types(tree))  # the outputs' nodes are among the inputs' (checked)
            exported = export.deserialize(bytearray(entry.arrays["exported"].tobytes()))
        except Exception as error:  # a foreign or damaged program: never trusted, rebuilt
            _LOG.warning("ignoring ahead-of-time entry %s (%s); exporting again", path, error)
            return None
        with contextlib.suppress(OSError):  # recently used: kept longest by evict
            os.utime(path)
        return exported

    def _export(self, key: str, bound: inspect.BoundArguments, tree: Any) -> export.Exported:
        inputs = _node_types(tree)
        _register(inputs)
        exported = export.export(
            self._jitted,  # type: ignore[arg-type]
            # The native kernels are custom calls; jax.export refuses those it does not know.
            # They are registered by loading int8 or GGUF weights, before any export is called.
            disabled_checks=_ALLOWED_CUSTOM_CALLS,
        )(*bound.args, **bound.kwargs)
        foreign = _node_types(exported.out_tree) - inputs
        if foreign:  # a later process could not read its outputs back before deserialising
            _LOG.warning("%s not stored ahead of time: outputs of types %s", self._name, foreign)
            return exported
        try:
            data = np.frombuffer(bytes(exported.serialize()), dtype=np.uint8)
            again = export.deserialize(bytearray(data.tobytes()))
            if (again.in_tree, again.out_tree) != (exported.in_tree, exported.out_tree):
                raise ValueError("its argument or result structure does not survive serialisation")
            write_entry(_folder() / f"{key}.npz", key, {"function": self._name}, {"exported": data})
            evict(_folder(), MAX_ENTRIES)
        except (OSError, TypeError, ValueError) as error:  # not stored: only costs speed
            _LOG.warning("%s not stored ahead of time: %s", self._name, error)
        return exported


def _folder() -> Path:
    return cache_root() / "aot"


def _on_one_device(leaf: Any) -> bool:
    """Whether ``leaf`` is a concrete value on at most one device (not a tracer)."""
    if isinstance(leaf, jax.core.Tracer):
        return False
    sharding = getattr(leaf, "sharding", None)
    return sharding is None or len(sharding.device_set) == 1


def _describe(leaf: Any) -> list[Any]:
    """What the program depends on of an array argument: shape, dtype, weak type, placement."""
    aval = jax.typeof(leaf)
    sharding = getattr(leaf, "sharding", None)
    return [
        list(np.shape(leaf)),
        str(aval.dtype),
        bool(getattr(aval, "weak_type", False)),
        repr(sharding) if sharding is not None else None,
    ]


@functools.cache
def _version() -> str:
    """The source of the packages and everything of JAX that changes an exported program."""
    files = [path for package in _PACKAGES for path in (_ROOT / package).rglob("*.py")]
    devices = jax.devices()
    settings = {
        "format": FORMAT,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in devices],
        "x64": bool(jax.config.jax_enable_x64),  # type: ignore[attr-defined]
        "precision": str(jax.config.jax_default_matmul_precision),  # type: ignore[attr-defined]
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    return sources_digest(files, salt=json.dumps(settings, sort_keys=True), root=_ROOT)


_BUILTIN_NODES = (tuple, list, dict, type(None))
_REGISTERED: set[type] = set()


def _node_types(tree: Any) -> set[type]:
    """The custom pytree node types of a tree structure."""
    found: set[type] = set()
    pending = [tree]
    for _ in range(1 << 20):  # fuel: far more nodes than any argument tree has
        if not pending:
            return found
        node = pending.pop()
        data = node.node_data()
        if data is not None and data[0] not in _BUILTIN_NODES:
            found.add(data[0])
        pending.extend(node.children())
    raise ValueError("argument tree too large to export")


def _register(types: set[type]) -> None:
    """Let ``jax.export`` serialise these pytree nodes (the decoder's pytree dataclasses, whose aux
    data is a tuple of plain values), once per process."""
    with _REGISTRY_LOCK:
        for node in sorted(types - _REGISTERED, key=lambda t: (t.__module__, t.__qualname__)):
            export.register_pytree_node_serialization(
                node,
                serialized_name=f"{node.__module__}.{node.__qualname__}",
                serialize_auxdata=lambda aux: json.dumps(list(aux)).encode("utf-8"),
                deserialize_auxdata=lambda data: _tuples(json.loads(bytes(data))),
            )
            _REGISTERED.add(node)


_REGISTRY_LOCK = threading.Lock()


def _tuples(value: Any) -> Any:
    """JSON arrays back into tuples (aux data is hashable: it holds tuples, never lists)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value
