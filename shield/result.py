"""What a shielded generation returns: the same fields as ``shield generate --json``.

Both decoders (the JAX decoder in ``decoders`` and the pure-Python reference in
``shield.reference``) return these values, so callers and tests treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from shield.errors import DecoderError

__all__ = [
    "FINISH_REASONS",
    "REWINDING_STRATEGIES",
    "SHIELDED_STRATEGIES",
    "STRATEGIES",
    "Event",
    "FinishReason",
    "GenerationResult",
    "GenerationStats",
    "TextStream",
]

FinishReason = Literal["eos", "length", "budget", "refused"]
#: Why a generation ended, as ``finish_reason`` reports it.
FINISH_REASONS: tuple[FinishReason, ...] = ("eos", "length", "budget", "refused")
#: The decoding strategies of design §1: the baselines first, then ours. Evaluations run and
#: report them in this order; every other list of strategies is derived from this one.
STRATEGIES: tuple[str, ...] = ("none", "mask", "reset", "backtrack")
#: The strategies that run the shield during decoding (``none`` only reports afterwards).
SHIELDED_STRATEGIES: tuple[str, ...] = ("mask", "reset", "backtrack")
#: The shielded strategies that rewind on a violation (``mask`` only masks, and reports).
REWINDING_STRATEGIES: tuple[str, ...] = ("reset", "backtrack")


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something the shield did or saw during a generation.

    Attributes:
        kind: ``"rollback"`` (a rewind), ``"violation"`` (reported only, strategies ``none`` and
            ``mask``), or ``"exhausted"`` (budget or retries spent).
        rule: the id of the rule that caused it.
        from_token: response position where the failed continuation ended (its length).
        to_token: response position the row went back to (for ``violation``: where the match
            started).
        detail: a human-readable reason, for ``exhausted``.
    """

    kind: str
    rule: str
    from_token: int
    to_token: int
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this event (``detail`` only when set)."""
        data: dict[str, Any] = {
            "kind": self.kind,
            "rule": self.rule,
            "from_token": self.from_token,
            "to_token": self.to_token,
        }
        if self.detail:
            data["detail"] = self.detail
        return data


@dataclass(frozen=True, kw_only=True)
class GenerationStats:
    """Counters of one generation.

    Attributes:
        generated_tokens: model steps for this row (kept plus discarded tokens, forced prefill
            tokens included).
        kept_tokens: tokens in the returned response.
        discarded_tokens: tokens removed by rewinds, rejected tokens included.
        rollbacks: number of rewinds.
        max_rollback_tokens: the most tokens one rewind discarded.
        wall_seconds: wall time of the whole call this row was part of.
    """

    generated_tokens: int
    kept_tokens: int
    discarded_tokens: int
    rollbacks: int
    max_rollback_tokens: int
    wall_seconds: float


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    """One generated response.

    Attributes:
        text: the returned response (a forced prefill included, the prompt excluded).
        finish_reason: ``eos``, ``length``, ``budget`` (stopped at the last accepted state) or
            ``refused`` (the spec's refusal text).
        tokens: the token ids of ``text``.
        stats: the counters.
        events: rollbacks and reported violations, in order.
    """

    text: str
    finish_reason: FinishReason
    tokens: tuple[int, ...]
    stats: GenerationStats
    events: tuple[Event, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The object printed by ``shield generate --json``."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "tokens": list(self.tokens),
            "stats": asdict(self.stats),
            "events": [event.to_json() for event in self.events],
        }


class TextStream:
    """Releases a growing text piece by piece to ``emit``, never taking anything back.

    Decoders call :meth:`update` with the text that can no longer change (a prefix of the final
    text) and :meth:`close` with the final text. A trailing partial UTF-8 character (shown as
    U+FFFD) is held back until it is complete.

    Args:
        emit: called with each new piece of text.
    """

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self.sent = ""

    def update(self, final_prefix: str) -> None:
        """Release what ``final_prefix`` adds to the text sent so far."""
        text = final_prefix.rstrip("\ufffd")
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self._emit(text[len(self.sent) :])
            self.sent = text

    def close(self, final_text: str) -> None:
        """Release the rest of the final text.

        Raises:
            DecoderError: the final text does not extend what was released (a released piece
                would have been taken back; the decoders' release rule makes this impossible).
        """
        if not final_text.startswith(self.sent):
            raise DecoderError(
                f"stream: expected the final text to extend the {len(self.sent)} released characters; "
                "it does not (released text was taken back)"
            )
        if len(final_text) > len(self.sent):
            self._emit(final_text[len(self.sent) :])
        self.sent = final_text
