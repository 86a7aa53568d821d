"""A small line index over TOML source text, so that spec errors can name the line they concern.

``tomllib`` returns plain dictionaries without positions. :class:`LineIndex` re-reads the text with
a minimal scanner that understands exactly what is needed to find where a key is defined: table
headers (``[a.b]``), array-of-tables headers (``[[rule]]``), dotted and quoted keys, and values that
span lines (multi-line strings, arrays and inline tables). It runs only on text that ``tomllib``
has accepted, so it never needs to report syntax errors; on anything it does not understand it
stops and keeps what it has found (locations are best effort, the error itself is never lost).
"""

from __future__ import annotations

import contextlib
import tomllib

__all__ = ["KeyPath", "LineIndex"]

#: A path into the parsed document: table and key names, with the index of an array-of-tables
#: element where one is crossed, e.g. ``("rule", 2, "forbid", "regex")``.
KeyPath = tuple[str | int, ...]

_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class LineIndex:
    """Where each table and key of a TOML document is defined (1-based line numbers).

    Args:
        text: TOML text that ``tomllib`` accepts.

    Example:
        >>> index = LineIndex('[spec]\\nname = "x"\\n\\n[[rule]]\\nid = "a"\\n')
        >>> index.line_of(("rule", 0, "id")), index.line_of(("rule", 0, "forbid"))
        (5, 4)
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._lines: dict[KeyPath, int] = {}
        self._array_counts: dict[KeyPath, int] = {}
        # Locations are best effort: keep what was found before the scanner got lost.
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            self._scan()

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its longest prefix that has a known line; None if none has."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None

    # -- scanning ---------------------------------------------------------------------------

    def _scan(self) -> None:
        text, pos, line = self._text, 0, 1
        table: KeyPath = ()
        while pos < len(text):
            pos = _skip_blank(text, pos)
            if pos >= len(text):
                break
            char = text[pos]
            if char == "\n":
                pos, line = pos + 1, line + 1
            elif char == "#":
                pos = _skip_comment(text, pos)
            elif char == "[":
                is_array = text.startswith("[[", pos)
                names, pos = _read_key(text, pos + (2 if is_array else 1))
                pos = text.index("]", pos) + (2 if is_array else 1)
                table = self._resolve(names, is_array)
                self._record((), table, line)
            else:
                names, pos = _read_key(text, pos)
                if pos >= len(text) or text[pos] != "=":
                    raise ValueError("expected '=' after a key")
                self._record(table, names, line)
                pos, line = _skip_value(text, pos + 1, line)

    def _resolve(self, names: tuple[str, ...], is_array: bool) -> KeyPath:
        resolved: list[str | int] = []
        for position, name in enumerate(names):
            resolved.append(name)
            key = tuple(resolved)
            if is_array and position == len(names) - 1:
                self._array_counts[key] = self._array_counts.get(key, -1) + 1
                resolved.append(self._array_counts[key])
            elif key in self._array_counts:
                resolved.append(self._array_counts[key])
        return tuple(resolved)

    def _record(self, table: KeyPath, names: KeyPath, line: int) -> None:
        for end in range(1, len(names) + 1):
            self._lines.setdefault(table + names[:end], line)


def _skip_blank(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r":
        pos += 1
    return pos


def _skip_comment(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _read_key(text: str, pos: int) -> tuple[tuple[str, ...], int]:
    """Read a dotted key starting at ``pos``; return its parts and the position after it."""
    names: list[str] = []
    while True:
        pos = _skip_blank(text, pos)
        char = text[pos]
        if char == '"':
            end = _end_of_basic_string(text, pos + 1)
            names.append(tomllib.loads(f"k = {text[pos:end]}")["k"])
            pos = end
        elif char == "'":
            end = text.index("'", pos + 1)
            names.append(text[pos + 1 : end])
            pos = end + 1
        else:
            start = pos
            while pos < len(text) and text[pos] in _BARE_KEY_CHARS:
                pos += 1
            if pos == start:
                raise ValueError("expected a key")
            names.append(text[start:pos])
        pos = _skip_blank(text, pos)
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return tuple(names), pos


def _end_of_basic_string(text: str, pos: int) -> int:
    """Position just after the closing quote of a one-line basic string whose body starts at pos."""
    while text[pos] != '"':
        pos += 2 if text[pos] == "\\" else 1
    return pos + 1


def _skip_value(text: str, pos: int, line: int) -> tuple[int, int]:
    """Skip one value (which may span lines); return the position of the end of its line and the line."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if char == "\n":
            if depth == 0:
                return pos, line
            pos, line = pos + 1, line + 1
        elif char == "#":
            pos = _skip_comment(text, pos)
        elif char in "[{":
            depth, pos = depth + 1, pos + 1
        elif char in "]}":
            depth, pos = depth - 1, pos + 1
        elif text.startswith('"""', pos) or text.startswith("'''", pos):
            pos, line = _skip_multiline_string(text, pos, line)
        elif char == '"':
            pos = _end_of_basic_string(text, pos + 1)
        elif char == "'":
            pos = text.index("'", pos + 1) + 1
        else:
            pos += 1
    return pos, line


def _skip_multiline_string(text: str, pos: int, line: int) -> tuple[int, int]:
    quote = text[pos] * 3
    pos += 3
    while not text.startswith(quote, pos):
        if text[pos] == "\\" and quote == '"""':
            line += text[pos + 1] == "\n"
            pos += 2
            continue
        line += text[pos] == "\n"
        pos += 1
    pos += 3
    # A closing delimiter may be followed by up to two more quotes that belong to the string.
    while pos < len(text) and text[pos] == quote[0]:
        pos += 1
    return pos, line
