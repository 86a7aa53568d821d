"""Token lifting: the byte string of every vocabulary token, and numpy tables for the decoder.

A token's effect on an automaton is the walk over its bytes, so a word split across tokens, or
produced by a non-canonical tokenization, is caught exactly as in the concatenated text
(tokenization independence). Special tokens carry no text: their byte string is empty.

``allowed_mask`` blocks the tokens after which some component is violating. Whole-word rules
confirm a match on the byte *after* it (or END), so a token that completes a forbidden word is
blocked only if the token also holds the confirming byte; otherwise the next token, or the end
of generation (``end_violates``), is what gets blocked.

Staged rules (:func:`shield.automata.compiler.is_staged`) are *composed* components: a
:class:`~shield.automata.composed.Composed` walked byte by byte, kept after the ``C`` table
components, with one packed int state each (``letter * n_norm + norm``). A monitor state is
``[C + K]``: the table components' states, then the composed ones'.

The vocabulary's side (token bytes, padded matrix, trie) is :mod:`shield.vocabulary`'s, cached per
tokenizer there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np

from shield.automata.alphabet import END, N_SYMBOLS
from shield.automata.compiler import CompiledRule
from shield.automata.composed import Composed
from shield.automata.merge import Component, merge_components
from shield.errors import ModelLoadError
from shield.vocabulary import (
    Trie,
    build_trie,
    build_vocabulary,
    byte_level_decode,
    token_bytes,
    unicode_to_byte,
    vocabulary_of,
)

__all__ = [
    "MonitorState",
    "TokenShield",
    "byte_level_decode",
    "token_bytes",
    "unicode_to_byte",
]

_CACHE_ROWS = 4096

#: The state of a lifted shield: one automaton state per component of :class:`TokenShield`
#: (the implicit product), hashable so that reference configurations can hold it.
MonitorState = tuple[int, ...]


@dataclass(frozen=True, eq=False)
class TokenShield:
    """The shield's automata lifted onto a vocabulary, as numpy tables.

    Attributes:
        rule_ids: the automaton rules of each component, table components then composed ones
            (``"a+b"`` when small rules were merged into one table, see
            :mod:`shield.automata.merge`).
        byte_transitions: int32 [C, S_max, 257]; rows past a component's size are padding
            (self-loops); byte 256 is END.
        violating: bool [C, S_max].
        initial: int32 [C + K]: the table components' initial states, then the composed ones'.
        token_matrix: int32 [V, L_max], token bytes padded with 0.
        token_lengths: int32 [V].
        special: bool [V].
        token_bytes: the byte string of every token.
        state_counts: int32 [C], the real (unpadded) number of states of each component.
        composed: the K composed components (staged rules), after the table components.
        trie: the vocabulary's byte trie when already built (see :mod:`shield.vocabulary`);
            None builds it from ``token_matrix`` and ``token_lengths``.
    """

    rule_ids: tuple[str, ...]
    byte_transitions: np.ndarray
    violating: np.ndarray
    initial: np.ndarray
    token_matrix: np.ndarray
    token_lengths: np.ndarray
    special: np.ndarray
    token_bytes: tuple[bytes, ...]
    state_counts: np.ndarray
    composed: tuple[Composed, ...] = field(default=(), kw_only=True)
    trie: InitVar[Trie | None] = field(default=None, kw_only=True)

    def __post_init__(self, trie: Trie | None) -> None:
        c, s, k = self.byte_transitions.shape
        v, _ = self.token_matrix.shape
        total = c + len(self.composed)
        if k != N_SYMBOLS or self.violating.shape != (c, s) or self.initial.shape != (total,):
            raise ValueError("TokenShield tables have inconsistent shapes")
        if len(self.rule_ids) != total:
            raise ValueError(
                f"TokenShield needs {total} rule ids (C + K); got {len(self.rule_ids)}"
            )
        if self.token_lengths.shape != (v,) or self.special.shape != (v,):
            raise ValueError("TokenShield token tables have inconsistent shapes")
        for name in (
            "byte_transitions",
            "violating",
            "initial",
            "token_matrix",
            "token_lengths",
            "special",
        ):
            getattr(self, name).setflags(write=False)
        if trie is None:
            trie = build_trie(self.token_matrix, self.token_lengths)
        object.__setattr__(self, "_trie", trie)
        object.__setattr__(self, "_rows", {})
        object.__setattr__(self, "_masks", {})
        # Python lists of the tables for step_token's byte walks, made on first use: flattening
        # tens of thousands of states costs a start half a second that a run may never need.
        object.__setattr__(self, "_flat", None)

    @staticmethod
    def build(
        compiled: Sequence[CompiledRule], source: Any, *, special: Sequence[bool] | None = None
    ) -> TokenShield:
        """Lift compiled automaton rules onto a vocabulary (``Shield.lift`` calls this).

        Args:
            compiled: the compiled automaton rules, in spec order.
            source: a ``tokenizers.Tokenizer`` or a sequence of token byte strings.
            special: per-token special flags (for byte strings; special tokens should be ``b""``).

        Returns:
            The token shield.

        Raises:
            ModelLoadError: the vocabulary cannot be lifted.
        """
        if hasattr(source, "to_str"):
            vocabulary = vocabulary_of(source)  # cached per tokenizer when caching is on
        else:
            tokens = tuple(bytes(t) for t in source)
            flags = (
                tuple(bool(f) for f in special) if special is not None else (False,) * len(tokens)
            )
            if len(flags) != len(tokens) or not tokens:
                raise ModelLoadError(
                    f"need one special flag per token and at least one token; got {len(flags)} and {len(tokens)}"
                )
            vocabulary = build_vocabulary(tokens, flags)
        if not vocabulary.tokens:
            raise ModelLoadError("need at least one token; the vocabulary is empty")
        # Small rules share one table (see shield.automata.merge): fewer walks per token and per row.
        components = merge_components(
            [Component(rule_ids=(r.rule_id,), dfa=r.dfa) for r in compiled if r.dfa is not None]
        )
        composed = [r for r in compiled if r.composed is not None]
        sizes = [comp.n_states for comp in components] or [1]
        c, s_max = len(components), max(sizes)
        table = np.tile(np.arange(s_max, dtype=np.int32)[None, :, None], (c, 1, N_SYMBOLS))
        violating = np.zeros((c, s_max), dtype=bool)
        for i, comp in enumerate(components):
            table[i, : sizes[i]] = comp.table
            violating[i, : sizes[i]] = comp.violating
        initial = [comp.initial for comp in components]
        initial += [r.composed.initial for r in composed]  # type: ignore[union-attr]
        return TokenShield(
            rule_ids=tuple(
                ["+".join(comp.rule_ids) for comp in components] + [r.rule_id for r in composed]
            ),
            byte_transitions=table,
            violating=violating,
            initial=np.array(initial, dtype=np.int32),
            token_matrix=vocabulary.matrix,
            token_lengths=vocabulary.lengths,
            special=np.array(vocabulary.special, dtype=bool),
            token_bytes=vocabulary.tokens,
            state_counts=np.array(sizes[: len(components)], dtype=np.int32),
            composed=tuple(r.composed for r in composed if r.composed is not None),
            trie=vocabulary.trie,
        )

    @property
    def table_components(self) -> int:
        """C, the number of table components (the first C entries of a monitor state)."""
        return int(self.byte_transitions.shape[0])

    def step_token(self, states: np.ndarray, token_id: int) -> np.ndarray:
        """Walk one token's bytes.

        Args:
            states: int [C + K] component states.
            token_id: the token.

        Returns:
            int32 [C + K], the new states.
        """
        flat: list[list[int]] | None = self._flat  # type: ignore[attr-defined]
        if flat is None:
            flat = [
                self.byte_transitions[c, :n].ravel().tolist()
                for c, n in enumerate(self.state_counts.tolist())
            ]
            object.__setattr__(self, "_flat", flat)
        token = self.token_bytes[token_id]
        values = np.asarray(states).tolist()
        c = self.table_components
        out = []
        for table, state in zip(flat, values[:c], strict=True):
            for b in token:  # walk the token's bytes: the same as walking the concatenated text
                state = table[state * N_SYMBOLS + b]
            out.append(state)
        out += [
            comp.walk(state, token) for comp, state in zip(self.composed, values[c:], strict=True)
        ]
        return np.array(out, dtype=np.int32)

    def end_states(self, states: np.ndarray) -> np.ndarray:
        """The states after END (end of generation).

        Args:
            states: int [C + K].

        Returns:
            int32 [C + K].
        """
        states = np.asarray(states)
        c = self.table_components
        table = self.byte_transitions[np.arange(c), states[:c], END]
        composed = [
            comp.step(int(s), END)[0] for comp, s in zip(self.composed, states[c:], strict=True)
        ]
        return np.concatenate([table, np.array(composed, dtype=np.int32)]).astype(np.int32)

    def end_violates(self, states: np.ndarray) -> bool:
        """Whether ending the text now violates a rule.

        Args:
            states: int [C + K].

        Returns:
            True when some component is violating after END.
        """
        return self.violates(self.end_states(states))

    def violates(self, states: np.ndarray) -> bool:
        """Whether some component is in a violating state.

        Args:
            states: int [C + K].

        Returns:
            True when a rule has fired.
        """
        states = np.asarray(states)
        c = self.table_components
        if self.violating[np.arange(c), states[:c]].any():
            return True
        return any(
            comp.violating(int(s)) for comp, s in zip(self.composed, states[c:], strict=True)
        )

    @property
    def byte_trie(self) -> Trie:
        """The vocabulary's byte trie (see :data:`shield.vocabulary.Trie`), nodes ordered by depth."""
        trie: Trie = self._trie  # type: ignore[attr-defined]
        return trie

    def _component_row(self, c: int, state: int) -> np.ndarray:
        """int32 [V]: next state of component ``c`` from ``state`` for every token (cached)."""
        rows: dict[tuple[int, int], np.ndarray] = self._rows  # type: ignore[attr-defined]
        row = rows.get((c, state))
        if row is None:
            parent, byte, level_bounds, token_node = self._trie  # type: ignore[attr-defined]
            node_state = np.empty(parent.shape[0], dtype=np.int32)
            node_state[0] = state
            if c < self.table_components:
                flat = self.byte_transitions[c]  # [S_max, 257]
                for lo, hi in level_bounds:  # one vectorised gather per trie level
                    node_state[lo:hi] = flat[node_state[parent[lo:hi]], byte[lo:hi]]
            else:  # a composed component: the normaliser, then the letter automaton per level
                comp = self.composed[c - self.table_components]
                for lo, hi in level_bounds:
                    node_state[lo:hi] = comp.step_many(node_state[parent[lo:hi]], byte[lo:hi])
            row = node_state[token_node]
            row.setflags(write=False)
            if len(rows) >= _CACHE_ROWS:
                rows.clear()
            rows[(c, state)] = row
        return row

    def next_state_row(self, states: np.ndarray) -> np.ndarray:
        """The next states of every token.

        Args:
            states: int [C + K].

        Returns:
            int32 [V, C + K].
        """
        cols = [self._component_row(c, int(s)) for c, s in enumerate(np.asarray(states).tolist())]
        if not cols:
            return np.zeros((self.token_matrix.shape[0], 0), dtype=np.int32)
        return np.stack(cols, axis=1)

    def allowed_mask(self, states: np.ndarray) -> np.ndarray:
        """Tokens after which no component is violating.

        Args:
            states: int [C + K].

        Returns:
            bool [V].
        """
        allowed = np.ones(self.token_matrix.shape[0], dtype=bool)
        for c, s in enumerate(np.asarray(states).tolist()):
            allowed &= ~self._component_violations(c, int(s))
        return allowed

    def _component_violations(self, c: int, state: int) -> np.ndarray:
        """bool [V]: tokens after which component ``c`` is violating, from ``state`` (cached)."""
        masks: dict[tuple[int, int], np.ndarray] = self._masks  # type: ignore[attr-defined]
        mask = masks.get((c, state))
        if mask is None:
            row = self._component_row(c, state)
            if c < self.table_components:
                mask = self.violating[c, row]
            else:
                comp = self.composed[c - self.table_components]
                mask = comp.accepting[row // comp.n_norm]
            mask.setflags(write=False)
            if len(masks) >= _CACHE_ROWS:
                masks.clear()
            masks[(c, state)] = mask
        return mask
