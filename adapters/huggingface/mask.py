"""The ``mask`` strategy as a transformers ``LogitsProcessor``: ``model.generate(logits_processor=[...])``.

Each call removes, for every row, the tokens that would make an automaton rule fire from that
row's shield state (and EOS when the END check would fail there: a whole-word match that only
the end of the text confirms). It is the reference machine's ``mask`` action
(:meth:`shield.reference.Machine.action`): special tokens other than EOS are never produced, and
when every token would violate, the row falls back to its unmasked distribution (``mask`` cannot
repair a dead end; the strategies that rewind can).

State is incremental: a row's state is the state of its parent row at the previous call, stepped
by the one new token (a walk over that token's bytes), so a step costs the same at token 10 and
token 10,000. The parent is found by the response prefix, which makes the processor correct under
beam search, where ``generate`` reorders rows between calls: when the prefixes are unchanged the
rows are their own parents (one tensor comparison); otherwise each row finds the previous row
with the same prefix (one ``[B, B, n]`` comparison). Only generated tokens are judged: the prompt
(left padding included) is context, as in ``decoders.generate``.

Masks are cached per shield state (at most :data:`MASK_CACHE_STATES`), as 0/-inf rows in the
scores' dtype and device, added to the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessor

from shield.errors import DecoderError
from shield.judge import Judge
from shield.lifting import MonitorState

__all__ = ["MASK_CACHE_STATES", "ShieldLogitsProcessor"]

#: The most shield states whose masks are kept (the cache is cleared when full).
MASK_CACHE_STATES = 4096


@dataclass(frozen=True)
class _Row:
    """One row's shield state after its response so far; ``ended`` once it produced EOS."""

    state: MonitorState
    ended: bool = False


class ShieldLogitsProcessor(LogitsProcessor):
    """Mask every token that would violate a spec's automaton rules (strategy ``mask``).

    Args:
        judge: the compiled shield bound to the model's tokenizer
            (:func:`~adapters.huggingface.judge_for`).
        eos_token_id: the end-of-sequence id(s); EOS is masked where the text may not end.

    One processor follows one ``generate`` call; a call whose rows continue none of the previous
    rows starts a new generation (or call :meth:`reset`).

    Example:
        >>> processor = ShieldLogitsProcessor(judge, eos_token_id=tokenizer.eos_token_id)  # doctest: +SKIP
        >>> model.generate(**inputs, logits_processor=[processor], max_new_tokens=32)  # doctest: +SKIP
    """

    def __init__(self, judge: Judge, eos_token_id: int | Sequence[int]) -> None:
        self.judge = judge
        self.eos_ids = (
            (int(eos_token_id),)
            if isinstance(eos_token_id, int)
            else tuple(int(t) for t in eos_token_id)
        )
        if not self.eos_ids:
            raise DecoderError("ShieldLogitsProcessor: expected at least one eos_token_id.")
        self._never = judge.never(self.eos_ids)
        self._masks: dict[tuple[MonitorState, str, int], torch.Tensor] = {}  # biases by state
        self.reset()

    def reset(self) -> None:
        """Forget the rows: the next call starts a new generation."""
        self._prompt_width = -1
        self._previous: torch.Tensor | None = None  # [B, n] the responses at the last call
        self._rows: list[_Row] = []

    def row_states(self) -> list[MonitorState]:
        """Each row's shield state after its response so far (the order of the last call)."""
        return [row.state for row in self._rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask ``scores`` ``[B, V]`` for the rows ``input_ids`` ``[B, L]``.

        Raises:
            DecoderError: some rows continue the previous call's rows and others do not.
        """
        batch, width = input_ids.shape
        if not (
            self._continues(batch, width) and self._advance(input_ids[:, self._prompt_width :])
        ):
            self._start(batch, width)
        # Adding a cached 0/-inf row is several times faster than masked_fill on the CPU.
        biases = [self._bias(row, scores) for row in self._rows]
        return scores + torch.stack(biases)  # type: ignore[return-value]

    def _continues(self, batch: int, width: int) -> bool:
        previous = self._previous
        return (
            previous is not None
            and previous.shape[0] == batch
            and width == self._prompt_width + previous.shape[1] + 1
        )

    def _start(self, batch: int, width: int) -> None:
        self._prompt_width = width
        self._previous = torch.zeros((batch, 0), dtype=torch.long)
        self._rows = [_Row(self.judge.initial())] * batch

    def _advance(self, responses: torch.Tensor) -> bool:
        """Step every row by its new token from its parent row's state.

        Returns:
            False when no row continues a previous row (a new generation), else True.
        """
        previous = self._previous
        assert previous is not None
        responses = responses.to("cpu")
        prefixes = responses[:, :-1]
        if torch.equal(prefixes, previous):
            parents: list[int] | None = list(range(responses.shape[0]))
        else:
            parents = _parents(prefixes, previous)
        if parents is None:
            return False
        tables = self.judge.tables
        rows = []
        for parent, token in zip(parents, responses[:, -1].tolist(), strict=True):
            before = self._rows[parent]
            if before.ended or token in self.eos_ids:
                rows.append(_Row(before.state, ended=True))
            else:
                after = tables.step_token(np.asarray(before.state, dtype=np.int32), token)
                rows.append(_Row(tuple(after.tolist())))
        self._rows = rows
        self._previous = responses.clone()
        return True

    def _bias(self, row: _Row, scores: torch.Tensor) -> torch.Tensor:
        """``[V]`` in the scores' dtype: -inf where the row may not go, else 0 (all 0 once ended)."""
        size = scores.shape[-1]
        key = (row.state if not row.ended else (), f"{scores.device}/{scores.dtype}", size)
        bias = self._masks.get(key)
        if bias is None:
            blocked = torch.from_numpy(self._blocked(row, size)).to(scores.device)
            zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
            bias = torch.where(blocked, float("-inf"), zero)
            if len(self._masks) >= MASK_CACHE_STATES:
                self._masks.clear()
            self._masks[key] = bias
        return bias

    def _blocked(self, row: _Row, size: int) -> np.ndarray:
        """bool ``[V]``: True where the row may not go (nothing for an ended row)."""
        vocab = len(self.judge.token_bytes)
        if size < vocab:
            raise DecoderError(
                f"ShieldLogitsProcessor: the scores have {size} columns, fewer than the tokenizer's "
                f"{vocab} tokens; bind the judge to this model's tokenizer."
            )
        if row.ended:
            return np.zeros(size, dtype=bool)
        violating = ~self.judge.allowed(row.state, self.eos_ids)
        blocked = self._never | violating
        if blocked.all():  # a dead end: mask cannot repair it; the machine's fallback
            blocked = self._never
        full = np.ones(size, dtype=bool)  # ids past the tokenizer's vocabulary: never
        full[:vocab] = blocked
        return full


def _parents(prefixes: torch.Tensor, previous: torch.Tensor) -> list[int] | None:
    """For every row, a previous row with the same response prefix (beam search reorders rows).

    Returns:
        The parent of every row, or None when no row continues any previous row.

    Raises:
        DecoderError: some rows continue previous rows and others do not.
    """
    same = (prefixes[:, None, :] == previous[None, :, :]).all(dim=-1)  # [B, B]
    found = same.any(dim=1)
    if not bool(found.any()):
        return None
    if not bool(found.all()):
        missing = int((~found).nonzero()[0, 0])
        raise DecoderError(
            f"ShieldLogitsProcessor: row {missing} continues none of the previous call's rows; "
            "use one processor per generate call, or call reset() between calls."
        )
    return [int(i) for i in same.int().argmax(dim=1).tolist()]
