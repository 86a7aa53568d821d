"""A vocabulary as bytes: every token's byte string, padded into a matrix, and their byte trie.

Lifting a shield onto a vocabulary walks each token's bytes (:mod:`shield.lifting`); what it needs
from the tokenizer depends on the tokenizer alone, not on the spec: the byte string of every token
(decoded from the tokenizer's JSON), which tokens are special, the tokens padded into a matrix,
and the trie of their byte strings (one vectorised gather per trie level computes a whole row of
next states). Building these for a 49k-token vocabulary takes about half a second, so
:func:`vocabulary_of` keeps them on disk per tokenizer, under ``cache_root()/vocabulary/``, in a
checksummed entry of :mod:`shield.store`, keyed by a SHA-256 of the tokenizer's full JSON (its
content, not its file) and of this module's source (any change to the decoding misses). A read
entry is used only when it passes :func:`shield.store.read_entry`'s checks and has consistent
shapes; otherwise the vocabulary is rebuilt and the entry rewritten. Like the compiled-shield cache
it is on inside ``shield.store.caching(True)`` (every command line run) unless
``$SHIELD_NO_CACHE`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from shield.errors import ModelLoadError
from shield.store import cache_enabled, cache_root, evict, read_entry, sources_digest, write_entry

__all__ = [
    "FORMAT",
    "MAX_ENTRIES",
    "Trie",
    "Vocabulary",
    "build_trie",
    "build_vocabulary",
    "byte_level_decode",
    "token_bytes",
    "unicode_to_byte",
    "vocabulary_of",
]

#: Version of what an entry holds.
FORMAT = 1
#: Entries kept in the cache folder; beyond it the least recently used are deleted.
MAX_ENTRIES = 32
_LOG = logging.getLogger(__name__)

#: The vocabulary's byte trie, nodes ordered by depth: (parent, byte, level bounds, node of token).
Trie = tuple[np.ndarray, np.ndarray, list[tuple[int, int]], np.ndarray]


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """What lifting needs from a vocabulary.

    Attributes:
        tokens: the byte string of every token id (special tokens are ``b""``).
        special: whether each token id is special.
        matrix: int32 [V, L_max], the token bytes padded with 0.
        lengths: int32 [V], the length of each token.
        trie: the byte trie of the tokens (see :data:`Trie`).
    """

    tokens: tuple[bytes, ...]
    special: tuple[bool, ...]
    matrix: np.ndarray
    lengths: np.ndarray
    trie: Trie


def build_vocabulary(tokens: Sequence[bytes], special: Sequence[bool]) -> Vocabulary:
    """The padded matrix and trie of ``tokens``.

    Args:
        tokens: the byte string of every token id.
        special: one special flag per token.

    Returns:
        The :class:`Vocabulary`.
    """
    tokens = tuple(tokens)
    lengths = np.array([len(t) for t in tokens], dtype=np.int32)
    matrix = np.zeros((len(tokens), max(1, int(lengths.max(initial=0)))), dtype=np.int32)
    for v, t in enumerate(tokens):
        matrix[v, : len(t)] = np.frombuffer(t, dtype=np.uint8)
    return Vocabulary(
        tokens=tokens,
        special=tuple(bool(f) for f in special),
        matrix=matrix,
        lengths=lengths,
        trie=build_trie(matrix, lengths),
    )


def vocabulary_of(tokenizer: Any) -> Vocabulary:
    """The vocabulary of a ``tokenizers.Tokenizer``, through the on-disk cache when it is on.

    Args:
        tokenizer: byte-level BPE (GPT-2 style) or SentencePiece with byte fallback.

    Returns:
        The :class:`Vocabulary`, equal to ``build_vocabulary(*token_bytes(tokenizer))``.

    Raises:
        ModelLoadError: the tokenizer is of an unsupported kind or its ids have gaps.

    Example:
        >>> vocabulary_of(tokenizer.backend).matrix.shape  # doctest: +SKIP
        (49152, 81)
    """
    if not cache_enabled():
        return build_vocabulary(*token_bytes(tokenizer))
    path = cache_root() / "vocabulary" / f"{_key(tokenizer.to_str())}.npz"
    entry = read_entry(path, path.stem)
    if entry.status == "hit":
        try:
            found = _decode(entry.arrays)
        except (KeyError, ValueError) as error:
            _LOG.warning("ignoring vocabulary entry %s (%s); rebuilding", path, error)
        else:
            with contextlib.suppress(OSError):  # recently used: kept longest by evict
                path.touch()
            return found
    elif entry.status == "corrupt":
        _LOG.warning("ignoring vocabulary entry %s (%s); rebuilding", path, entry.reason)
    vocabulary = build_vocabulary(*token_bytes(tokenizer))
    try:
        write_entry(path, path.stem, {"format": FORMAT}, _encode(vocabulary))
        evict(path.parent, MAX_ENTRIES)
    except OSError as error:  # a read-only cache only costs speed
        _LOG.warning("vocabulary not cached: %s", error)
    return vocabulary


@cache
def _version() -> str:
    return sources_digest([Path(__file__)], salt=f"vocabulary format {FORMAT}")


def _key(tokenizer_json: str) -> str:
    hasher = hashlib.sha256(_version().encode("utf-8"))
    hasher.update(tokenizer_json.encode("utf-8"))
    return hasher.hexdigest()


def _encode(vocabulary: Vocabulary) -> dict[str, np.ndarray]:
    parent, byte, bounds, token_node = vocabulary.trie
    return {
        "blob": np.frombuffer(b"".join(vocabulary.tokens), dtype=np.uint8),
        "special": np.array(vocabulary.special, dtype=bool),
        "matrix": vocabulary.matrix.astype(np.uint8),  # bytes: a quarter of the int32 size
        "lengths": vocabulary.lengths,
        "parent": parent,
        "byte": byte,
        "bounds": np.array(bounds, dtype=np.int64).reshape(-1, 2),
        "token_node": token_node,
    }


def _decode(arrays: dict[str, np.ndarray] | Any) -> Vocabulary:
    """The vocabulary of an entry's arrays.

    Raises:
        KeyError: an array is missing. ValueError: the arrays disagree with each other.
    """
    lengths = arrays["lengths"].astype(np.int32)
    matrix, blob, special = arrays["matrix"].astype(np.int32), arrays["blob"], arrays["special"]
    v = lengths.shape[0]
    ends = np.cumsum(lengths, dtype=np.int64)
    if (
        matrix.ndim != 2
        or matrix.shape[0] != v
        or special.shape != (v,)
        or arrays["token_node"].shape != (v,)
        or int(ends[-1] if v else 0) != blob.size
        or (v and int(lengths.max()) > matrix.shape[1])
    ):
        raise ValueError("the arrays of the entry have inconsistent shapes")
    data = blob.tobytes()
    starts = (ends - lengths).tolist()
    tokens = tuple(data[s:e] for s, e in zip(starts, ends.tolist(), strict=True))
    bounds = [(int(lo), int(hi)) for lo, hi in arrays["bounds"].tolist()]
    trie = (arrays["parent"], arrays["byte"], bounds, arrays["token_node"])
    return Vocabulary(
        tokens=tokens,
        special=tuple(special.tolist()),
        matrix=matrix,
        lengths=lengths,
        trie=trie,
    )


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


def build_trie(matrix: np.ndarray, lengths: np.ndarray) -> Trie:
    """The byte trie of the padded tokens (see :data:`Trie`).

    Args:
        matrix: int [V, L_max], the token bytes padded with 0.
        lengths: int [V], the length of each token.

    Returns:
        ``(parent, byte, level bounds, node of token)``, nodes ordered by depth.
    """
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
