"""Token lifting: the byte string of every vocabulary token, and numpy tables for the decoder.

A token's effect on an automaton is the walk over its bytes, so a word split across tokens, or
produced by a non-canonical tokenization, is caught exactly as in the concatenated text
(tokenization independence). Special tokens carry no text: their byte string is empty.

``allowed_mask`` blocks the tokens after which some component is violating. Whole-word rules
confirm a match on the byte *after* it (or END), so a token that completes a forbidden word is
blocked only if the token also holds the confirming byte; otherwise the next token, or the end
of generation (``end_violates``), is what gets blocked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from shield.automata.alphabet import END, N_SYMBOLS
from shield.automata.compiler import CompiledRule
from shield.automata.merge import Component, merge_components
from shield.errors import ModelLoadError

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


@cache
def unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode map (printable bytes map to themselves)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def byte_level_decode(token: str) -> bytes:
    """The bytes of a byte-level BPE token string (GPT-2, SmolLM2, Llama 3).

    Args:
        token: the token as stored in the vocabulary (e.g. ``"Ġhello"``).

    Returns:
        Its bytes (e.g. ``b" hello"``).

    Raises:
        ModelLoadError: a character is outside the byte-level alphabet.
    """
    table = unicode_to_byte()
    try:
        return bytes(table[c] for c in token)
    except KeyError as error:
        raise ModelLoadError(
            f"token {token!r} is not a byte-level BPE token (character {error})"
        ) from None


def _sentencepiece_bytes(token: str) -> bytes:
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        return bytes([int(token[3:5], 16)])
    return token.replace("\u2581", " ").encode("utf-8")


def token_bytes(tokenizer: Any) -> tuple[tuple[bytes, ...], tuple[bool, ...]]:
    """The byte string of every token of a ``tokenizers.Tokenizer``, and which are special.

    Args:
        tokenizer: byte-level BPE (GPT-2 style) or SentencePiece with byte fallback.

    Returns:
        ``(bytes per token id, special flag per token id)``; special tokens map to ``b""``.

    Raises:
        ModelLoadError: the tokenizer is of an unsupported kind or its ids have gaps.
    """
    config = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = tokenizer.get_vocab(with_added_tokens=True)
    special = {t["content"] for t in config.get("added_tokens", []) if t.get("special")}
    kinds = json.dumps(config.get("decoder")) + json.dumps(config.get("pre_tokenizer"))
    byte_level = "ByteLevel" in kinds
    if not byte_level and "ByteFallback" not in kinds and "\u2581" not in kinds:
        raise ModelLoadError(
            "unsupported tokenizer: expected byte-level BPE or SentencePiece byte fallback"
        )
    size = max(vocab.values()) + 1
    out: list[bytes | None] = [None] * size
    flags = [False] * size
    added = {t["content"] for t in config.get("added_tokens", [])}
    for token, tid in vocab.items():
        if token in special:
            out[tid], flags[tid] = b"", True
        elif token in added:
            out[tid] = token.encode("utf-8")
        else:
            out[tid] = byte_level_decode(token) if byte_level else _sentencepiece_bytes(token)
    missing = [i for i, b in enumerate(out) if b is None]
    if missing:
        raise ModelLoadError(
            f"token ids have gaps (first missing id {missing[0]}); cannot lift this vocabulary"
        )
    return tuple(b for b in out if b is not None), tuple(flags)


@dataclass(frozen=True, eq=False)
class TokenShield:
    """The shield's automata lifted onto a vocabulary, as numpy tables.

    Attributes:
        rule_ids: the automaton rules of each component (``"a+b"`` when small rules were merged
            into one table, see :mod:`shield.automata.merge`).
        byte_transitions: int32 [C, S_max, 257]; rows past a component's size are padding
            (self-loops); byte 256 is END.
        violating: bool [C, S_max].
        initial: int32 [C].
        token_matrix: int32 [V, L_max], token bytes padded with 0.
        token_lengths: int32 [V].
        special: bool [V].
        token_bytes: the byte string of every token.
        state_counts: int32 [C], the real (unpadded) number of states of each component.
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

    def __post_init__(self) -> None:
        c, s, k = self.byte_transitions.shape
        v, _ = self.token_matrix.shape
        if k != N_SYMBOLS or self.violating.shape != (c, s) or self.initial.shape != (c,):
            raise ValueError("TokenShield tables have inconsistent shapes")
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
        object.__setattr__(self, "_trie", _build_trie(self.token_matrix, self.token_lengths))
        object.__setattr__(self, "_rows", {})
        object.__setattr__(self, "_masks", {})
        flat = [
            self.byte_transitions[c, :n].ravel().tolist()
            for c, n in enumerate(self.state_counts.tolist())
        ]
        object.__setattr__(self, "_flat", flat)

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
            tokens, flags = token_bytes(source)
        else:
            tokens = tuple(bytes(t) for t in source)
            flags = (
                tuple(bool(f) for f in special) if special is not None else (False,) * len(tokens)
            )
        if len(flags) != len(tokens) or not tokens:
            raise ModelLoadError(
                f"need one special flag per token and at least one token; got {len(flags)} and {len(tokens)}"
            )
        # Small rules share one table (see shield.automata.merge): fewer walks per token and per row.
        components = merge_components(
            [Component(rule_ids=(r.rule_id,), dfa=r.dfa) for r in compiled]
        )
        sizes = [comp.n_states for comp in components] or [1]
        c, s_max = len(components), max(sizes)
        table = np.tile(np.arange(s_max, dtype=np.int32)[None, :, None], (c, 1, N_SYMBOLS))
        violating = np.zeros((c, s_max), dtype=bool)
        for i, comp in enumerate(components):
            table[i, : sizes[i]] = comp.table
            violating[i, : sizes[i]] = comp.violating
        lengths = np.array([len(t) for t in tokens], dtype=np.int32)
        matrix = np.zeros((len(tokens), max(1, int(lengths.max()))), dtype=np.int32)
        for v, t in enumerate(tokens):
            matrix[v, : len(t)] = np.frombuffer(t, dtype=np.uint8)
        return TokenShield(
            rule_ids=tuple("+".join(comp.rule_ids) for comp in components),
            byte_transitions=table,
            violating=violating,
            initial=np.array([comp.initial for comp in components], dtype=np.int32),
            token_matrix=matrix,
            token_lengths=lengths,
            special=np.array(flags, dtype=bool),
            token_bytes=tokens,
            state_counts=np.array(sizes[: len(components)], dtype=np.int32),
        )

    def step_token(self, states: np.ndarray, token_id: int) -> np.ndarray:
        """Walk one token's bytes.

        Args:
            states: int [C] component states.
            token_id: the token.

        Returns:
            int32 [C], the new states.
        """
        flat: list[list[int]] = self._flat  # type: ignore[attr-defined]
        token = self.token_bytes[token_id]
        out = []
        for table, state in zip(flat, np.asarray(states).tolist(), strict=True):
            for b in token:  # walk the token's bytes: the same as walking the concatenated text
                state = table[state * N_SYMBOLS + b]
            out.append(state)
        return np.array(out, dtype=np.int32)

    def end_states(self, states: np.ndarray) -> np.ndarray:
        """The states after END (end of generation).

        Args:
            states: int [C].

        Returns:
            int32 [C].
        """
        return self.byte_transitions[np.arange(len(states)), np.asarray(states), END]

    def end_violates(self, states: np.ndarray) -> bool:
        """Whether ending the text now violates a rule.

        Args:
            states: int [C].

        Returns:
            True when some component is violating after END.
        """
        return self.violates(self.end_states(states))

    def violates(self, states: np.ndarray) -> bool:
        """Whether some component is in a violating state.

        Args:
            states: int [C].

        Returns:
            True when a rule has fired.
        """
        states = np.asarray(states)
        return bool(self.violating[np.arange(len(states)), states].any())

    def _component_row(self, c: int, state: int) -> np.ndarray:
        """int32 [V]: next state of component ``c`` from ``state`` for every token (cached)."""
        rows: dict[tuple[int, int], np.ndarray] = self._rows  # type: ignore[attr-defined]
        row = rows.get((c, state))
        if row is None:
            parent, byte, level_bounds, token_node = self._trie  # type: ignore[attr-defined]
            flat = self.byte_transitions[c]  # [S_max, 257]
            node_state = np.empty(parent.shape[0], dtype=np.int32)
            node_state[0] = state
            for lo, hi in level_bounds:  # one vectorised gather per trie level
                node_state[lo:hi] = flat[node_state[parent[lo:hi]], byte[lo:hi]]
            row = node_state[token_node]
            row.setflags(write=False)
            if len(rows) >= _CACHE_ROWS:
                rows.clear()
            rows[(c, state)] = row
        return row

    def next_state_row(self, states: np.ndarray) -> np.ndarray:
        """The next states of every token.

        Args:
            states: int [C].

        Returns:
            int32 [V, C].
        """
        cols = [self._component_row(c, int(s)) for c, s in enumerate(np.asarray(states).tolist())]
        if not cols:
            return np.zeros((self.token_matrix.shape[0], 0), dtype=np.int32)
        return np.stack(cols, axis=1)

    def allowed_mask(self, states: np.ndarray) -> np.ndarray:
        """Tokens after which no component is violating.

        Args:
            states: int [C].

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
            mask = self.violating[c, self._component_row(c, state)]
            mask.setflags(write=False)
            if len(masks) >= _CACHE_ROWS:
                masks.clear()
            masks[(c, state)] = mask
        return mask


def _build_trie(
    matrix: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], np.ndarray]:
    """The vocabulary's byte trie, nodes ordered by depth: (parent, byte, level bounds, node of token)."""
    index: dict[bytes, int] = {b"": 0}
    parents, bytes_, depths = [0], [0], [0]
    token_node = np.zeros(matrix.shape[0], dtype=np.int64)
    for v in range(matrix.shape[0]):
        token = bytes(matrix[v, : lengths[v]].astype(np.uint8).tolist())
        node = 0
        for d in range(1, len(token) + 1):
            prefix = token[:d]
            child = index.get(prefix)
            if child is None:
                child = index[prefix] = len(parents)
                parents.append(node)
                bytes_.append(token[d - 1])
                depths.append(d)
            node = child
        token_node[v] = node
    depth = np.array(depths)
    order = np.argsort(depth, kind="stable")
    new_id = np.empty_like(order)
    new_id[order] = np.arange(order.size)
    parent = new_id[np.array(parents)[order]]
    byte = np.array(bytes_)[order]
    sorted_depth = depth[order]
    bounds = []
    for d in range(1, int(sorted_depth.max()) + 1 if sorted_depth.size else 1):
        lo, hi = np.searchsorted(sorted_depth, [d, d + 1])
        bounds.append((int(lo), int(hi)))
    return parent, byte, bounds, new_id[token_node]
