"""The compiled-shield cache: compiled automaton rules on disk, keyed by what they came from.

Compiling a large word list through every normalisation takes seconds; reading its automata back
takes milliseconds. An entry holds the automata (:class:`~shield.automata.dfa.DFA` tables, and for
staged rules the normaliser and letter tables of their
:class:`~shield.automata.composed.Composed`) of every automaton rule of a spec, in a checksummed
``.npz`` (see :mod:`shield.store`), under ``cache_root()/compiled/``. Its key is a SHA-256 of

* the resolved automaton rules, word lists included (not the spec's path: two files with the same
  rules share an entry, and an edited word file is a new key),
* the compile limits,
* the compiler's version: a hash of the source of ``shield/automata/`` and of the modules that
  define compiled values and this format, so that any change to the compiler misses.

A read entry is used only when it passes :func:`shield.store.read_entry`'s checks and decodes into
valid automata; otherwise the rules are compiled again and the entry rewritten. The reverse
scanners (exact match starts) are not stored: each is rebuilt from its rule on first use.
Classifier rules are not compiled, so they are not part of the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shield.automata.compiler import CompiledRule, rule_scanner
from shield.automata.composed import Composed
from shield.automata.dfa import DFA
from shield.automata.limits import CompileLimits
from shield.automata.normaliser import Normaliser
from shield.errors import ShieldError
from shield.rules import AutomatonRule
from shield.store import (
    cache_enabled,
    cache_root,
    evict,
    read_entry,
    sources_digest,
    write_entry,
)

__all__ = [
    "FORMAT",
    "MAX_ENTRIES",
    "CompiledCache",
    "Lookup",
    "cache_key",
    "compiler_version",
    "default_cache",
]

#: Version of what an entry holds (the encoding of compiled rules below; 2: composed automata).
FORMAT = 2
#: Entries kept in the cache folder; beyond it the least recently used are deleted.
MAX_ENTRIES = 256
_PACKAGE = Path(__file__).resolve().parent
#: The sources whose change invalidates every entry: the compiler, the rule values it reads, and
#: the encoding of entries.
_VERSION_GLOBS = ("automata/*.py", "rules.py", "compiled_cache.py", "store.py")
_LOG = logging.getLogger(__name__)


class _Uncacheable(Exception):
    """A value the cache cannot key or store; the spec is compiled without the cache."""


def canonical(value: Any) -> Any:
    """A JSON value that identifies ``value`` (rules, match options, limits).

    Args:
        value: plain values, tuples, lists, sets (described in a fixed order), enums and
            dataclasses of these (described by type and every field).

    Returns:
        The description, for :func:`cache_key`.

    Raises:
        _Uncacheable: the value holds something without a stable description (a function, ...).
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return {"enum": f"{type(value).__qualname__}.{value.name}"}
    if isinstance(value, tuple | list):
        return [canonical(item) for item in value]
    if isinstance(value, frozenset | set):
        items = [canonical(item) for item in value]
        return {"set": sorted(items, key=lambda item: json.dumps(item, sort_keys=True))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": f"{type(value).__module__}.{type(value).__qualname__}", "fields": fields}
    raise _Uncacheable(f"a {type(value).__name__} has no stable description for a cache key")


def compiler_version(package: Path = _PACKAGE) -> str:
    """A hash of the compiler's source (see :data:`_VERSION_GLOBS`) and of :data:`FORMAT`.

    Args:
        package: the ``shield`` package folder (tests pass a copy).

    Returns:
        A hex digest; any edit to a hashed file changes it.

    Raises:
        OSError: a source file cannot be read.
    """
    if package == _PACKAGE:
        return _installed_version()
    return _version_of(package)


@functools.cache
def _installed_version() -> str:
    return _version_of(_PACKAGE)


def _version_of(package: Path) -> str:
    files = sorted({p for pattern in _VERSION_GLOBS for p in package.glob(pattern)})
    if not files:
        raise OSError(f"{package}: no compiler sources to hash; expected {_VERSION_GLOBS}")
    return sources_digest(files, salt=f"format {FORMAT}", root=package)


def cache_key(rules: Sequence[AutomatonRule], limits: CompileLimits, version: str) -> str:
    """The key of the compiled automata of ``rules``.

    Args:
        rules: the automaton rules, in spec order.
        limits: the compile limits.
        version: :func:`compiler_version`.

    Returns:
        A hex SHA-256.

    Raises:
        _Uncacheable: a rule holds a value without a stable description.
    """
    material = {"rules": canonical(tuple(rules)), "limits": canonical(limits), "compiler": version}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Lookup:
    """The outcome of :meth:`CompiledCache.load`.

    Attributes:
        status: ``hit``, ``miss``, ``corrupt`` (a file was found and rejected) or ``uncacheable``.
        compiled: the compiled rules (``hit`` only).
        path: the entry's file (None when uncacheable).
        reason: why a file was rejected or the rules are uncacheable.
    """

    status: Literal["hit", "miss", "corrupt", "uncacheable"]
    compiled: tuple[CompiledRule, ...] | None = None
    path: Path | None = None
    reason: str = ""


@dataclass(frozen=True)
class CompiledCache:
    """Compiled automaton rules stored under ``directory``.

    Attributes:
        directory: the folder of the entries.
        version: the compiler version the entries must have been written by.
    """

    directory: Path
    version: str

    def path_for(self, rules: Sequence[AutomatonRule], limits: CompileLimits) -> Path:
        """The entry file of ``rules``.

        Raises:
            _Uncacheable: see :func:`cache_key`.
        """
        return self.directory / f"{cache_key(rules, limits, self.version)}.npz"

    def load(self, rules: Sequence[AutomatonRule], limits: CompileLimits) -> Lookup:
        """The compiled rules stored for ``rules``, if a valid entry exists.

        Args:
            rules: the automaton rules, in spec order.
            limits: the compile limits.

        Returns:
            The :class:`Lookup`; ``compiled`` is set on a hit only.
        """
        try:
            path = self.path_for(rules, limits)
        except _Uncacheable as error:
            return Lookup("uncacheable", reason=str(error))
        entry = read_entry(path, path.stem)
        if entry.status != "hit":
            if entry.status == "corrupt":
                _LOG.warning(
                    "ignoring compiled-shield entry %s (%s); rebuilding", path, entry.reason
                )
            return Lookup(entry.status, path=path, reason=entry.reason)
        try:
            compiled = _decode(entry.meta, entry.arrays, rules, limits)
        except (KeyError, TypeError, ValueError, ShieldError) as error:
            _LOG.warning("ignoring compiled-shield entry %s (%s); rebuilding", path, error)
            return Lookup("corrupt", path=path, reason=f"does not decode: {error}")
        with contextlib.suppress(OSError):  # recently used: kept longest by evict
            os.utime(path)
        return Lookup("hit", compiled=compiled, path=path)

    def store(
        self,
        rules: Sequence[AutomatonRule],
        limits: CompileLimits,
        compiled: Sequence[CompiledRule],
    ) -> Path | None:
        """Store compiled rules (atomically); failures are logged, never raised.

        Args:
            rules: the automaton rules they were compiled from.
            limits: the compile limits.
            compiled: ``compile_rule`` of each rule, in order.

        Returns:
            The entry's file, or None when nothing was stored (uncacheable, or the folder is not
            writable).
        """
        try:
            path = self.path_for(rules, limits)
            meta, arrays = _encode(compiled)
            write_entry(path, path.stem, meta, arrays)
            evict(self.directory, MAX_ENTRIES)
        except (_Uncacheable, OSError) as error:
            _LOG.warning("compiled shield not cached: %s", error)
            return None
        return path


def default_cache() -> CompiledCache | None:
    """The cache under ``cache_root()/compiled``, or None when caching is off.

    The cache is on inside ``shield.store.caching(True)`` (the command line runs every command
    inside one) unless ``$SHIELD_NO_CACHE`` is set; a library call outside such a block compiles
    without it.

    Returns:
        None when :func:`shield.store.cache_enabled` is False or the compiler's source cannot be
        read (its version is unknown, so no entry could be trusted).
    """
    if not cache_enabled():
        return None
    try:
        version = compiler_version()
    except OSError as error:
        _LOG.warning("compiled-shield cache off: %s", error)
        return None
    return CompiledCache(cache_root() / "compiled", version)


def _encode(compiled: Sequence[CompiledRule]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata and arrays of compiled rules: DFAs as arrays, plain fields as JSON values."""
    arrays: dict[str, np.ndarray] = {}
    rules = []
    for index, rule in enumerate(compiled):
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(rule):
            value = getattr(rule, f.name)
            if f.name in ("rule", "scanner"):  # the source rule is the key; scanners are rebuilt
                continue
            if isinstance(value, DFA):
                prefix = f"{index}.{f.name}"
                arrays[f"{prefix}.transitions"] = _narrow(value.transitions)
                arrays[f"{prefix}.classes"] = value.classes
                arrays[f"{prefix}.accepting"] = value.accepting
                fields[f.name] = {"dfa": prefix, "initial": value.initial}
            elif isinstance(value, Composed):
                prefix = f"{index}.{f.name}"
                arrays[f"{prefix}.norm_next"] = _narrow(value.normaliser.next_state)
                arrays[f"{prefix}.norm_emitted"] = value.normaliser.emitted.astype(np.int16)
                arrays[f"{prefix}.letters"] = _narrow(value.letters)
                arrays[f"{prefix}.accepting"] = value.accepting
                fields[f.name] = {
                    "composed": prefix,
                    "initial_letter": value.initial_letter,
                    "n_atoms": value.normaliser.n_atoms,
                }
            elif value is None or isinstance(value, bool | int | float | str):
                fields[f.name] = {"value": value}
            else:
                raise _Uncacheable(
                    f"CompiledRule.{f.name} holds a {type(value).__name__}; the cache stores DFAs"
                    " and plain values (teach shield.compiled_cache this type)"
                )
        rules.append({"id": rule.rule_id, "fields": fields})
    return {"format": FORMAT, "rules": rules}, arrays


def _decode(
    meta: Any, arrays: Any, rules: Sequence[AutomatonRule], limits: CompileLimits
) -> tuple[CompiledRule, ...]:
    """Compiled rules from an entry; raises KeyError, TypeError, ValueError if it does not fit."""
    if meta["format"] != FORMAT or len(meta["rules"]) != len(rules):
        raise ValueError(f"format {meta['format']} with {len(meta['rules'])} rules")
    wanted = {f.name for f in dataclasses.fields(CompiledRule) if f.init}
    out = []
    for rule, stored in zip(rules, meta["rules"], strict=True):
        if stored["id"] != rule.id:
            raise ValueError(f"rule {stored['id']!r} stored where {rule.id!r} was expected")
        values: dict[str, Any] = {"rule": rule, "scanner": rule_scanner(rule, limits)}
        for name, field in stored["fields"].items():
            if "dfa" in field:
                prefix = field["dfa"]
                values[name] = DFA(
                    arrays[f"{prefix}.transitions"],
                    arrays[f"{prefix}.classes"],
                    int(field["initial"]),
                    arrays[f"{prefix}.accepting"],
                )
            elif "composed" in field:
                values[name] = _composed(arrays, field)
            else:
                values[name] = field["value"]
        if set(values) != wanted:
            raise ValueError(
                f"fields {sorted(values)} do not match CompiledRule's {sorted(wanted)}"
            )
        out.append(CompiledRule(**values))
    return tuple(out)


def _composed(arrays: Any, field: dict[str, Any]) -> Composed:
    """A composed automaton from an entry (its constructors check every shape and range)."""
    prefix = field["composed"]
    normaliser = Normaliser(
        np.asarray(arrays[f"{prefix}.norm_next"], dtype=np.int32),
        np.asarray(arrays[f"{prefix}.norm_emitted"], dtype=np.int32),
        int(field["n_atoms"]),
    )
    return Composed(
        normaliser,
        np.asarray(arrays[f"{prefix}.letters"], dtype=np.int32),
        np.asarray(arrays[f"{prefix}.accepting"], dtype=bool),
        int(field["initial_letter"]),
    )


def _narrow(table: np.ndarray) -> np.ndarray:
    """The table in uint16 when its values fit (half the bytes to read and hash), else as is."""
    if table.size and int(table.max()) < np.iinfo(np.uint16).max and int(table.min()) >= 0:
        return table.astype(np.uint16)
    return table
