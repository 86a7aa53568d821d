"""Parser of the supported regex subset into the pattern AST of :mod:`shield.automata.syntax`.

Supported (Python ``re`` syntax and meaning unless noted):

- literals; escapes ``\\.`` and other escaped punctuation, ``\\n \\t \\r \\f \\v \\a \\0``,
  ``\\xNN``, ``\\uNNNN``, ``\\UNNNNNNNN``;
- classes ``[...]`` with ranges, negation ``[^...]`` and the escapes below; ``.`` (any code point
  except newline);
- ``\\d \\w \\s`` are ASCII classes (``[0-9]``, ``[A-Za-z0-9_]``, ``[ \\t\\n\\r\\f\\v]``), as with
  ``re.ASCII``; ``\\D \\W \\S`` are their complements over all code points;
- groups ``(...)``, ``(?:...)``, ``(?P<name>...)``, comments ``(?#...)``; alternation ``|``;
- quantifiers ``* + ? {m} {m,} {,n} {m,n}`` and their lazy forms (same language);
- anchors ``^`` and ``\\A`` (start of text), ``$`` and ``\\Z`` (end of text only: unlike Python's
  ``$``, never before a final newline), ``\\b`` and ``\\B`` with ASCII word characters;
- the inline flag ``(?i)`` at the very start (simple Unicode case folding).

Rejected with :class:`~shield.errors.UnsupportedSpecError` (never approximated): back-references,
look-around, atomic groups, possessive quantifiers, conditionals, scoped or other inline flags,
``\\p{..}``/``\\P{..}`` and ``\\N{..}``. Malformed patterns raise
:class:`~shield.errors.SpecSyntaxError`. Both messages show the pattern with a caret under the
offending position.
"""

from __future__ import annotations

from shield.automata.syntax import (
    BOUNDARY_MASK,
    END_MASK,
    MAX_CODE_POINT,
    NOT_BOUNDARY_MASK,
    START_MASK,
    Alt,
    Assert,
    CharSet,
    Concat,
    Node,
    Range,
    Repeat,
    negate,
    union_ranges,
)
from shield.automata.unicode import fold_ranges
from shield.errors import SpecSyntaxError, UnsupportedSpecError

__all__ = ["MAX_NESTING", "parse_regex"]

#: Deepest group nesting the parser accepts.
MAX_NESTING = 100

_DIGIT: tuple[Range, ...] = ((0x30, 0x39),)
_WORD: tuple[Range, ...] = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE: tuple[Range, ...] = ((0x09, 0x0D), (0x20, 0x20))
_CATEGORIES = {
    "d": _DIGIT,
    "w": _WORD,
    "s": _SPACE,
    "D": negate(_DIGIT),
    "W": negate(_WORD),
    "S": negate(_SPACE),
}
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_DOT = negate(((0x0A, 0x0A),))


def parse_regex(pattern: str, *, case_insensitive: bool = False) -> Node:
    """Parse a pattern of the supported subset.

    Args:
        pattern: the regex source.
        case_insensitive: fold case everywhere (as if the pattern started with ``(?i)``).

    Returns:
        The pattern AST; character sets are already closed under case folding when folding is on.

    Raises:
        SpecSyntaxError: the pattern is malformed (the message points at the position).
        UnsupportedSpecError: the pattern uses a construct outside the subset.
    """
    return _Parser(pattern, case_insensitive).parse()


