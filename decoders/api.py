"""``decoders.generate``: one entry point for the four strategies.

``none`` is plain decoding (:func:`decoders.generate.generate_plain`) with the spec's violations of
each final text reported as events; ``mask``, ``reset`` and ``backtrack`` are shielded decoding
(:func:`decoders.shielded.generate_shielded`). Every strategy returns
:class:`shield.result.GenerationResult` values with the fields of ``shield generate --json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from decoders.batch import generate_plain
from decoders.loading import Model
from decoders.shielded import generate_shielded, judge_for
from decoders.tokenizer import Tokenizer
from shield.errors import DecoderError
from shield.judge import Judge
from shield.result import STRATEGIES, GenerationResult

__all__ = ["generate", "resolve_judge"]


def resolve_judge(spec: Any, tokenizer: Tokenizer) -> Judge:
    """A :class:`~shield.judge.Judge` from a spec value, a compiled shield, or a judge.

    Args:
        spec: a :class:`specs.Spec` (anything with ``name``, ``rules`` and ``policy``), a compiled
            :class:`shield.Shield`, or a :class:`~shield.judge.Judge` (returned as is).
        tokenizer: the model's tokenizer.

    Returns:
        The judge bound to the tokenizer's vocabulary.

    Raises:
        DecoderError: ``spec`` is none of these.
    """
    import shield

    if isinstance(spec, Judge):
        return spec
    if isinstance(spec, shield.Shield):
        return judge_for(spec, tokenizer)
    if all(hasattr(spec, name) for name in ("name", "rules", "policy")):
        return judge_for(shield.compile(spec), tokenizer)
    raise DecoderError(
        "generate: expected spec to be a specs.Spec, a compiled shield.Shield or a Judge, "
        f"received {type(spec).__name__}; load one with specs.load(path)."
    )


def generate(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    spec: Any = None,
    strategy: str | None = None,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float | None = 0.9,
    top_k: int | None = None,
    seed: int | Sequence[int] = 0,
    chat: bool = False,
    prefill: str | None = None,
    max_slots: int | None = None,
    mesh: Any = None,
    chunk: int = 32,
    stream: Callable[[int, str], None] | None = None,
) -> list[GenerationResult]:
    """Generate responses to ``prompts``, shielded by ``spec`` with ``strategy``.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row; rows of different lengths are batched.
        spec: a :class:`specs.Spec`, a compiled :class:`shield.Shield` or a
            :class:`~shield.judge.Judge`; None only with strategy ``none``.
        strategy: ``backtrack`` (default with a spec), ``reset``, ``mask`` or ``none`` (default
            without a spec: plain decoding; with a spec its violations are reported as events).
        max_new_tokens: tokens generated after the prompt and the prefill.
        temperature: 0 for greedy decoding. top_p: nucleus mass (None: off). top_k: (None: off).
        seed: one seed for every row or one per prompt; draws are keyed by (seed, position,
            attempt), so a row's output never depends on the rest of the batch.
        chat: render each prompt as a user turn of the model's chat template.
        prefill: text forced at the start of every response (a prefilling attack); it is part of
            the response and the shield may roll it back.
        max_slots: cache slots per row (default: just enough).
        mesh: a device mesh to shard the batch over; True for all local devices.
        chunk: the most device steps between host synchronisations.
        stream: called as ``stream(row, text)`` with text that can no longer be rolled back.

    Returns:
        One :class:`~shield.result.GenerationResult` per prompt.

    Raises:
        DecoderError: bad arguments. BudgetError: the request does not fit the cache.
        ClassifierError: a classifier rule's scorer failed (fail closed).

    Example:
        >>> model, tokenizer = load_model()  # doctest: +SKIP
        >>> spec = specs.load("specs/library/toxicity.toml")  # doctest: +SKIP
        >>> generate(model, tokenizer, ["Hi"], spec=spec, max_new_tokens=32)[0].text  # doctest: +SKIP
    """
    chosen = strategy or ("backtrack" if spec is not None else "none")
    if chosen not in STRATEGIES:
        raise DecoderError(
            f"generate: expected strategy one of {', '.join(STRATEGIES)}, received {chosen!r}."
        )
    if spec is None and chosen != "none":
        raise DecoderError(
            f"generate: strategy {chosen!r} needs a spec; pass spec=specs.load(path)."
        )
    common: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        chat=chat,
        prefill=prefill,
        max_slots=max_slots,
        mesh=mesh,
        chunk=chunk,
        stream=stream,
    )
    if chosen == "none":
        results = generate_plain(model, tokenizer, prompts, **common)
        if spec is None:
            return results
        judge = resolve_judge(spec, tokenizer)
        return [dataclasses.replace(r, events=tuple(judge.report(r.tokens))) for r in results]
    judge = resolve_judge(spec, tokenizer)
    return generate_shielded(model, tokenizer, prompts, judge=judge, strategy=chosen, **common)
