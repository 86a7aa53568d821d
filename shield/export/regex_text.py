"""Assertion-free pattern ASTs as llguidance regex text, and the facts the kind walk needs.

llguidance's ``/.../`` literals use the Rust ``regex`` crate's syntax over Unicode scalar values.
Character sets are written as ranges of ``\\x{...}`` escapes (ASCII letters and digits as
themselves), so no character has to be escaped by context; surrogates (U+D800..U+DFFF) are left
out, as in our own UTF-8 compilation (:func:`shield.automata.unicode.utf8_sequences`): neither
side can encode them. Case folding and normalisations are already inside the AST's character
sets, so no regex flag is needed.
"""

from __future__ import annotations

from shield.automata.syntax import (
    PREV_BEGIN,
    PREV_OTHER,
    PREV_WORD,
    Alt,
    Assert,
    CharSet,
    Concat,
    Node,
    Repeat,
    negate,
)

__all__ = [
    "WORD_RANGES",
    "Facts",
    "charset_text",
    "depends_on_prev",
    "regex_text",
    "split_word",
]

_SURROGATES = (0xD800, 0xDFFF)
#: The ASCII word characters ``[0-9A-Z_a-z]`` as code point ranges.
WORD_RANGES = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))


def _char(cp: int) -> str:
    if cp < 128 and chr(cp).isalnum():
        return chr(cp)
    return f"\\x{{{cp:X}}}"


def charset_text(ranges: tuple[tuple[int, int], ...]) -> str | None:
    """A regex class for normalised code point ranges, without surrogates.

    Args:
        ranges: sorted, disjoint ranges (a :class:`CharSet`'s).

    Returns:
        The class text, or None when no encodable code point is left.
    """
    parts: list[str] = []
    for lo, hi in ranges:
        for a, b in ((lo, min(hi, _SURROGATES[0] - 1)), (max(lo, _SURROGATES[1] + 1), hi)):
            if a <= b:
                parts.append(_char(a) if a == b else f"{_char(a)}-{_char(b)}")
    if not parts:
        return None
    return f"[{''.join(parts)}]"


def split_word(chars: CharSet, word: tuple[tuple[int, int], ...]) -> tuple[CharSet, CharSet]:
    """A character set split into its word characters and the rest.

    Args:
        chars: the set.
        word: the word characters, as normalised ranges.

    Returns:
        ``(word part, other part)``.
    """
    return CharSet(_intersect(chars.ranges, word)), CharSet(_intersect(chars.ranges, negate(word)))


def _intersect(
    a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, int], ...]:
    """The intersection of two normalised range lists (a merge of two sorted lists)."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):  # each step advances i or j
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def regex_text(node: Node) -> str | None:
    """The regex text of an assertion-free AST.

    Args:
        node: an AST without :class:`Assert` nodes.

    Returns:
        The text, or None when the node matches nothing.

    Raises:
        ValueError: the node holds an assertion.
    """
    if isinstance(node, CharSet):
        return charset_text(node.ranges)
    if isinstance(node, Concat):
        parts = [regex_text(item) for item in node.items]
        if any(p is None for p in parts):
            return None
        texts = [p for p in parts if p is not None]
        return "".join(
            p if _is_atom(item) else f"(?:{p})" for p, item in zip(texts, node.items, strict=True)
        )
    if isinstance(node, Alt):
        live = [p for p in (regex_text(item) for item in node.items) if p is not None]
        if not live:
            return None
        return live[0] if len(live) == 1 else "|".join(live)
    if isinstance(node, Repeat):
        inner = regex_text(node.item)
        if inner is None:
            return "(?:)" if node.low == 0 else None
        atom = inner if _is_atom(node.item) else f"(?:{inner})"
        high = "" if node.high is None else str(node.high)
        return f"{atom}{{{node.low},{high}}}"
    raise ValueError(f"regex_text takes an assertion-free AST; got {type(node).__name__}")


def _is_atom(node: Node) -> bool:
    """Whether the node's text can be concatenated or quantified without a group."""
    return isinstance(node, CharSet) or (isinstance(node, Concat) and len(node.items) == 0)


def depends_on_prev(mask: int) -> bool:
    """Whether an assertion's verdict depends on the kind of the previous symbol."""
    rows = {(mask >> (3 * p)) & 7 for p in (PREV_BEGIN, PREV_WORD, PREV_OTHER)}
    return len(rows) > 1


class Facts:
    """Memoised facts about the nodes of one AST (keyed by identity: the AST outlives the walk).

    Attributes:
        asserts: whether an :class:`Assert` occurs in a node.
        empty: whether a node can match without reading a character (assertions aside).
        prev: whether a previous-kind-dependent assertion is reachable before the node reads a
            character.
    """

    def __init__(self) -> None:
        self._asserts: dict[int, bool] = {}
        self._nullable: dict[int, bool] = {}
        self._prev: dict[int, bool] = {}

    def has_assert(self, node: Node) -> bool:
        """Whether an :class:`Assert` occurs anywhere in ``node``."""
        found = self._asserts.get(id(node))
        if found is None:
            if isinstance(node, Assert):
                found = True
            elif isinstance(node, Concat | Alt):
                found = any(self.has_assert(item) for item in node.items)
            elif isinstance(node, Repeat):
                found = self.has_assert(node.item)
            else:
                found = False
            self._asserts[id(node)] = found
        return found

    def nullable(self, node: Node) -> bool:
        """Whether ``node`` can match without reading a character (assertions aside)."""
        found = self._nullable.get(id(node))
        if found is None:
            if isinstance(node, CharSet):
                found = False
            elif isinstance(node, Assert):
                found = True
            elif isinstance(node, Concat):
                found = all(self.nullable(item) for item in node.items)
            elif isinstance(node, Alt):
                found = any(self.nullable(item) for item in node.items)
            else:
                found = node.low == 0 or self.nullable(node.item)
            self._nullable[id(node)] = found
        return found

    def reaches_prev_assert(self, node: Node) -> bool:
        """Whether a previous-kind-dependent assertion can be met before ``node`` reads a character."""
        found = self._prev.get(id(node))
        if found is None:
            found = False
            if isinstance(node, Assert):
                found = depends_on_prev(node.mask)
            elif isinstance(node, Concat):
                for item in node.items:
                    if self.reaches_prev_assert(item):
                        found = True
                        break
                    if not self.nullable(item):
                        break
            elif isinstance(node, Alt):
                found = any(self.reaches_prev_assert(item) for item in node.items)
            elif isinstance(node, Repeat):
                found = node.high != 0 and self.reaches_prev_assert(node.item)
            self._prev[id(node)] = found
        return found
