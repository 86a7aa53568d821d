"""shield: declarative safety specs compiled into byte-level automaton shields.

This package is the formal core (numpy and networkx only; it never imports JAX).

Typical use::

    import shield
    guard = shield.compile(spec)           # spec: .name, .rules, .policy
    state = guard.init()
    state, verdict = guard.step(state, "some text".encode())
    tokens = guard.lift(tokenizer)          # numpy tables for a decoder
"""

from shield.analysis import SpecReport, analyze
from shield.automata.dfa import DFA
from shield.automata.limits import CompileLimits
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
from shield.lifting import TokenShield, byte_level_decode, token_bytes
from shield.monitor import Shield, ShieldState, Verdict, Violation
from shield.policy import BacktrackPolicy
from shield.rules import (
    NORMALIZATIONS,
    AfterRule,
    AtMostRule,
    ClassifierRule,
    LiteralRule,
    MatchOptions,
    MaxLengthRule,
    RegexRule,
    WordsRule,
)
from shield.spec_compiler import compile_spec as compile

__all__ = [
    "DFA",
    "NORMALIZATIONS",
    "AfterRule",
    "AtMostRule",
    "BacktrackPolicy",
    "BudgetError",
    "ClassifierError",
    "ClassifierRule",
    "CompileError",
    "CompileLimits",
    "DecoderError",
    "LiteralRule",
    "MatchOptions",
    "MaxLengthRule",
    "ModelLoadError",
    "RegexRule",
    "Shield",
    "ShieldError",
    "ShieldState",
    "SpecError",
    "SpecReport",
    "SpecSyntaxError",
    "TokenShield",
    "UnsupportedSpecError",
    "Verdict",
    "Violation",
    "WordsRule",
    "analyze",
    "byte_level_decode",
    "compile",
    "token_bytes",
]
