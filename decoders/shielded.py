"""Shielded decoding (``backtrack``, ``reset``, ``mask``) of a batch: the entry point.

:func:`generate_shielded` prepares the batch like plain decoding, builds the device tables and the
reference machine, walks a forced prefill through the shield, hands the batch to the host event
loop (:mod:`decoders.host_loop`, which alternates the device loop of
:mod:`decoders.shielded_loop` with the reference decoder's answers to its events), and reads the
results back. Each row rewinds independently; a row's decisions never look at another row.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, cast

import jax
import numpy as np

from decoders.batch import prepare_run
from decoders.host_loop import EventHost, apply_decisions, run_host_loop, states_along
from decoders.loading import Model
from decoders.options import DecodeOptions
from decoders.shield_tables import device_tables
from decoders.shielded_loop import LoopConfig, ShieldCarry, init_carry
from decoders.state import FINISH_REASONS, DecodeState
from decoders.tokenizer import Tokenizer
from decoders.verdict_queue import VerdictQueue, verdict_delay
from shield.errors import DecoderError
from shield.judge import Judge
from shield.monitor import Shield
from shield.reference import Machine, ReferenceSettings
from shield.result import (
    SHIELDED_STRATEGIES,
    FinishReason,
    GenerationResult,
    GenerationStats,
    TextStream,
)

__all__ = ["generate_shielded", "judge_for"]


def generate_shielded(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    options: DecodeOptions | None = None,
    /,
    *,
    judge: Judge,
    strategy: str = "backtrack",
    repair_mask: bool = True,
    classifier_overlap: bool = True,
    **fields: Any,
) -> list[GenerationResult]:
    """Shielded decoding (``backtrack``, ``reset`` or ``mask``) of a batch of prompts.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row.
        options: the decoding options (or give their fields as keyword arguments). The prefill
            is judged by the shield and may be rolled back; a stream receives each piece of a
            row's response as soon as nothing can take it back (see
            :meth:`shield.reference.Machine.release`), and the pieces of a row concatenate to its
            final text.
        judge: the compiled shield bound to this tokenizer's vocabulary.
        strategy: ``backtrack``, ``reset`` or ``mask``.
        repair_mask: while regenerating a failed segment, mask tokens that would violate.
        classifier_overlap: score classifier windows on a worker thread while the device keeps
            decoding (the default; a verdict arrives at most ``2 * chunk - 1`` tokens late, an
            unsafe one rolls back as the synchronous check would have, and no text is streamed
            or returned before every window in it has its verdict); False: the device stops at
            every window until the host has scored it. Both return the same texts and events.
        **fields: fields of :class:`~decoders.options.DecodeOptions`.

    Returns:
        One :class:`~shield.result.GenerationResult` per prompt, in order.

    Raises:
        DecoderError: invalid arguments. BudgetError: the request does not fit the cache.
        ClassifierError: a classifier rule's scorer failed (generation stops, fail closed).

    Example:
        >>> model, tok = load_model()  # doctest: +SKIP
        >>> judge = judge_for(shield.compile(spec), tok)  # doctest: +SKIP
        >>> generate_shielded(model, tok, ["Hi"], judge=judge, max_new_tokens=16)  # doctest: +SKIP
    """
    if strategy not in SHIELDED_STRATEGIES:
        raise DecoderError(
            f"generate_shielded: expected strategy {', '.join(SHIELDED_STRATEGIES)}, received "
            f"{strategy!r} (use decoders.generate for 'none')."
        )
    began = time.perf_counter()
    options = DecodeOptions.build(options, **fields)
    policy = judge.policy
    sampling, prepared, params = prepare_run(model, tokenizer, prompts, options)
    config = model.config
    state = prepared.state
    batch, slots = state.batch_size, state.max_slots
    forced = tokenizer.encode(options.prefill, add_bos=False) if options.prefill else []
    tables = device_tables(judge, config.vocab_size, config.eos_token_ids)
    # Only the rewinding strategies enforce classifier rules; without any, nothing is scored.
    overlap = classifier_overlap and bool(judge.classifier_rules) and strategy != "mask"
    delay = verdict_delay(options.chunk) if overlap else 0
    loop = _loop_config(judge, strategy, overlap=overlap)
    settings = ReferenceSettings(
        strategy=strategy,
        max_new_tokens=options.max_new_tokens,
        repair_mask=repair_mask,
        verdict_delay=delay,
    )
    machine = Machine(
        judge,
        config.eos_token_ids,
        settings,
        forced,
        encode=lambda text: tokenizer.encode(text, add_bos=False),
    )
    host = EventHost(machine, batch)
    starts = np.asarray(jax.device_get(state.start))
    history = np.broadcast_to(
        np.asarray(judge.initial(), np.int32), (batch, slots + 1, tables.components)
    ).copy()
    decisions = {}
    verdicts = VerdictQueue(judge, batch) if overlap else None
    for b in range(prepared.rows):
        states, decision = host.walk_prefill(b, forced)
        history[b, starts[b] : starts[b] + len(states)] = np.asarray(states, np.int32)
        if verdicts is not None:  # the prefill's windows were judged while it was walked
            verdicts.scanned[b] = len(states) - 1
        if decision is not None:
            decisions[b] = decision
            if verdicts is not None and decision.kind == "rewind":
                verdicts.rewound(b, decision.target)
    limit = jax.device_put(np.asarray(starts + len(forced) + options.max_new_tokens, np.int32))
    carry = init_carry(jax.device_put(history), limit, loop.max_bans)
    state, carry = apply_decisions(state, carry, decisions, starts, loop.max_bans)
    # Each round either runs device steps or answers at least one event or verdict; every event
    # consumes budget or ends a row, and a late verdict wastes at most `delay` steps, so this
    # bound is never reached (fail closed if it were).
    budget = policy.max_discarded_tokens
    rounds = (options.max_new_tokens + (2 + delay) * budget + len(forced) + 4) * batch + 8
    stream = options.stream
    streams = (
        [TextStream(functools.partial(stream, b)) for b in range(prepared.rows)] if stream else []
    )
    try:
        state, carry = run_host_loop(
            host, params, config, sampling, loop, tables, state, carry,
            chunk=options.chunk, rounds=rounds, streams=streams, verdicts=verdicts,
        )  # fmt: skip
    finally:
        if verdicts is not None:
            verdicts.close()
    wall = time.perf_counter() - began
    results = _collect(host, prepared.rows, state, carry, strategy, wall, verdicts)
    for text_stream, result in zip(streams, results, strict=False):
        text_stream.close(result.text)
    return results


def _loop_config(judge: Judge, strategy: str, *, overlap: bool = False) -> LoopConfig:
    """The static device-loop configuration for ``judge``'s classifier rules (with ``overlap``
    the device never stops at a window: the host finds them in the new tokens).

    Raises:
        DecoderError: window-scope classifier rules disagree on the window size.
    """
    rules = judge.classifier_rules
    window_sizes = {
        rule.window_tokens for rule in rules if rule.scope == "window" and rule.window_tokens
    }
    if len(window_sizes) > 1:
        raise DecoderError(
            "generate_shielded: expected one window size across window-scope classifier rules, "
            f"received {sorted(window_sizes)}."
        )
    return LoopConfig(
        strategy=strategy,
        sentence_windows=not overlap and any(rule.scope == "sentence" for rule in rules),
        window_tokens=0 if overlap else next(iter(window_sizes), 0),
        max_bans=judge.policy.max_retries,
    )


def _collect(
    host: EventHost,
    real_rows: int,
    state: DecodeState,
    carry: ShieldCarry,
    strategy: str,
    wall: float,
    verdicts: VerdictQueue | None = None,
) -> list[GenerationResult]:
    """One result per real row: the device's tokens, or the reference's for stopped rows."""
    judge = host.machine.judge
    tokens, starts, cursors, finishes, steps = jax.device_get(
        (state.tokens, state.start, state.cursor, state.finish, carry.steps)
    )
    results = []
    for b in range(real_rows):
        row, final = host.rows[b], host.finals.get(b)
        if final is not None:
            ids, reason, text = final.tokens, final.reason, final.text
        else:
            ids = tuple(int(t) for t in tokens[b, starts[b] : cursors[b]])
            reason, text = FINISH_REASONS.get(int(finishes[b]), "budget"), judge.detokenize(ids)
            if reason == "budget":  # the host's round bound ran out (never expected): fail closed
                # ... and never past a window whose verdict is still pending.
                pending = verdicts.pending(b) if verdicts is not None else ()
                limit = min((w.start for w in pending), default=len(ids))
                ids = ids[: judge.safe_prefix(ids, states_along(judge, ids), limit=limit)]
                text = judge.detokenize(ids)
        events = list(row.events)
        if strategy == "mask":
            events.extend(judge.report(ids))
        stats = GenerationStats.count(
            generated=int(steps[b]) - host.speculative[b],
            forced=row.forced,
            kept=len(ids),
            ended_by_eos=reason == "eos",  # shielded rows end with "eos" only on the EOS token
            refused=reason == "refused",
            rollbacks=row.trace.rollbacks,
            max_rollback=row.trace.max_rollback,
            wall_seconds=wall,
            speculative=host.speculative[b],
        )
        results.append(
            GenerationResult(
                text=text,
                finish_reason=cast(FinishReason, reason),
                tokens=ids,
                stats=stats,
                events=tuple(events),
            )
        )
    return results


def judge_for(compiled: Shield, tokenizer: Tokenizer) -> Judge:
    """Bind a compiled shield to a tokenizer's vocabulary (special tokens are never text).

    Args:
        compiled: a :class:`shield.Shield` from ``shield.compile``.
        tokenizer: the model's tokenizer.

    Returns:
        The :class:`~shield.judge.Judge` the decoders use.

    Example:
        >>> judge = judge_for(shield.compile(specs.load("specs/library/toxicity.toml")), tokenizer)  # doctest: +SKIP
    """
    return Judge(compiled, compiled.lift(tokenizer.backend), decode=None)
