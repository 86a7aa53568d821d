"""The reference decoder: the transition system of :mod:`shield.machine` driven by a model.

:func:`reference_generate` runs one row's :class:`~shield.machine.Machine` to the end with any
next-token function (slow, simple, model-agnostic: one host step per token, no cache), and
:func:`drive` is the one driver that it and the transformers adapter share. The JAX decoder in
``decoders`` must agree with it token for token (``tests/decoders``). The machine and its values
are re-exported here, the names the reference decoder has always had.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from shield.controller import Failure
from shield.judge import Judge
from shield.machine import Machine
from shield.machine_state import Choose, Config, Finished, ReferenceSettings
from shield.result import GenerationResult, GenerationStats, TextStream
from shield.sampling import sample_token

__all__ = [
    "Choose",
    "Config",
    "Finished",
    "Machine",
    "ReferenceSettings",
    "Sampler",
    "drive",
    "reference_generate",
]

NextLogits = Callable[[Sequence[int]], np.ndarray]
#: ``sampler(logits, blocked, position, attempt) -> token``: draws one token that is not blocked.
Sampler = Callable[[np.ndarray, np.ndarray, int, int], int]


def reference_generate(
    next_logits: NextLogits,
    prompt: Sequence[int],
    *,
    judge: Judge,
    eos_id: int,
    settings: ReferenceSettings,
    prefill: Sequence[int] = (),
    encode: Callable[[str], Sequence[int]] | None = None,
    stream: Callable[[str], None] | None = None,
    sampler: Sampler | None = None,
) -> GenerationResult:
    """Generate one response with the reference decoder.

    Args:
        next_logits: maps the token prefix (prompt + response so far) to logits over the vocabulary.
        prompt: the prompt's token ids (never rolled back, never scanned).
        judge: the compiled shield bound to the vocabulary (see :class:`shield.judge.Judge`).
        eos_id: the end-of-sequence token id.
        settings: strategy, bounds and sampling.
        prefill: token ids forced at the start of the response (part of the response).
        encode: turns the refusal text into token ids (needed for ``on_exhausted = "refuse"``).
        stream: called with each piece of text as soon as it can no longer be rolled back.
        sampler: draws a token from the logits with the blocked tokens removed, given the
            response position and the attempt; by default :func:`~shield.sampling.sample_token`
            with ``settings.sampling`` and ``settings.seed``. Differential tests pass the device
            decoder's own draw, so that both decoders can be compared under sampling.

    Returns:
        The :class:`~shield.result.GenerationResult`.

    Example:
        >>> result = reference_generate(model, [1, 2], judge=judge, eos_id=0, settings=ReferenceSettings())  # doctest: +SKIP
    """
    machine = Machine(judge, eos_id, settings, prefill, encode)
    return drive(machine, next_logits, prompt, stream=stream, sampler=sampler)


def drive(
    machine: Machine,
    next_logits: NextLogits,
    prompt: Sequence[int],
    *,
    stream: Callable[[str], None] | None = None,
    sampler: Sampler | None = None,
) -> GenerationResult:
    """Run one row's machine to the end, drawing from ``next_logits``: the one reference driver.

    :func:`reference_generate` and the transformers adapter (whose models may have several
    end-of-sequence ids) both run their machines through it.

    Args:
        machine: the row's transition system (judge, EOS ids, settings, prefill, encoder).
        next_logits: the logits after a token prefix (prompt + kept response).
        prompt: the prompt's token ids.
        stream: receives each piece of text as soon as it can no longer be rolled back.
        sampler: the draw (see :func:`reference_generate`); by default
            :func:`~shield.sampling.sample_token` keyed by the row's seed, position and attempt.

    Returns:
        The row's :class:`~shield.result.GenerationResult`.
    """
    started = time.perf_counter()
    settings = machine.settings
    current: Config | Finished = machine.initial()
    released = TextStream(stream) if stream is not None else None
    for _ in range(machine.fuel):  # every transition is a step, a forced token or a rewind
        if isinstance(current, Finished):
            break
        if released is not None:
            current = machine.release(current)
            released.update(machine.judge.detokenize(current.kept[: current.released]))
        action = machine.action(current)
        if action == "end":
            current = machine.end(current)
        elif isinstance(action, int):
            current = machine.read(current, action, forced=True)
        elif action.blocked.all():
            current = machine.stuck(current)
        else:
            logits = np.asarray(next_logits([*prompt, *current.kept]), dtype=np.float64)
            position, attempt = len(current.kept), current.attempt
            if sampler is not None:
                token = sampler(logits, action.blocked, position, attempt)
            else:
                token = sample_token(
                    logits,
                    action.blocked,
                    settings.sampling,
                    seed=settings.seed,
                    position=position,
                    attempt=attempt,
                )
            current = machine.read(current, token, forced=False)
    if not isinstance(current, Finished):  # unreachable by the termination theorem; fail closed
        failure = Failure(tokens=(machine.eos_ids[0],), start=0, rule="fuel")
        current = machine.exhausted(current, failure)
    if released is not None:
        released.close(current.text)
    config = current.config
    stats = GenerationStats.count(
        generated=config.steps,
        forced=config.forced,
        kept=len(current.tokens),
        ended_by_eos=current.reason == "eos",
        refused=current.reason == "refused",
        rollbacks=config.trace.rollbacks,
        max_rollback=config.trace.max_rollback,
        wall_seconds=time.perf_counter() - started,
    )
    return GenerationResult(
        text=current.text,
        finish_reason=current.reason,  # type: ignore[arg-type]
        tokens=current.tokens,
        stats=stats,
        events=config.events,
    )
