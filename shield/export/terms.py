"""Terms: the lexeme expressions of an llguidance Lark grammar, built as shared values.

llguidance lexemes (Lark *terminals*) combine ``/regex/`` literals with concatenation, ``|``,
``&`` (intersection), ``~`` (complement) and ``{m,n}``. Regex literals only match valid UTF-8;
``~`` complements within *byte strings* (every byte but 0xFF, which llguidance reserves for
special tokens), so the byte-level languages our automata read (a lone continuation byte, a
truncated character) are written with ``~``: :data:`ANY` is every byte string, :data:`ONE` one
byte; :class:`Boundaries` holds the terms that say where words end.

A term is a frozen value compared by identity: a builder that uses one term twice passes the same
object twice, and :func:`render` names every term referenced more than once as a terminal of its
own, so a grammar stays linear in the size of what built it. The empty language is ``None``;
builders drop it (``alt``) or propagate it (``seq``, ``both``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shield.automata.syntax import union_ranges
from shield.export.regex_text import WORD_RANGES, charset_text

__all__ = [
    "ANY",
    "BYTES",
    "EMPTY",
    "NAMED",
    "NONEMPTY",
    "ONE",
    "UTF8",
    "Boundaries",
    "Term",
    "alt",
    "both",
    "boundaries",
    "literal",
    "negate",
    "render",
    "repeat",
    "seq",
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
#: Every byte string: the complement of the empty language (here, of ``a`` ∩ ``b``).
ANY: Term = Not(Both((Literal("a"), Literal("b"))))
#: Every non-empty byte string.
NONEMPTY: Term = Not(EMPTY)
#: Exactly one byte.
ONE: Term = Not(Alt((EMPTY, Seq((NONEMPTY, NONEMPTY)))))

#: Every valid UTF-8 text.
UTF8: Term = Literal("(?s:.)*")

#: The terms every grammar may use, by the names they get when rendered.
NAMED: tuple[tuple[str, Term], ...] = (
    ("ANY", ANY),
    ("NONEMPTY", NONEMPTY),
    ("ONE", ONE),
    ("UTF8", UTF8),
)


@dataclass(frozen=True, eq=False)
class Boundaries:
    """Where words end, as terms: the kind of the symbol before and after a position.

    Attributes:
        by_characters: False for byte kinds (regexes: ``[A-Za-z0-9_]`` bytes are word bytes,
            every other byte is not), True for character kinds (word lists' whole words: a
            look-alike letter is a word character; malformed UTF-8 is not).
        word_ranges: the word characters, as normalised code point ranges.
        word: one word character.
        ends_word: non-empty texts whose last symbol is a word symbol.
        ends_other: non-empty texts whose last symbol is not.
        starts_word: non-empty texts whose first symbol is a word symbol.
        starts_other: non-empty texts whose first symbol is not.
        one_other: one non-word byte (byte kinds only).
    """

    by_characters: bool
    word_ranges: tuple[tuple[int, int], ...]
    word: Term
    ends_word: Term
    ends_other: Term
    starts_word: Term
    starts_other: Term
    one_other: Term

    def named(self) -> tuple[tuple[str, Term], ...]:
        """The terms by the names they get when rendered (``_CHAR`` for character kinds)."""
        suffix = "_CHAR" if self.by_characters else ""
        fields = ("word", "ends_word", "ends_other", "starts_word", "starts_other", "one_other")
        return tuple((f"{name.upper()}{suffix}", getattr(self, name)) for name in fields)


def boundaries(extra: frozenset[int] = frozenset()) -> Boundaries:
    """The boundary terms of one notion of word character.

    Args:
        extra: non-ASCII code points that are word characters besides ``[0-9A-Z_a-z]``; empty
            for byte kinds.

    Returns:
        The terms.
    """
    ranges = union_ranges([*WORD_RANGES, *((cp, cp) for cp in extra)])
    word_class = charset_text(ranges)
    assert word_class is not None
    word = Literal(word_class)
    ends_word = Seq((ANY, word))
    starts_word = Seq((word, ANY))
    return Boundaries(
        by_characters=bool(extra),
        word_ranges=ranges,
        word=word,
        ends_word=ends_word,
        ends_other=Not(Alt((EMPTY, ends_word))),
        starts_word=starts_word,
        starts_other=Not(Alt((EMPTY, starts_word))),
        one_other=Both((ONE, Not(word))),
    )


#: Byte kinds, as regexes and every pattern's assertions read them.
BYTES = boundaries()


def _children(term: Term) -> Sequence[Term]:
    if isinstance(term, Seq | Alt | Both):
        return term.items
    if isinstance(term, Not | Repeat):
        return (term.item,)
    return ()


def render(
    roots: Sequence[tuple[str, Term]],
    *,
    named: Sequence[tuple[str, Term]] = NAMED,
    share_above: int = 1,
) -> list[str]:
    """Lark terminal definitions for ``roots``, sharing every term used more than once.

    Args:
        roots: ``(NAME, term)`` pairs, each rendered as ``NAME: ...``.
        named: terms that keep these names wherever they are used.
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
    names: dict[int, str] = {id(term): name for name, term in named if id(term) in seen}
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
