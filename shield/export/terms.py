"""Terms: the lexeme expressions of an llguidance Lark grammar, built as shared values.

llguidance lexemes (Lark *terminals*) combine ``/regex/`` literals with concatenation, ``|``,
``&`` (intersection), ``~`` (complement) and ``{m,n}``. Regex literals only match valid UTF-8;
``~`` complements within *byte strings* (every byte but 0xFF, which llguidance reserves for
special tokens), so the byte-level languages our automata read (a lone continuation byte, a
truncated character) are written with ``~``: :data:`ANY` is every byte string, :data:`ONE` one
byte, :data:`ONE_OTHER` one non-word byte.

A term is a frozen value compared by identity: a builder that uses one term twice passes the same
object twice, and :func:`render` names every term referenced more than once as a terminal of its
own, so a grammar stays linear in the size of what built it. The empty language is ``None``;
builders drop it (``alt``) or propagate it (``seq``, ``both``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ANY",
    "EMPTY",
    "NONEMPTY",
    "ONE",
    "ONE_OTHER",
    "WORD",
    "Term",
    "alt",
    "both",
    "ends_other",
    "ends_word",
    "literal",
    "negate",
    "render",
    "repeat",
    "seq",
    "starts_other",
    "starts_word",
]


@dataclass(frozen=True, eq=False)
class Literal:
    """A ``/text/`` regex literal (llguidance's regex syntax; matches valid UTF-8 only)."""

    text: str


@dataclass(frozen=True, eq=False)
class Seq:
    """The items one after another (at least two)."""

    items: tuple[Term, ...]


@dataclass(frozen=True, eq=False)
class Alt:
    """Any one of the items (at least two)."""

    items: tuple[Term, ...]


@dataclass(frozen=True, eq=False)
class Both:
    """The intersection of the items (at least two)."""

    items: tuple[Term, ...]


@dataclass(frozen=True, eq=False)
class Not:
    """Every byte string (without 0xFF) that ``item`` does not match."""

    item: Term


@dataclass(frozen=True, eq=False)
class Repeat:
    """``item`` repeated ``low`` to ``high`` times (``high`` None: unbounded)."""

    item: Term
    low: int
    high: int | None


Term = Literal | Seq | Alt | Both | Not | Repeat


def literal(text: str) -> Literal:
    """A regex literal.

    Args:
        text: regex source in llguidance's syntax (``/`` must be escaped by the caller).

    Returns:
        The term.
    """
    return Literal(text)


def seq(*items: Term | None) -> Term | None:
    """Concatenation; None (the empty language) if any item is None.

    Args:
        items: the parts, in order.

    Returns:
        The term, :data:`EMPTY` for no parts, or None.
    """
    parts: list[Term] = []
    for item in items:
        if item is None:
            return None
        if item is not EMPTY:
            parts.append(item)  # never flattened: a shared part stays one object
    if not parts:
        return EMPTY
    return parts[0] if len(parts) == 1 else Seq(tuple(parts))


def alt(items: Iterable[Term | None]) -> Term | None:
    """Union; None items are dropped, repeated objects kept once.

    Args:
        items: the alternatives.

    Returns:
        The term, or None when every item is None.
    """
    parts: list[Term] = []
    for item in items:
        if item is not None and not any(item is p for p in parts):
            parts.append(item)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Alt(tuple(parts))


def both(*items: Term | None) -> Term | None:
    """Intersection; None if any item is None.

    Args:
        items: the parts (at least one).

    Returns:
        The term, or None.
    """
    parts: list[Term] = []
    for item in items:
        if item is None:
            return None
        if item is not ANY:
            parts.append(item)
    if not parts:
        return ANY
    return parts[0] if len(parts) == 1 else Both(tuple(parts))


def negate(item: Term | None) -> Term:
    """Complement within byte strings.

    Args:
        item: the language to complement (None: the empty language).

    Returns:
        The term.
    """
    return ANY if item is None else Not(item)


def repeat(item: Term | None, low: int, high: int | None) -> Term | None:
    """``item{low,high}``.

    Args:
        item: the repeated term (None: the empty language).
        low: minimum count.
        high: maximum count, or None for unbounded.

    Returns:
        The term, or None when it matches nothing.
    """
    if item is None:
        return EMPTY if low == 0 else None
    if high == 0:
        return EMPTY
    if low == high == 1:
        return item
    return Repeat(item, low, high)


#: The empty string.
EMPTY = Literal("(?:)")
#: One ASCII word character (a word byte).
WORD = Literal("[0-9A-Z_a-z]")
#: Every byte string: the complement of the empty language (here, of ``a`` ∩ ``b``).
ANY: Term = Not(Both((Literal("a"), Literal("b"))))
#: Every non-empty byte string.
NONEMPTY: Term = Not(EMPTY)
#: Exactly one byte.
ONE: Term = Not(Alt((EMPTY, Seq((NONEMPTY, NONEMPTY)))))
#: One byte that is not a word byte (a non-ASCII byte, or an ASCII non-word character).
ONE_OTHER: Term = Both((ONE, Not(WORD)))


def ends_word() -> Term:
    """Non-empty byte strings whose last byte is a word byte."""
    return _ENDS_WORD


def ends_other() -> Term:
    """Non-empty byte strings whose last byte is not a word byte."""
    return _ENDS_OTHER


def starts_word() -> Term:
    """Non-empty byte strings whose first byte is a word byte."""
    return _STARTS_WORD


def starts_other() -> Term:
    """Non-empty byte strings whose first byte is not a word byte."""
    return _STARTS_OTHER


_ENDS_WORD: Term = Seq((ANY, WORD))
_ENDS_OTHER: Term = Not(Alt((EMPTY, _ENDS_WORD)))
_STARTS_WORD: Term = Seq((WORD, ANY))
_STARTS_OTHER: Term = Not(Alt((EMPTY, _STARTS_WORD)))

#: Terms every grammar may use, by name (rendered once, in this order, when used).
_NAMED: tuple[tuple[str, Term], ...] = (
    ("ANY", ANY),
    ("NONEMPTY", NONEMPTY),
    ("ONE", ONE),
    ("ONE_OTHER", ONE_OTHER),
    ("ENDS_WORD", _ENDS_WORD),
    ("ENDS_OTHER", _ENDS_OTHER),
    ("STARTS_WORD", _STARTS_WORD),
    ("STARTS_OTHER", _STARTS_OTHER),
)


def _children(term: Term) -> Sequence[Term]:
    if isinstance(term, Seq | Alt | Both):
        return term.items
    if isinstance(term, Not | Repeat):
        return (term.item,)
    return ()


def render(roots: Sequence[tuple[str, Term]], *, share_above: int = 1) -> list[str]:
    """Lark terminal definitions for ``roots``, sharing every term used more than once.

    Args:
        roots: ``(NAME, term)`` pairs, each rendered as ``NAME: ...``.
        share_above: a composite term referenced more than this many times gets its own name.

    Returns:
        Definition lines, each terminal defined before it is used.
    """
    uses: dict[int, int] = {}
    order: list[Term] = []  # post-order: children before parents
    seen: set[int] = set()
    for _, root in roots:
        stack: list[tuple[Term, bool]] = [(root, False)]
        while stack:  # each term is expanded once: bounded by the number of distinct terms
            term, expanded = stack.pop()
            if expanded:
                order.append(term)
                continue
            uses[id(term)] = uses.get(id(term), 0) + 1
            if id(term) in seen:
                continue
            seen.add(id(term))
            stack.append((term, True))
            stack.extend((child, False) for child in reversed(_children(term)))
    names: dict[int, str] = {id(term): name for name, term in _NAMED if id(term) in seen}
    for name, root in roots:
        names[id(root)] = name
    for term in order:
        if id(term) not in names and uses[id(term)] > share_above and _children(term):
            names[id(term)] = f"T{len(names)}"
    lines: list[str] = []
    texts: dict[int, str] = {}
    for term in order:
        body = _body(term, names, texts)
        texts[id(term)] = body
        if id(term) in names:
            lines.append(f"{names[id(term)]}: {body}")
    return lines


def _atom(term: Term, names: dict[int, str], texts: dict[int, str]) -> str:
    """The text of ``term`` as an operand: its name, a literal, or a parenthesised body."""
    if id(term) in names:
        return names[id(term)]
    if isinstance(term, Literal):
        return texts[id(term)]
    return f"({texts[id(term)]})"


def _body(term: Term, names: dict[int, str], texts: dict[int, str]) -> str:
    if isinstance(term, Literal):
        return f"/{term.text}/"
    if isinstance(term, Seq):
        return " ".join(_atom(t, names, texts) for t in term.items)
    if isinstance(term, Alt):
        return " | ".join(_atom(t, names, texts) for t in term.items)
    if isinstance(term, Both):
        return " & ".join(_atom(t, names, texts) for t in term.items)
    if isinstance(term, Not):
        return f"~{_atom(term.item, names, texts)}"
    high = "" if term.high is None else str(term.high)
    return f"{_atom(term.item, names, texts)}{{{term.low},{high}}}"
