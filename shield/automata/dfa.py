"""The immutable DFA value and the one crawl primitive every derived automaton is built with.

A :class:`DFA` reads symbols 0..256 (bytes and END) through a class map ``classes`` and a table
``transitions[state, class]``. ``accepting`` marks the states the automaton reports: for a forbid
automaton these are the (absorbing) violation states, for a matcher the states right after a
match was detected. The value is validated completely once, and its arrays are read-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from shield.automata.alphabet import END, N_SYMBOLS, classes_from_table
from shield.errors import CompileError

__all__ = ["DFA", "crawl", "product"]

K = TypeVar("K", bound=Hashable)


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    out: np.ndarray = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class DFA:
    """A complete deterministic automaton over bytes and END.

    Attributes:
        transitions: int32 [n_states, n_classes], read-only.
        classes: int32 [257], the class of each byte and of END (index 256), read-only.
        initial: the initial state.
        accepting: bool [n_states], read-only.

    Raises:
        ValueError: shapes, ranges or dtypes are inconsistent (checked once, at construction).
    """

    transitions: np.ndarray
    classes: np.ndarray
    initial: int
    accepting: np.ndarray

    def __post_init__(self) -> None:
        transitions = _frozen(self.transitions, np.int32)
        classes = _frozen(self.classes, np.int32)
        accepting = _frozen(self.accepting, np.bool_)
        if transitions.ndim != 2 or transitions.shape[0] < 1 or transitions.shape[1] < 1:
            raise ValueError(
                f"transitions must be [n_states >= 1, n_classes >= 1]; got {transitions.shape}"
            )
        n, k = transitions.shape
        if classes.shape != (N_SYMBOLS,):
            raise ValueError(f"classes must have shape (257,); got {classes.shape}")
        if classes.min() < 0 or classes.max() >= k:
            raise ValueError(
                f"classes must lie in 0..{k - 1}; got {classes.min()}..{classes.max()}"
            )
        if transitions.min() < 0 or transitions.max() >= n:
            raise ValueError(
                f"transitions must lie in 0..{n - 1}; got {transitions.min()}..{transitions.max()}"
            )
        if accepting.shape != (n,):
            raise ValueError(f"accepting must have shape ({n},); got {accepting.shape}")
        if not 0 <= int(self.initial) < n:
            raise ValueError(f"initial must lie in 0..{n - 1}; got {self.initial}")
        object.__setattr__(self, "transitions", transitions)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "accepting", accepting)
        object.__setattr__(self, "initial", int(self.initial))

    @property
    def n_states(self) -> int:
        """Number of states."""
        return int(self.transitions.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of symbol classes."""
        return int(self.transitions.shape[1])

    def byte_table(self) -> np.ndarray:
        """The table expanded from classes to symbols.

        Returns:
            int32 [n_states, 257]; column 256 is END.
        """
        return np.ascontiguousarray(self.transitions[:, self.classes])

    def step(self, state: int, symbol: int) -> int:
        """One transition.

        Args:
            state: a state.
            symbol: a byte 0..255 or END (256).

        Returns:
            The next state.
        """
        return int(self.transitions[state, self.classes[symbol]])

    def walk(self, state: int, data: bytes, *, final: bool = False) -> int:
        """Read ``data`` (then END when ``final``) from ``state``.

        Args:
            state: the start state.
            data: the bytes to read.
            final: also read END.

        Returns:
            The state reached.
        """
        table = self.transitions
        classes = self.classes
        for b in data:
            state = int(table[state, classes[b]])
        if final:
            state = int(table[state, classes[END]])
        return state

    def accepts(self, data: bytes, *, final: bool = True) -> bool:
        """Whether reading ``data`` (and END when ``final``) ends in an accepting state.

        Args:
            data: the bytes.
            final: also read END.

        Returns:
            True when the state reached is accepting.
        """
        return bool(self.accepting[self.walk(self.initial, data, final=final)])


