"""Word lists for ``words`` patterns: inline arrays, text files, and resources of installed packages.

A word file has one word (or phrase) per line, in UTF-8. Surrounding whitespace is stripped; blank
lines and lines whose first non-blank character is ``#`` are skipped; duplicates are kept once, in
first-seen order. A list that ends up empty is an error: a rule that forbids nothing would look
like protection without being any.
"""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from shield.errors import SpecError
from specs.validation import Where, describe, suggest

__all__ = ["read_word_file", "read_words", "word_lines"]

_SOURCE_KEYS = ("file", "package", "resource")


def word_lines(text: str) -> tuple[str, ...]:
    """The words of a word-file text (stripped; blank and ``#`` lines skipped; duplicates dropped).

    Example:
        >>> word_lines("# banned\\nfoo\\n\\n  bar \\nfoo\\n")
        ('foo', 'bar')
    """
    words = (line.strip() for line in text.splitlines())
    return _unique(word for word in words if word and not word.startswith("#"))


def read_words(value: Any, where: Where, base_dir: Path) -> tuple[str, ...]:
    """Read the value of a ``words`` key: an inline array, ``{file}`` or ``{package, resource}``,
    or an array of these (tables and words together: the union of their words, in order).

    Args:
        value: the parsed TOML value.
        where: the place of the ``words`` key, for located errors.
        base_dir: the folder that relative word-file paths are resolved against.

    Returns:
        The words, non-empty, without duplicates, in order.

    Raises:
        SpecSyntaxError: the value has the wrong shape, a word is not a non-empty string, or the
            resulting list is empty.
        SpecError: the file or package resource cannot be found or read.
    """
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        # Several sources in one list (e.g. a package's list and a file of additions): each
        # table is a source, each string a word; together, duplicates dropped.
        parts: list[str] = []
        for position, item in enumerate(value):
            if isinstance(item, dict):
                parts += read_words(item, where.child(position), base_dir)
            elif isinstance(item, str) and item.strip():
                parts.append(item)
            else:
                where.fail(
                    f"words[{position}] must be a word or a source table ({{ file = ... }} or"
                    f" {{ package = ..., resource = ... }}); got {describe(item)}"
                )
        words = _unique(parts)
    elif isinstance(value, list):
        words = _inline_words(value, where)
    elif isinstance(value, dict):
        table = where.table(value, _SOURCE_KEYS)
        if "file" in table and ("package" in table or "resource" in table):
            where.fail(
                "words takes either { file = ... } or { package = ..., resource = ... }, not both"
            )
        if "file" in table:
            words = read_word_file(where.child("file").string(table["file"]), where, base_dir)
        elif "package" in table and "resource" in table:
            package = where.child("package").string(table["package"])
            resource = where.child("resource").string(table["resource"])
            words = _read_resource(package, resource, where)
        else:
            missing = "resource" if "package" in table else "package"
            where.fail(
                f"words = {{ package = ..., resource = ... }} needs both keys; {missing!r} is missing"
                ' (e.g. { package = "better_profanity", resource = "profanity_wordlist.txt" })'
            )
    else:
        where.fail(
            f'words must be an array of strings, {{ file = "path.txt" }} or'
            f' {{ package = "...", resource = "..." }}; got {describe(value)}'
        )
    if not words:
        where.fail(
            "the word list is empty; add at least one word (blank and '#' lines are skipped)"
        )
    return words


def read_word_file(name: str, where: Where, base_dir: Path) -> tuple[str, ...]:
    """The words of file ``name`` (relative to ``base_dir`` unless absolute)."""
    path = Path(name) if Path(name).is_absolute() else base_dir / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        where.fail(
            f"word file {name!r} not found (looked for {path}); paths are relative to the folder"
            " of the spec file",
            SpecError,
        )
    except OSError as error:
        where.fail(f"cannot read word file {name!r} ({path}): {error.strerror or error}", SpecError)
    return _decode(data, f"word file {name!r}", where)


def _inline_words(value: list[Any], where: Where) -> tuple[str, ...]:
    for position, word in enumerate(value):
        if not isinstance(word, str):
            where.fail(f"words[{position}] must be a string; got {describe(word)}")
        if not word.strip():
            where.fail(
                f"words[{position}] is blank ({word!r}); every word needs a visible character"
            )
    return _unique(value)


def _read_resource(package: str, resource: str, where: Where) -> tuple[str, ...]:
    parts = PurePosixPath(resource).parts
    if not parts or PurePosixPath(resource).is_absolute() or ".." in parts:
        where.child("resource").fail(
            f"resource must be a relative path inside the package, without '..'; got {resource!r}"
        )
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        hint = package.replace("-", "_")
        fix = f"; write the import name {hint!r}" if hint != package else "; install it with pip"
        where.child("package").fail(f"no installed package {package!r}{fix}", SpecError)
    except Exception as error:  # importing a package runs its code; any failure is the spec's
        where.child("package").fail(
            f"cannot import package {package!r}: {type(error).__name__}: {error}", SpecError
        )
    target = root.joinpath(*parts)
    try:
        data = target.read_bytes()
    except (OSError, ValueError):
        available = _text_resources(root)
        where.child("resource").fail(
            f"package {package!r} has no resource {resource!r}{suggest(resource, available)}"
            f" (its top-level files: {', '.join(available) or 'none'})",
            SpecError,
        )
    return _decode(data, f"resource {resource!r} of package {package!r}", where)


def _text_resources(root: Any) -> list[str]:
    try:
        return sorted(
            entry.name
            for entry in root.iterdir()
            if entry.is_file() and not entry.name.endswith((".py", ".pyc"))
        )
    except OSError:
        return []


def _decode(data: bytes, what: str, where: Where) -> tuple[str, ...]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        where.fail(
            f"{what} is not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8",
            SpecError,
        )
    return word_lines(text)


def _unique(words: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(words))