class _Parser:
    """Recursive descent over the pattern; ``pos`` is the index of the next unread character."""

    def __init__(self, pattern: str, case_insensitive: bool) -> None:
        self.pattern = pattern
        self.pos = 0
        self.fold = case_insensitive
        self.depth = 0

    # -- errors ------------------------------------------------------------------------------
    def _located(self, message: str, pos: int, hint: str) -> str:
        shown = self.pattern.replace("\n", " ").replace("\t", " ")
        return f"{message} at position {pos}\n  {shown}\n  {' ' * pos}^\n{hint}"

    def syntax(self, message: str, pos: int, hint: str = "fix the pattern") -> SpecSyntaxError:
        return SpecSyntaxError(self._located(f"invalid regex: {message}", pos, hint))

    def unsupported(self, what: str, pos: int) -> UnsupportedSpecError:
        hint = (
            "rewrite the pattern without it (see the supported subset in the README), "
            "or use a word list or an after/at_most rule"
        )
        return UnsupportedSpecError(
            self._located(f"unsupported regex construct: {what}", pos, hint)
        )

    # -- helpers -----------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.pattern[i] if i < len(self.pattern) else None

    def charset(self, ranges: tuple[Range, ...] | list[Range], fold: bool) -> CharSet:
        normal = union_ranges(ranges)
        if fold and self.fold:
            normal = union_ranges(fold_ranges(normal))
        return CharSet(normal)

    # -- grammar -----------------------------------------------------------------------------
    def parse(self) -> Node:
        if self.pattern.startswith("(?i)"):
            self.fold = True
            self.pos = 4
        node = self.alternation()
        if self.pos < len(self.pattern):
            raise self.syntax("unbalanced parenthesis ')'", self.pos, "remove it or add a '('")
        return node

    def alternation(self) -> Node:
        branches = [self.concatenation()]
        while self.peek() == "|":
            self.pos += 1
            branches.append(self.concatenation())
        return branches[0] if len(branches) == 1 else Alt(tuple(branches))

    def concatenation(self) -> Node:
        items: list[Node] = []
        while (ch := self.peek()) is not None and ch not in "|)":
            items.append(self.quantified())
        return items[0] if len(items) == 1 else Concat(tuple(items))

    def quantified(self) -> Node:
        start = self.pos
        atom = self.atom()
        bounds = self.quantifier()
        if bounds is None:
            return atom
        if isinstance(atom, Assert):
            raise self.syntax("nothing to repeat", start, "escape the quantifier or remove it")
        low, high = bounds
        if self.peek() == "+":
            raise self.unsupported("possessive quantifier", self.pos)
        if self.peek() == "?":
            self.pos += 1  # lazy: same language
        if self.peek() in ("*", "+", "?") or self.quantifier_ahead():
            raise self.syntax("multiple repeat", self.pos, "wrap the repeated part in (?:...)")
        return Repeat(atom, low, high)

    def quantifier_ahead(self) -> bool:
        save = self.pos
        try:
            return self.peek() == "{" and self.braces() is not None
        finally:
            self.pos = save

    def quantifier(self) -> tuple[int, int | None] | None:
        ch = self.peek()
        if ch in ("*", "+", "?"):
            self.pos += 1
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        if ch == "{":
            return self.braces()
        return None

    def braces(self) -> tuple[int, int | None] | None:
        """``{m}``, ``{m,}``, ``{,n}``, ``{m,n}``; None (and no input consumed) when not one."""
        start = self.pos
        i = start + 1
        text = self.pattern
        j = i
        while j < len(text) and text[j].isdigit() and text[j].isascii():
            j += 1
        low_text = text[i:j]
        high_text: str | None = low_text
        if j < len(text) and text[j] == ",":
            k = j + 1
            while k < len(text) and text[k].isdigit() and text[k].isascii():
                k += 1
            high_text = text[j + 1 : k]
            j = k
        if j >= len(text) or text[j] != "}" or text[i:j] == "":
            return None
        low = int(low_text) if low_text else 0
        high = int(high_text) if high_text else None
        if high is not None and high < low:
            raise self.syntax("min repeat greater than max repeat", start + 1)
        self.pos = j + 1
        return low, high

    def atom(self) -> Node:
        ch = self.peek()
        start = self.pos
        if ch is None:
            raise self.syntax("unexpected end of pattern", start)
        if ch in "*+?" or (ch == "{" and self.quantifier_ahead()):
            raise self.syntax("nothing to repeat", start, "escape the quantifier with a backslash")
        self.pos += 1
        if ch == "(":
            return self.group(start)
        if ch == "[":
            return self.char_class(start)
        if ch == ".":
            return CharSet(_DOT)
        if ch == "^":
            return Assert(START_MASK)
        if ch == "$":
            return Assert(END_MASK)
        if ch == "\\":
            return self.escape(start)
        return self.charset([(ord(ch), ord(ch))], fold=True)

    def group(self, start: int) -> Node:
        if self.depth >= MAX_NESTING:
            raise self.unsupported(f"groups nested deeper than {MAX_NESTING}", start)
        if self.peek() == "?":
            self.pos += 1
            kind = self.group_extension(start)
            if kind == "comment":
                return Concat(())
        self.depth += 1
        node = self.alternation()
        self.depth -= 1
        if self.peek() != ")":
            raise self.syntax("missing ), unterminated subpattern", start, "close the group")
        self.pos += 1
        return node

    def group_extension(self, start: int) -> str:
        """Consume what follows ``(?``; returns ``group`` or ``comment``, or raises."""
        rest = self.pattern[self.pos :]
        if rest.startswith(":"):
            self.pos += 1
            return "group"
        if rest.startswith("#"):
            end = self.pattern.find(")", self.pos)
            if end < 0:
                raise self.syntax("missing ), unterminated comment", start)
            self.pos = end + 1
            return "comment"
        if rest.startswith("P<"):
            end = self.pattern.find(">", self.pos + 2)
            name = self.pattern[self.pos + 2 : end] if end >= 0 else ""
            if end < 0 or not name.isidentifier():
                raise self.syntax("bad group name", self.pos + 2, "use (?P<name>...) with a name")
            self.pos = end + 1
            return "group"
        for prefix, what in (
            ("P=", "back-reference (?P=name)"),
            ("=", "look-ahead (?=...)"),
            ("!", "negative look-ahead (?!...)"),
            ("<=", "look-behind (?<=...)"),
            ("<!", "negative look-behind (?<!...)"),
            (">", "atomic group (?>...)"),
            ("(", "conditional (?(...)...)"),
        ):
            if rest.startswith(prefix):
                raise self.unsupported(what, start)
        flags = ""
        for c in rest:
            if c not in "aiLmsux-":
                break
            flags += c
        if flags and len(rest) > len(flags) and rest[len(flags)] in ":)":
            if flags == "i" and rest[1] == ")":
                raise self.syntax(
                    "global flags not at the start of the expression",
                    start,
                    "move (?i) to the start",
                )
            raise self.unsupported(f"inline flags (?{flags}{rest[len(flags)]}", start)
        raise self.syntax("unknown extension (?" + rest[:1], start)

    def escape(self, start: int) -> Node:
        ch = self.peek()
        if ch is None:
            raise self.syntax("bad escape (end of pattern)", start, "remove the trailing backslash")
        self.pos += 1
        if ch in _CATEGORIES:
            return CharSet(_CATEGORIES[ch])
        masks = {"b": BOUNDARY_MASK, "B": NOT_BOUNDARY_MASK, "A": START_MASK, "Z": END_MASK}
        if ch in masks:
            return Assert(masks[ch])
        return self.charset([(cp := self.escaped_code_point(ch, start), cp)], fold=True)

    def escaped_code_point(self, ch: str, start: int) -> int:
        """The code point of a character escape whose letter ``ch`` was just consumed."""
        if ch in _SIMPLE_ESCAPES:
            return ord(_SIMPLE_ESCAPES[ch])
        if ch in _HEX_ESCAPES:
            width = _HEX_ESCAPES[ch]
            digits = self.pattern[self.pos : self.pos + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise self.syntax(
                    f"incomplete escape \\{ch}{digits}",
                    start,
                    f"write \\{ch} and {width} hex digits",
                )
            value = int(digits, 16)
            if value > MAX_CODE_POINT:
                raise self.syntax(f"bad escape \\{ch}{digits} (beyond U+10FFFF)", start)
            self.pos += width
            return value
        if ch == "0":
            digits = ""
            while len(digits) < 2 and (d := self.peek()) is not None and d in "01234567":
                digits += d
                self.pos += 1
            return int(digits or "0", 8)
        if ch in "123456789":
            raise self.unsupported(f"back-reference \\{ch}", start)
        if ch in "pP":
            raise self.unsupported(f"Unicode property \\{ch}{{..}}", start)
        if ch == "N":
            raise self.unsupported("named character \\N{..}", start)
        if ch.isascii() and ch.isalnum():
            raise self.syntax(
                f"bad escape \\{ch}", start, "escape only punctuation, or use a supported escape"
            )
        return ord(ch)

    def char_class(self, start: int) -> Node:
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        folded: list[Range] = []
        plain: list[Range] = []
        first = True
        while True:
            ch = self.peek()
            if ch is None:
                raise self.syntax("unterminated character set", start, "close it with ]")
            if ch == "]" and not first:
                self.pos += 1
                break
            first = False
            item_pos = self.pos
            lo = self.class_item(plain)
            if lo is None:
                continue
            if self.peek() == "-" and self.peek(1) not in (None, "]"):
                self.pos += 1
                hi_pos = self.pos
                hi = self.class_item(None)
                if hi is None:
                    raise self.syntax(
                        "bad character range", item_pos, "use single characters as range ends"
                    )
                if hi < lo:
                    raise self.syntax(
                        f"bad character range {chr(lo)}-{chr(hi)}",
                        hi_pos,
                        "put the smaller end first",
                    )
                folded.append((lo, hi))
            else:
                folded.append((lo, lo))
        ranges = union_ranges(folded)
        if self.fold and ranges:
            ranges = union_ranges(fold_ranges(ranges))
        ranges = union_ranges([*ranges, *plain])
        return CharSet(negate(ranges) if negated else ranges)

    def class_item(self, categories: list[Range] | None) -> int | None:
        """One class member: returns its code point, or None after adding a category to ``categories``."""
        start = self.pos
        ch = self.peek()
        assert ch is not None
        self.pos += 1
        if ch != "\\":
            return ord(ch)
        esc = self.peek()
        if esc is None:
            raise self.syntax("unterminated character set", start, "close it with ]")
        self.pos += 1
        if esc in _CATEGORIES:
            if categories is None:
                raise self.syntax(
                    "bad character range", start, "use single characters as range ends"
                )
            categories.extend(_CATEGORIES[esc])
            return None
        if esc == "b":
            return 0x08
        if esc in "ABZ":
            raise self.syntax(f"bad escape \\{esc}", start)
        return self.escaped_code_point(esc, start)