def crawl(
    initial: K,
    classes: np.ndarray,
    successors: Callable[[K], Sequence[K]],
    accepting: Callable[[K], bool],
    *,
    max_states: int,
    what: str,
    extra_roots: Sequence[K] = (),
    max_seconds: float | None = None,
) -> tuple[DFA, list[K]]:
    """Build the DFA of every key reachable from ``initial`` (breadth first).

    Args:
        initial: the initial key (any hashable description of a state).
        classes: int32 [257] class map of the new automaton.
        successors: the successor keys of a key, one per class, in class order.
        accepting: whether a key is accepting.
        max_states: fuel; more reachable keys raise :class:`CompileError`.
        what: a description of the automaton for error messages.
        extra_roots: further keys to include (with everything reachable from them) even when
            they are unreachable from ``initial``.
        max_seconds: optional budget of this thread's CPU seconds; exceeding it raises
            :class:`CompileError`.

    Returns:
        The DFA (initial state 0) and its keys, indexed by state id.

    Raises:
        CompileError: more than ``max_states`` states are reachable, or the time budget ran out.
    """
    deadline = None if max_seconds is None else time.thread_time() + max_seconds
    n_classes = int(np.max(classes)) + 1
    index: dict[K, int] = {initial: 0}
    keys: list[K] = [initial]
    for root in extra_roots:
        if root not in index:
            index[root] = len(keys)
            keys.append(root)
    rows: list[list[int]] = []
    # Invariant: rows[i] is the complete row of keys[i] for i < len(rows); keys beyond are queued.
    while len(rows) < len(keys):
        if deadline is not None and len(rows) % 256 == 0 and time.thread_time() > deadline:
            raise CompileError(
                f"{what}: building the automaton took more than max_rule_seconds={max_seconds:g} "
                f"(at {len(keys)} states); simplify the pattern or raise "
                "CompileLimits.max_rule_seconds"
            )
        row_keys = successors(keys[len(rows)])
        if len(row_keys) != n_classes:
            raise ValueError(f"successors must give {n_classes} keys; got {len(row_keys)}")
        row = []
        for key in row_keys:
            target = index.get(key)
            if target is None:
                if len(keys) >= max_states:
                    raise CompileError(
                        f"{what}: the automaton needs more than max_dfa_states={max_states} states; "
                        "simplify the pattern (fewer nested or counted repetitions, fewer words) "
                        "or raise CompileLimits.max_dfa_states"
                    )
                target = index[key] = len(keys)
                keys.append(key)
            row.append(target)
        rows.append(row)
    table = np.array(rows, dtype=np.int32).reshape(len(keys), n_classes)
    acc = np.fromiter((accepting(k) for k in keys), dtype=bool, count=len(keys))
    return DFA(table, classes, 0, acc), keys


def product(
    dfas: Sequence[DFA],
    accept: Callable[[tuple[bool, ...]], bool] = any,
    *,
    max_states: int,
    absorb: bool = False,
    what: str = "product",
) -> DFA:
    """The synchronous product of automata: the one product construction of the project.

    Args:
        dfas: the components (at least one).
        accept: combines the components' acceptance (``any``: union; ``all``: intersection).
        max_states: fuel for :func:`crawl`.
        absorb: collapse every accepting product state into one absorbing state. A monitor
            that only asks "has some component accepted?" (violations are sticky) loses
            nothing, and the product stays much smaller.
        what: a description of the automaton for error messages.

    Returns:
        The product DFA; its state ``i`` corresponds to a tuple of component states (or, with
        ``absorb``, to the one accepting sink).

    Raises:
        CompileError: the product exceeds ``max_states``.
        ValueError: ``dfas`` is empty.
    """
    if not dfas:
        raise ValueError("product needs at least one automaton; got none")
    classes = classes_from_table(np.stack([d.classes for d in dfas], axis=1))
    n_classes = int(classes.max()) + 1
    reps = np.array([int(np.flatnonzero(classes == c)[0]) for c in range(n_classes)])
    columns = [d.classes[reps] for d in dfas]  # component class of each product class
    sink: tuple[int, ...] = ()  # the key of the collapsed accepting state (absorb only)

    def accepts(states: Sequence[np.ndarray]) -> np.ndarray:
        """bool [n]: ``accept`` of the components' acceptance, for n tuples of states."""
        flags = np.stack([d.accepting[s] for d, s in zip(dfas, states, strict=True)], axis=1)
        return np.fromiter((bool(accept(tuple(f))) for f in flags.tolist()), bool, len(flags))

    def successors(key: tuple[int, ...]) -> list[tuple[int, ...]]:
        if key == sink:
            return [sink] * n_classes
        rows = [d.transitions[s, col] for d, s, col in zip(dfas, key, columns, strict=True)]
        keys = list(zip(*(r.tolist() for r in rows), strict=True))
        if absorb:
            keys = [sink if hit else k for k, hit in zip(keys, accepts(rows).tolist(), strict=True)]
        return keys

    def accepting(key: tuple[int, ...]) -> bool:
        if key == sink:
            return True
        return bool(accept(tuple(bool(d.accepting[s]) for d, s in zip(dfas, key, strict=True))))

    initial = tuple(d.initial for d in dfas)
    if absorb and accepting(initial):
        initial = sink
    dfa, _ = crawl(initial, classes, successors, accepting, max_states=max_states, what=what)
    return dfa
