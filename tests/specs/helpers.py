"""Helpers for the spec-language tests: the spec header and located-error assertions."""

from __future__ import annotations

from shield.errors import SpecError


def header(name: str = "demo") -> str:
    """The ``[spec]`` table every test spec starts with (two lines)."""
    return f'[spec]\nname = "{name}"\n'


def assert_located(
    error: SpecError,
    *,
    kind: type[SpecError],
    file: str,
    line: int | None,
    rule_id: str | None,
    says: tuple[str, ...] = (),
) -> None:
    """Check the class, location and message of a spec error, and its one-line rendering."""
    assert type(error) is kind, f"expected {kind.__name__}, got {type(error).__name__}: {error}"
    assert (error.file, error.line, error.rule_id) == (file, line, rule_id), str(error)
    for fragment in says:
        assert fragment in error.message, f"{fragment!r} not in {error.message!r}"
    prefix = file if line is None else f"{file}:{line}"
    if rule_id is not None:
        prefix += f": rule {rule_id}"
    assert str(error) == f"{prefix}: {error.message}"
    assert "\n" not in str(error)
