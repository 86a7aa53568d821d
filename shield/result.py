"""What a shielded generation returns: the same fields as ``shield generate --json``.

Both decoders (the JAX decoder in ``decoders`` and the pure-Python reference in
``shield.reference``) return these values, so callers and tests treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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

    Every token a row produced (``generated_tokens`` sampled by the model, plus the forced
    prefill's tokens) is exactly one of: kept in the response, discarded, or the EOS step that
    ended the response. So, for every result that is not a refusal,
    ``generated_tokens + len(prefill) == kept_tokens + discarded_tokens + end_tokens``; a refusal
    keeps none of them (its tokens are the refusal text's), and
    ``generated_tokens + len(prefill) == discarded_tokens + end_tokens``.

    Attributes:
        generated_tokens: model steps for this row (sampled tokens, kept or not, the EOS step
            included; forced prefill tokens are not model steps).
        kept_tokens: tokens in the returned response.
        discarded_tokens: produced tokens that are not in the response: removed by rewinds
            (rejected tokens included), cut by a stop string, or left out by a stop or refusal.
            Positive only when text was rolled back or cut.
        end_tokens: 1 when the response ended with the model's EOS token (a model step that
            adds no text), else 0.
        rollbacks: number of rewinds.
        max_rollback_tokens: the most tokens one rewind discarded.
        wall_seconds: wall time of the whole call this row was part of.
        speculative_tokens: model steps taken past a classifier window whose verdict was still
            being computed off the critical path, and thrown away when it came back unsafe
            (``decoders.verdict_queue``). They are not in ``generated_tokens``, which counts the
            steps of the synchronous path, the same in both; how many there are depends on
            timing, so they take no part in comparing two stats.
    """

    generated_tokens: int
    kept_tokens: int
    discarded_tokens: int
    end_tokens: int
    rollbacks: int
    max_rollback_tokens: int
    wall_seconds: float
    speculative_tokens: int = field(default=0, compare=False)

    @classmethod
    def count(
        cls,
        *,
        generated: int,
        forced: int,
        kept: int,
        ended_by_eos: bool,
        refused: bool,
        rollbacks: int,
        max_rollback: int,
        wall_seconds: float,
        speculative: int = 0,
    ) -> GenerationStats:
        """The counters of a finished row from what its decoder counted (the identity above).

        Args:
            generated: model steps. forced: prefill tokens read. kept: tokens returned.
            ended_by_eos: the last model step produced the EOS token that ended the response.
            refused: the response is the refusal text (none of the produced tokens is kept).
            rollbacks: rewinds. max_rollback: the most tokens one rewind discarded.
            wall_seconds: the call's wall time.
            speculative: model steps thrown away by late classifier verdicts (not in
                ``generated``).

        Returns:
            The stats.

        Raises:
            DecoderError: the counts contradict each other (more kept than produced).
        """
        end = 1 if ended_by_eos else 0
        discarded = generated + forced - end - (0 if refused else kept)
        if discarded < 0:
            raise DecoderError(
                f"stats: expected generated ({generated}) + forced ({forced}) >= kept ({kept}) + "
                f"end ({end}); the decoder's counters disagree"
            )
        return cls(
            generated_tokens=generated,
            kept_tokens=kept,
            discarded_tokens=discarded,
            end_tokens=end,
            rollbacks=rollbacks,
            max_rollback_tokens=max_rollback,
            wall_seconds=wall_seconds,
            speculative_tokens=speculative,
        )


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
