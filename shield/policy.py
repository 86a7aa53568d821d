"""The backtracking policy: the stored, named bounds that every strategy obeys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shield.errors import SpecSyntaxError

__all__ = ["CHECKPOINTS", "BacktrackPolicy"]

CHECKPOINTS = ("token", "word", "sentence")


@dataclass(frozen=True, kw_only=True)
class BacktrackPolicy:
    """Bounds and fallbacks of backtracking decoding.

    Attributes:
        checkpoint: granularity of accepted states: ``token``, ``word`` or ``sentence``.
        max_rollback_tokens: R; no rewind discards more tokens than this.
        max_retries: attempts from one checkpoint before falling back to an earlier one.
        max_discarded_tokens: budget of discarded tokens per sequence; guarantees termination.
        on_exhausted: ``stop`` at the last accepted state, or ``refuse`` with ``refusal``.
        refusal: the text returned by ``refuse``; it must itself pass the spec.

    Raises:
        SpecSyntaxError: a bound is not a positive integer or a choice is unknown.
    """

    checkpoint: Literal["token", "word", "sentence"] = "word"
    max_rollback_tokens: int = 48
    max_retries: int = 4
    max_discarded_tokens: int = 256
    on_exhausted: Literal["stop", "refuse"] = "stop"
    refusal: str = "I'd rather not continue that."

    def __post_init__(self) -> None:
        if self.checkpoint not in CHECKPOINTS:
            raise SpecSyntaxError(
                f"checkpoint must be one of {', '.join(CHECKPOINTS)}; got {self.checkpoint!r}"
            )
        for name in ("max_rollback_tokens", "max_retries", "max_discarded_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecSyntaxError(f"{name} must be a positive integer; got {value!r}")
        if self.on_exhausted not in ("stop", "refuse"):
            raise SpecSyntaxError(
                f"on_exhausted must be 'stop' or 'refuse'; got {self.on_exhausted!r}"
            )
