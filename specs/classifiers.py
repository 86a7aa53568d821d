"""Classifier names a spec may use, checked when the spec is loaded.

A classifier rule names its scorer either by a built-in name (``profanity-check``, the linear
TF-IDF model of the ``alt-profanity-check`` package, scored from its arrays shipped in
``shield/data/``) or as ``"module:function"``, a function that
maps a list of texts to a list of probabilities in [0, 1]. The loader resolves the name at load
time, so a spec whose scorer is missing fails when it is loaded, not halfway through a generation.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from shield.classifiers import BUILTIN_SCORERS, PROFANITY_ARRAYS, resolve_scorer
from shield.errors import ClassifierError, SpecError
from shield.rules import PROFANITY_CHECK, SCORER_REFERENCE
from specs.validation import Where, suggest

__all__ = ["check_scorer"]

#: Built-in scorer name → the data file it scores from (shipped with the package; no scorer
#: needs a package beyond shield's own dependencies at run time).
_REQUIREMENTS: Mapping[str, Path] = MappingProxyType({PROFANITY_CHECK: PROFANITY_ARRAYS})


def check_scorer(name: str, where: Where) -> None:
    """Check that the scorer ``name`` exists: a built-in, or an importable ``module:function``.

    Args:
        name: the ``classifier.name`` value.
        where: the place of the name, for located errors.

    Raises:
        SpecError: the name is neither a built-in nor ``module:function``, the module cannot be
            imported, or it has no callable of that name.

    Example:
        >>> from specs.lines import LineIndex
        >>> check_scorer("math:fsum", Where("<string>", LineIndex("")))  # any callable resolves
    """
    if name in BUILTIN_SCORERS:
        if name in _REQUIREMENTS:
            required = _REQUIREMENTS[name]
            if not required.is_file():
                where.fail(
                    f"classifier {name!r} scores from {required}, which is missing; reinstall"
                    " shield, or regenerate it with scripts/extract_profanity_check.py",
                    SpecError,
                )
        return
    reference = SCORER_REFERENCE.fullmatch(name)
    if reference is None:
        builtins = ", ".join(repr(known) for known in BUILTIN_SCORERS)
        where.fail(
            f"unknown classifier {name!r}{suggest(name, BUILTIN_SCORERS)}; use a built-in"
            f" ({builtins}) or 'module:function' naming a function that scores a list of texts",
            SpecError,
        )
    module_name, function_name = reference["module"], reference["function"]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        where.fail(
            f"classifier {name!r}: no module {error.name or module_name!r} can be imported;"
            " check the name and that it is installed (or on PYTHONPATH)",
            SpecError,
        )
    except Exception as error:  # importing runs the module's code; any failure is the spec's
        where.fail(
            f"classifier {name!r}: importing {module_name!r} failed with"
            f" {type(error).__name__}: {error}",
            SpecError,
        )
    function = getattr(module, function_name, None)
    if not callable(function):
        public = [attr for attr in dir(module) if not attr.startswith("_")]
        what = "no attribute" if function is None else "an attribute that is not callable:"
        where.fail(
            f"classifier {name!r}: module {module_name!r} has {what} {function_name!r}"
            f"{suggest(function_name, public)}",
            SpecError,
        )
    try:  # the run-time resolver must agree with this check
        resolve_scorer(name)
    except ClassifierError as error:
        where.fail(str(error), SpecError)
