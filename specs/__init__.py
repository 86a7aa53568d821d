"""specs: the declarative safety-spec language (TOML), its frozen values and its lowering to shield rules.

A spec file names the spec (``[spec]``), sets the backtracking bounds (``[backtrack]``) and lists
rules (``[[rule]]``); :func:`load` and :func:`parse` turn it into a frozen :class:`Spec` whose rules
are :mod:`shield.rules` values, ready for ``shield.compile``. Every malformed spec raises a
:class:`~shield.errors.SpecError` that names the file, line and rule. The language is documented in
``docs/spec-language.md``.

Example:
    >>> import specs
    >>> spec = specs.parse('[spec]\\nname = "demo"\\n[[rule]]\\nid = "x"\\nforbid.literal = "foo"\\n')
    >>> spec.rules[0].literal
    'foo'
"""

from specs.compiling import locate, shield_for
from specs.library import library_names, library_path, load_library, resolve_spec_path
from specs.loader import load, parse
from specs.render import render
from specs.spec import Spec

__all__ = [
    "Spec",
    "library_names",
    "library_path",
    "load",
    "load_library",
    "locate",
    "parse",
    "render",
    "resolve_spec_path",
    "shield_for",
]
