"""The real :class:`~shield.cli.evaluation.runner.Backend`: the JAX decoder, the compiled spec, the classifier.

``decoders`` (and with it JAX) is imported only inside :func:`model_backend`, so importing
:mod:`shield.cli.evaluation` stays free of JAX. Every strategy goes through
:func:`decoders.generate` with one :class:`~decoders.options.DecodeOptions` value for the run;
the shielded strategies share a :class:`~shield.judge.Judge` built once.

The measures never look at what the decoder reported: violations are a fresh
``Shield.scan`` of the final text restricted to automaton rules, toxicity is the spec's first
classifier (``profanity-check`` when it has none) applied to the whole continuation, and the
likelihood is a separate teacher-forced pass (:mod:`decoders.likelihood`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shield.classifiers import score
from shield.cli.evaluation.records import EvalConfig
from shield.cli.evaluation.runner import Backend, ScanFn, ScoreFn
from shield.rules import ClassifierRule

__all__ = ["DEFAULT_CLASSIFIER", "model_backend", "spec_scanner", "spec_toxicity"]

#: The classifier used for toxicity when the spec names none.
DEFAULT_CLASSIFIER = "profanity-check"


def spec_scanner(compiled: Any) -> ScanFn:
    """A scan function over the automaton rules of a compiled spec.

    Args:
        compiled: from ``shield.compile(spec)``.

    Returns:
        ``scan(text)``: the ids of the automaton rules violated in ``text``, in order of their
        first violation (classifier rules, if the scan reported any, are left out).
    """
    classifier_ids = {rule.id for rule in compiled.rules if isinstance(rule, ClassifierRule)}

    def scan(text: str) -> list[str]:
        found = (getattr(v.rule, "id", v.rule) for v in compiled.scan(text))
        return list(dict.fromkeys(str(rule) for rule in found if rule not in classifier_ids))

    return scan


def spec_toxicity(compiled: Any) -> tuple[str, ScoreFn]:
    """The classifier that measures toxicity for a compiled spec.

    Args:
        compiled: from ``shield.compile(spec)``.

    Returns:
        The scorer's name (the spec's first classifier rule's, else :data:`DEFAULT_CLASSIFIER`)
        and ``toxicity(texts)``: one probability per text; blank texts score 0.
    """
    rules = [rule for rule in compiled.rules if isinstance(rule, ClassifierRule)]
    name = rules[0].scorer if rules else DEFAULT_CLASSIFIER

    def toxicity(texts: Sequence[str]) -> list[float]:
        batch = list(texts)
        scored = [i for i, text in enumerate(batch) if text.strip()]
        values = [0.0] * len(batch)
        for index, value in zip(scored, score(name, [batch[i] for i in scored]), strict=True):
            values[index] = value
        return values

    return name, toxicity


def model_backend(config: EvalConfig, compiled: Any = None) -> Backend:
    """Load the model (and the spec, unless given) and wire them into a backend for the loop.

    Args:
        config: the run (spec path, model, decoding settings, strategies).
        compiled: the compiled spec (``shield.compile(specs.load(config.spec_path))`` when None).

    Returns:
        A :class:`Backend` whose ``generate(strategy, prompts, seeds, prefill, chat)`` decodes
        with the run's settings and returns ``shield generate --json`` objects, whose ``stats``
        add ``compile_seconds``: the part of the call's wall time JAX spent compiling.

    Raises:
        SpecError: the spec is invalid. ModelLoadError: the model cannot be loaded.
    """
    from pathlib import Path

    import decoders
    import specs
    from decoders.compile_clock import CompileClock
    from decoders.likelihood import continuation_nll
    from decoders.shielded import generate_shielded
    from shield.judge import Judge

    if compiled is None:
        compiled = specs.shield_for(specs.load(Path(config.spec_path)))
    model, tokenizer = decoders.load_model(config.model, weights=config.weights)
    judges: dict[str, Judge] = {}
    settings: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
    }

    def generate(
        strategy: str,
        prompts: Sequence[str],
        seeds: Sequence[int],
        prefill: str | None = None,
        chat: bool = False,
    ) -> list[Mapping[str, Any]]:
        call = {**settings, "seed": list(seeds), "prefill": prefill, "chat": chat}
        with CompileClock() as clock:
            if strategy == "none":
                results: Sequence[Any] = decoders.generate(model, tokenizer, prompts, **call)
            else:
                if "judge" not in judges:
                    judges["judge"] = decoders.judge_for(compiled, tokenizer)
                results = generate_shielded(
                    model, tokenizer, prompts, judge=judges["judge"], strategy=strategy, **call
                )
        objects = [result.to_json() for result in results]
        for item in objects:  # the whole call's compile time, as wall_seconds is the call's
            item["stats"]["compile_seconds"] = clock.seconds
        return objects

    known: dict[tuple[str, tuple[int, ...], bool], tuple[float, int]] = {}

    def nll(
        prompts: Sequence[str], continuations: Sequence[Sequence[int]], chat: bool = False
    ) -> list[tuple[float, int]]:
        # Strategies often return the very same continuation (transparency): score it once.
        keys = [(p, tuple(c), chat) for p, c in zip(prompts, continuations, strict=True)]
        fresh = list(dict.fromkeys(key for key in keys if key not in known))
        if fresh:
            scores = continuation_nll(
                model,
                tokenizer,
                [p for p, _, _ in fresh],
                [c for _, c, _ in fresh],
                chat=chat,
                batch_size=config.batch_size,
            )
            known.update(zip(fresh, scores, strict=True))
        return [known[key] for key in keys]

    _, toxicity = spec_toxicity(compiled)
    return Backend(generate=generate, scan=spec_scanner(compiled), toxicity=toxicity, nll=nll)
