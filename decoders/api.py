"""``decoders.generate``: one entry point for the four strategies.

``none`` is plain decoding (:func:`decoders.plain.generate_plain`) with the spec's violations of
each final text reported as events; ``mask``, ``reset`` and ``backtrack`` are shielded decoding
(:func:`decoders.shielded.generate_shielded`). Every strategy returns
:class:`shield.result.GenerationResult` values with the fields of ``shield generate --json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from decoders.loading import Model
from decoders.options import DecodeOptions
from decoders.plain import generate_plain
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
    options: DecodeOptions | None = None,
    /,
    *,
    spec: Any = None,
    strategy: str | None = None,
    **fields: Any,
) -> list[GenerationResult]:
    """Generate responses to ``prompts``, shielded by ``spec`` with ``strategy``.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row; rows of different lengths are batched.
        options: the decoding options; or give their fields as keyword arguments
            (``max_new_tokens`` is required; ``temperature=1.0``, ``top_p=0.9``, ``top_k=None``,
            ``seed=0`` (one for every row or one per prompt), ``chat=False``, ``prefill=None``,
            ``max_slots=None``, ``mesh=None``, ``chunk=32``, ``stream=None``: see
            :class:`~decoders.options.DecodeOptions`). Keyword fields given with ``options``
            replace its values. ``mesh`` is a :func:`decoders.make_mesh` mesh (rows over its
            ``data`` axis, weights over its ``model`` axis; the batch is padded to the ``data``
            size; every strategy, rewinds included, gives the tokens of one device) or True for
            all devices on ``data``.
        spec: a :class:`specs.Spec`, a compiled :class:`shield.Shield` or a
            :class:`~shield.judge.Judge`; None only with strategy ``none``.
        strategy: ``backtrack`` (default with a spec), ``reset``, ``mask`` or ``none`` (default
            without a spec: plain decoding; with a spec its violations are reported as events).
        **fields: fields of :class:`~decoders.options.DecodeOptions`.

    Returns:
        One :class:`~shield.result.GenerationResult` per prompt.

    Raises:
        DecoderError: bad arguments (an unknown option is named). BudgetError: the request does
            not fit the cache. ClassifierError: a classifier rule's scorer failed (fail closed).

    Example:
        >>> model, tokenizer = load_model()  # doctest: +SKIP
        >>> spec = specs.load("specs/library/toxicity.toml")  # doctest: +SKIP
        >>> generate(model, tokenizer, ["Hi"], spec=spec, max_new_tokens=32)[0].text  # doctest: +SKIP
        >>> generate(model, tokenizer, prompts, spec=spec, max_new_tokens=32,
        ...          mesh=make_mesh(data=2, model=4))  # doctest: +SKIP
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
    options = DecodeOptions.build(options, **fields)
    if chosen == "none":
        results = generate_plain(model, tokenizer, prompts, options)
        if spec is None:
            return results
        judge = resolve_judge(spec, tokenizer)
        return [dataclasses.replace(r, events=tuple(judge.report(r.tokens))) for r in results]
    judge = resolve_judge(spec, tokenizer)
    return generate_shielded(model, tokenizer, prompts, options, judge=judge, strategy=chosen)
