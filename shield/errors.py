"""The exceptions of shield, specs and decoders: one shallow hierarchy.

Every message says what was expected, what was received and how to fix it. Spec errors also
carry the file, line and rule id they concern, and render as ``FILE:LINE: rule ID: message``.
"""

from __future__ import annotations

__all__ = [
    "BudgetError",
    "ClassifierError",
    "CompileError",
    "DecoderError",
    "EvaluationError",
    "ModelLoadError",
    "ShieldError",
    "SpecError",
    "SpecSyntaxError",
    "UnsupportedSpecError",
]


class ShieldError(Exception):
    """Base class of every error this project raises on purpose."""


class SpecError(ShieldError):
    """A spec is invalid; located by file, line and rule id where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        rule_id: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.rule_id = rule_id
        super().__init__(self.render())

    def render(self) -> str:
        """The one-line form ``FILE:LINE: rule ID: message`` (parts that are unknown are left out)."""
        parts = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.rule_id is not None:
            parts.append(f"rule {self.rule_id}")
        parts.append(self.message)
        return ": ".join(parts)


class SpecSyntaxError(SpecError):
    """The spec text is malformed: bad TOML, unknown key, wrong type, invalid regex syntax."""


class UnsupportedSpecError(SpecError):
    """The spec is well formed but asks for something we refuse to approximate (e.g. look-around)."""


class CompileError(ShieldError):
    """Compiling a rule would exceed a stated limit (states, bytes, time); the message gives both numbers."""


class BudgetError(ShieldError):
    """A stated bound (rollback, discard budget, cache size) would be exceeded; names both numbers."""


class ClassifierError(ShieldError):
    """A classifier scorer failed or answered out of contract; generation stops fail-closed."""


class DecoderError(ShieldError):
    """A decoder was called with inputs outside its contract (shapes, lengths, settings)."""


class EvaluationError(ShieldError):
    """An evaluation's input (prompt file, options, output directory) is unusable."""


class ModelLoadError(ShieldError):
    """A model or tokenizer file is missing, corrupt or of an unsupported kind; names the file."""
