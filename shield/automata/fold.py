"""Folding a pattern's look-alike characters into one representative each, for span searches.

A staged rule (:func:`shield.automata.compiler.is_staged`) never builds its byte DFA, but scans
still search its pattern's NFA for full match spans (:mod:`shield.spans`,
:mod:`shield.automata.reverse`). Through every normalisation a large word list's pattern is huge
(each letter's hundreds of stand-ins spelled out in UTF-8 at every trie node: 2.3 million NFA
states for the 917-word toxicity list), although the pattern cannot tell most of those
characters apart.

The *fold classes* of a pattern are the coarsest partition of the code points its character
sets name such that every set is a union of classes and no class mixes word characters with
other characters (assertions read only that). Replacing every character of a text by its class's
representative (the smallest code point, ASCII where the class has one) and every set of the
pattern by its representatives changes no match: a character and its representative are in
exactly the same sets and of the same kind. The folded pattern names one code point per class
(a few hundred), so its NFA stays small; spans found in the folded text map back to the text's
own offsets (:func:`shield.automata.normaliser.visible_bytes`).
"""

from __future__ import annotations

from shield.automata.alphabet import WORD_BYTES
from shield.automata.syntax import Alt, Assert, CharSet, Concat, Node, Repeat, union_ranges

__all__ = ["fold_classes", "fold_node"]


def _sets(node: Node, found: dict[CharSet, None]) -> None:
    """Every distinct character set of ``node`` (iteratively: word-list tries are deep)."""
    stack: list[Node] = [node]
    seen: set[int] = set()
    while stack:  # fuel: each node is pushed once per parent edge, and visited once
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, CharSet):
            found.setdefault(item)
        elif isinstance(item, Concat | Alt):
            stack.extend(item.items)
        elif isinstance(item, Repeat):
            stack.append(item.item)


def fold_classes(node: Node, word_chars: frozenset[int]) -> dict[int, int]:
    """The representative of every code point the pattern's sets name, where it is another.

    Args:
        node: a pattern.
        word_chars: the non-ASCII code points that count as word characters for its assertions.

    Returns:
        ``{code point: representative}`` for the code points whose representative differs.
    """
    found: dict[CharSet, None] = {}
    _sets(node, found)
    signature: dict[int, list[int]] = {}
    for index, chars in enumerate(found):
        for lo, hi in chars.ranges:
            for cp in range(lo, hi + 1):
                signature.setdefault(cp, []).append(index)
    classes: dict[tuple[bool, tuple[int, ...]], int] = {}
    fold: dict[int, int] = {}
    for cp in sorted(signature):  # ascending: the first member of a class is its representative
        word = bool(WORD_BYTES[cp]) if cp < 128 else cp in word_chars
        rep = classes.setdefault((word, tuple(signature[cp])), cp)
        if rep != cp:
            fold[cp] = rep
    return fold


def fold_node(node: Node, fold: dict[int, int]) -> Node:
    """``node`` with every character set reduced to its representatives.

    Args:
        node: a pattern.
        fold: :func:`fold_classes` of the pattern.

    Returns:
        The folded pattern (shared subtrees stay shared).
    """
    memo: dict[int, Node] = {}

    def chars(item: CharSet) -> CharSet:
        points = (fold.get(cp, cp) for lo, hi in item.ranges for cp in range(lo, hi + 1))
        return CharSet(union_ranges((cp, cp) for cp in set(points)))

    def walk(item: Node) -> Node:
        done = memo.get(id(item))
        if done is not None:
            return done
        out: Node
        if isinstance(item, CharSet):
            out = chars(item)
        elif isinstance(item, Concat):
            out = Concat(tuple(walk(x) for x in item.items))
        elif isinstance(item, Alt):
            out = Alt(tuple(walk(x) for x in item.items))
        elif isinstance(item, Repeat):
            out = Repeat(walk(item.item), item.low, item.high)
        else:
            assert isinstance(item, Assert)
            out = item
        memo[id(item)] = out
        return out

    return walk(node)  # as deep as the pattern (build_nfa recurses the same way)
