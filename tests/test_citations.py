"""Every test the proofs and the README cite exists, so a claim never rests on a missing test.

A citation is a path under ``tests/`` or ``proofs/`` in backticks, optionally followed by
``::Name`` (a test function or class of that file, or ``Class::method``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    [ROOT / "README.md", *(ROOT / "proofs").glob("*.md"), *(ROOT / "docs").glob("*.md")]
)
CITATION = re.compile(r"`((?:tests|proofs|bench)/[\w/.-]+\.py)((?:::\w+)*)`")


def _names(path: Path) -> set[str]:
    """``name`` and ``Class::method`` for every function and class defined in ``path``."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return names


def _citations() -> list[tuple[str, str, str]]:
    found = []
    for document in DOCUMENTS:
        for match in CITATION.finditer(document.read_text(encoding="utf-8")):
            found.append((document.relative_to(ROOT).as_posix(), match[1], match[2].lstrip(":")))
    return found


CITATIONS = _citations()


def test_documents_cite_tests() -> None:
    assert len(CITATIONS) >= 20, "the proofs and the README cite their tests"


@pytest.mark.parametrize(("document", "path", "name"), CITATIONS)
def test_cited_test_exists(document: str, path: str, name: str) -> None:
    cited = ROOT / path
    assert cited.is_file(), f"{document} cites {path}, which does not exist"
    if name:
        assert name in _names(cited), f"{document} cites {path}::{name}, which is not defined there"
