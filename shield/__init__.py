"""shield: declarative safety specs compiled into byte-level automaton shields.

This package is the formal core (numpy and networkx only; it never imports JAX).
"""

from shield.errors import (
    BudgetError,
    ClassifierError,
    CompileError,
    DecoderError,
    ModelLoadError,
    ShieldError,
    SpecError,
    SpecSyntaxError,
    UnsupportedSpecError,
)

__all__ = [
    "BudgetError",
    "ClassifierError",
    "CompileError",
    "DecoderError",
    "ModelLoadError",
    "ShieldError",
    "SpecError",
    "SpecSyntaxError",
    "UnsupportedSpecError",
]
