"""Shielded decoding behind ``model.generate(..., custom_generate=...)`` (transformers 5).

transformers 5 lets a callable replace the decoding loop: ``generate`` validates its arguments,
builds the generation config, expands rows for ``num_return_sequences``, prepares the attention
mask, the logits processors and the stopping criteria, then calls
``custom_generate(model, input_ids, logits_processor, stopping_criteria, generation_config,
**model_kwargs)``. Keyword arguments of ``generate`` that the callable names and transformers'
own loop does not (here ``prefill_ids``, ``stream`` and ``seed``) are passed to it.

:func:`shielded_decoding` returns such a callable. It reads what it implements from what
``generate`` prepared (greedy or sampling with temperature, top-k and top-p; the length; EOS and
padding) and refuses by name anything it does not implement (beam search, other logits
processors such as a repetition penalty, other stopping criteria such as stop strings), because
decoding silently without them would not be what the caller asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria

from adapters.huggingface.loop import generate
from shield.errors import DecoderError
from shield.judge import Judge
from shield.result import STRATEGIES, GenerationResult
from shield.sampling import SamplingConfig

__all__ = ["ShieldedGenerateOutput", "shielded_decoding"]

#: What ``generate`` may have prepared that the shielded loop implements itself (from the config).
_SAMPLING_PROCESSORS = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
_STOPPING = (MaxLengthCriteria, EosTokenCriteria)


@dataclass(frozen=True)
class ShieldedGenerateOutput:
    """What ``generate`` returns with ``return_dict_in_generate=True``.

    Attributes:
        sequences: ``[B, L + T]`` the prompts (as passed, padding kept) and the responses,
            right-padded with the pad token.
        results: one :class:`~shield.result.GenerationResult` per row (text, finish reason,
            stats, rollback events).
    """

    sequences: torch.Tensor
    results: tuple[GenerationResult, ...]


def shielded_decoding(
    judge: Judge, *, strategy: str = "backtrack", tokenizer: Any = None, repair_mask: bool = True
) -> Callable[..., Any]:
    """A ``custom_generate`` callable that decodes with the shield.

    Args:
        judge: the compiled shield bound to the model's tokenizer.
        strategy: ``backtrack``, ``reset``, ``mask`` or ``none``.
        tokenizer: the model's tokenizer (writes the refusal when the spec refuses on exhaustion).
        repair_mask: while regenerating a failed segment, mask tokens that would violate.

    Returns:
        ``decode(model, input_ids, logits_processor, stopping_criteria, generation_config, *,
        prefill_ids=(), stream=None, seed=0, **model_kwargs)``: a LongTensor of sequences, or a
        :class:`ShieldedGenerateOutput` with ``return_dict_in_generate=True``.

    Raises:
        DecoderError: an unknown strategy (when called: settings the loop does not implement).

    Example:
        >>> decode = shielded_decoding(judge, strategy="backtrack", tokenizer=tokenizer)  # doctest: +SKIP
        >>> out = model.generate(**inputs, custom_generate=decode, max_new_tokens=32, do_sample=False)  # doctest: +SKIP
    """
    if strategy not in STRATEGIES:
        raise DecoderError(
            f"expected strategy one of {', '.join(STRATEGIES)}, received {strategy!r}."
        )

    def decode(
        model: Any,
        input_ids: torch.LongTensor,
        logits_processor: Sequence[Any],
        stopping_criteria: Sequence[Any],
        generation_config: Any,
        prefill_ids: Sequence[int] = (),
        stream: Any = None,
        seed: int = 0,
        **model_kwargs: Any,
    ) -> Any:
        _refuse_unimplemented(generation_config, logits_processor, stopping_criteria)
        width = int(input_ids.shape[1])
        max_new = generation_config.max_new_tokens
        if max_new is None:
            max_new = int(generation_config.max_length) - width
        results = generate(
            model,
            input_ids,
            judge=judge,
            strategy=strategy,
            attention_mask=model_kwargs.get("attention_mask"),
            max_new_tokens=max(0, int(max_new)),
            sampling=sampling_of(generation_config),
            seed=seed,
            prefill_ids=prefill_ids,
            eos_token_id=generation_config.eos_token_id,
            tokenizer=tokenizer,
            stream=stream,
            repair_mask=repair_mask,
        )
        sequences = _sequences(input_ids, results, _pad_id(generation_config))
        if generation_config.return_dict_in_generate:
            return ShieldedGenerateOutput(sequences=sequences, results=tuple(results))
        return sequences

    return decode


def sampling_of(generation_config: Any) -> SamplingConfig:
    """The sampling rule of a transformers generation config (greedy unless ``do_sample``).

    Args:
        generation_config: a ``GenerationConfig``.

    Returns:
        The :class:`~shield.sampling.SamplingConfig`.
    """
    if not generation_config.do_sample:
        return SamplingConfig(temperature=0.0)
    top_k = generation_config.top_k
    top_p = generation_config.top_p
    return SamplingConfig(
        temperature=float(generation_config.temperature or 1.0),
        top_k=int(top_k) if top_k else None,
        top_p=float(top_p) if top_p is not None and top_p < 1.0 else None,
    )


def _refuse_unimplemented(
    generation_config: Any, processors: Sequence[Any], criteria: Sequence[Any]
) -> None:
    if getattr(generation_config, "num_beams", 1) not in (None, 1):
        raise DecoderError(
            f"shielded decoding samples one token at a time; received num_beams="
            f"{generation_config.num_beams}. For beam search, use ShieldLogitsProcessor (mask)."
        )
    for processor in processors:
        if not isinstance(processor, _SAMPLING_PROCESSORS):
            raise DecoderError(
                f"shielded decoding does not implement the logits processor "
                f"{type(processor).__name__} (it implements temperature, top-k and top-p itself); "
                "remove the setting or processor that adds it."
            )
    for criterion in criteria:
        if not isinstance(criterion, _STOPPING):
            raise DecoderError(
                f"shielded decoding does not implement the stopping criterion "
                f"{type(criterion).__name__} (it stops at EOS and max_new_tokens); remove it."
            )


def _pad_id(generation_config: Any) -> int:
    pad = generation_config.pad_token_id
    if pad is None:
        eos = generation_config.eos_token_id
        pad = eos if isinstance(eos, int) or eos is None else eos[0]
    if pad is None:
        raise DecoderError("expected a pad_token_id or eos_token_id in the generation config.")
    return int(pad)


def _sequences(
    input_ids: torch.Tensor, results: Sequence[GenerationResult], pad: int
) -> torch.Tensor:
    """``[B, L + T]``: each prompt row followed by its response, right-padded with ``pad``."""
    longest = max((len(r.tokens) for r in results), default=0)
    tail = torch.full((len(results), longest), pad, dtype=torch.long, device=input_ids.device)
    for b, result in enumerate(results):
        if result.tokens:
            tail[b, : len(result.tokens)] = torch.tensor(result.tokens, dtype=torch.long)
    return torch.cat([input_ids.to(torch.long), tail], dim=1)
