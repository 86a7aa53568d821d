"""Exports of a compiled spec for other engines: an llguidance Lark grammar (``export_lark``).

A grammar engine enforces a spec by masking tokens only: no rollback, no classifier. See
:mod:`shield.export.lark` for what the grammar carries and how.

Example::

    import shield, specs
    from shield.export import export_lark

    exported = export_lark(shield.compile(specs.load_library("pii")))
    exported.grammar       # Lark text for llguidance (vLLM, SGLang, llama.cpp)
    exported.not_carried   # rules the grammar cannot enforce, with reasons
"""

from shield.export.lark import LarkExport, NotCarried, export_lark

__all__ = ["LarkExport", "NotCarried", "export_lark"]
