"""``DecodeOptions``: the one definition of the generation arguments every decoding path takes.

``decoders.generate``, plain and shielded decoding, and the batch preparation all take the same
eleven settings (length, sampling, seeds, chat rendering, prefill, cache size, mesh, chunking,
streaming). They are fields of one frozen value, so a setting is added, documented and defaulted
in one place; the entry points accept either an ``options=`` value or the same names as keyword
arguments (:meth:`DecodeOptions.build`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from shield.errors import DecoderError

__all__ = ["DecodeOptions"]

#: ``stream(row, text)``: called with text of a row that can no longer be rolled back.
StreamFn = Callable[[int, str], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodeOptions:
    """How to decode a batch.

    Attributes:
        max_new_tokens: N, tokens generated after the prompt and the prefill.
        temperature: 0 for greedy decoding.
        top_p: nucleus mass (None: off).
        top_k: top-k cut (None: off).
        seed: one seed for every row, or one per prompt; draws are keyed by (seed, position,
            attempt), so a row's output never depends on the rest of the batch.
        chat: render each prompt as a user turn of the model's chat template.
        prefill: text forced at the start of every response (a prefilling attack); it is part of
            the response and the shield may roll it back.
        max_slots: cache slots per row (default: just enough, rounded up to 64).
        mesh: a device mesh to shard the batch over; True for all local devices.
        chunk: the most device steps between host synchronisations.
        stream: called as ``stream(row, text)`` with text that can no longer be rolled back.

    Example:
        >>> options = DecodeOptions(max_new_tokens=16, temperature=0)
        >>> DecodeOptions.build(options, seed=3).seed
        3
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float | None = 0.9
    top_k: int | None = None
    seed: int | tuple[int, ...] = 0
    chat: bool = False
    prefill: str | None = None
    max_slots: int | None = None
    mesh: Any = None
    chunk: int = 32
    stream: StreamFn | None = None

    def __post_init__(self) -> None:
        # A list of seeds is accepted for convenience and frozen, so the value stays hashable.
        if not isinstance(self.seed, int):
            object.__setattr__(self, "seed", tuple(int(s) for s in self.seed))

    def seeds(self, rows: int) -> list[int]:
        """One seed per row.

        Args:
            rows: the number of prompts.

        Returns:
            ``rows`` seeds.

        Raises:
            DecoderError: one seed per prompt was given, but not ``rows`` of them.
        """
        if isinstance(self.seed, int):
            return [self.seed] * rows
        if len(self.seed) != rows:
            raise DecoderError(
                f"generate: expected one seed per prompt ({rows}), received {len(self.seed)}."
            )
        return list(self.seed)

    @classmethod
    def build(cls, options: DecodeOptions | None = None, /, **fields: Any) -> DecodeOptions:
        """``options`` with ``fields`` replaced, or new options from ``fields`` alone.

        Args:
            options: a base value, or None.
            **fields: field names of :class:`DecodeOptions` and their values.

        Returns:
            The options.

        Raises:
            DecoderError: a name is not a field, or ``max_new_tokens`` is missing.
        """
        if options is not None and not fields:  # already built by the caller: nothing to redo
            return options
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise DecoderError(
                f"generate: unknown decoding option(s) {', '.join(unknown)}; expected any of "
                f"{', '.join(names)} (see decoders.DecodeOptions)."
            )
        if options is not None:
            return dataclasses.replace(options, **fields)
        if "max_new_tokens" not in fields:
            raise DecoderError(
                "generate: max_new_tokens is required; pass max_new_tokens=N or "
                "options=DecodeOptions(max_new_tokens=N, ...)."
            )
        return cls(**fields)
