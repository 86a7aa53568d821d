"""The ready-made specs shipped in ``specs/library/``: ``toxicity``, ``pii`` and ``secrets``.

Each is an ordinary TOML spec file installed with the package; it can be loaded by name, copied
and edited, or named on the command line (``shield check toxicity``).
"""

from __future__ import annotations

from pathlib import Path

from shield.errors import SpecError
from specs.loader import load
from specs.spec import Spec
from specs.validation import suggest

__all__ = ["library_names", "library_path", "load_library", "resolve_spec_path"]

_LIBRARY = Path(__file__).resolve().parent / "library"


def library_names() -> tuple[str, ...]:
    """The names of the library specs, sorted (file names without ``.toml``).

    Example:
        >>> "secrets" in library_names()
        True
    """
    return tuple(sorted(path.stem for path in _LIBRARY.glob("*.toml")))


def library_path(name: str) -> Path:
    """The file of library spec ``name``.

    Args:
        name: a library spec name such as ``"pii"`` (``"pii.toml"`` is accepted too).

    Returns:
        The absolute path of the spec file.

    Raises:
        SpecError: there is no library spec of that name; the message lists the names.

    Example:
        >>> library_path("pii").name
        'pii.toml'
    """
    stem = name.removesuffix(".toml")
    names = library_names()
    if stem not in names:
        raise SpecError(
            f"no library spec named {name!r}{suggest(stem, names)}"
            f" (library specs: {', '.join(names)}); or give the path of a .toml file"
        )
    return _LIBRARY / f"{stem}.toml"


def load_library(name: str) -> Spec:
    """Load library spec ``name`` (see :func:`library_path` and :func:`specs.load`).

    Example:
        >>> load_library("secrets").name  # doctest: +SKIP
        'secrets'
    """
    return load(library_path(name))


def resolve_spec_path(argument: str) -> Path:
    """What a command-line ``SPEC`` argument names: an existing file, else a library spec.

    Args:
        argument: a path to a ``.toml`` file, or the name of a library spec.

    Returns:
        The path to load.

    Raises:
        SpecError: neither a file nor a library spec has that name.
    """
    path = Path(argument)
    if path.exists() or path.suffix == ".toml" or "/" in argument or "\\" in argument:
        return path
    if argument in library_names():
        return library_path(argument)
    raise SpecError(
        f"spec file not found: {argument!r}{suggest(argument, library_names())}; give the path"
        f" of a .toml file or a library spec name ({', '.join(library_names())})",
        file=argument,
    )
