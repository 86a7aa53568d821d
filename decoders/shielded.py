"""Shielded generation from the host: events in, cursor moves out.

:func:`generate_shielded` prepares the batch like plain decoding, walks a forced prefill through
the shield, then alternates between the device loop (:func:`decoders.shielded_loop.shielded_loop`) and
the host's answers to the events it raises. Each row keeps its own :class:`~shield.controller.RowTrace`
and rewinds independently; a row's decisions never look at another row.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import weakref
from collections.abc import Callable, Sequence
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from decoders.batch import prepare_run
from decoders.loading import Model
from decoders.shield_tables import ShieldTables, shield_tables
from decoders.shielded_loop import (
    EVENT_EOS,
    EVENT_LENGTH,
    EVENT_NONE,
    EVENT_STUCK,
    EVENT_VIOLATION,
    EVENT_WINDOW,
    LoopConfig,
    init_carry,
    shielded_loop,
)
from decoders.state import FINISH_EOS, FINISH_LENGTH, RUNNING, finish, rewind
from decoders.tokenizer import Tokenizer
from shield.controller import RowTrace
from shield.errors import DecoderError
from shield.judge import Judge
from shield.lifting import MonitorState
from shield.reference import Config, Finished, Machine, ReferenceSettings
from shield.result import Event, FinishReason, GenerationResult, GenerationStats, TextStream

__all__ = ["FINISH_BUDGET", "FINISH_REFUSED", "device_tables", "generate_shielded", "judge_for"]

FINISH_BUDGET, FINISH_REFUSED = 8, 9


@dataclasses.dataclass
class _Row:
    """Host bookkeeping of one row (mutable scratch; never escapes this module).

    The device holds the kept tokens; the host holds what the controller needs besides them, so a
    reference :class:`~shield.reference.Config` can be rebuilt at every event.
    """

    trace: RowTrace = dataclasses.field(default_factory=RowTrace)
    attempt: int = 0
    repair_until: int = 0
    forced: int = 0
    events: tuple[Event, ...] = ()
    final: Finished | None = None
    released: int = 0  # kept[:released] is final and has been streamed


@dataclasses.dataclass(frozen=True)
class _Decision:
    """What the device does to one row after the host answered its event."""

    kind: str  # "continue", "rewind", "finish"
    target: int = 0
    banned: tuple[int, ...] = ()
    repair_until: int = 0
    code: int = 0


def _states_along(judge: Judge, tokens: Sequence[int]) -> tuple[MonitorState, ...]:
    states = [judge.initial()]
    for token in tokens:
        states.append(judge.feed(states[-1], token)[0])
    return tuple(states)


class _Host:
    """Answers the device's events with the reference decoder's own transitions.

    Every event is replayed as a transition of :class:`shield.reference.Machine` from a
    configuration rebuilt from the device's tokens and the row's bookkeeping, so the JAX decoder
    takes exactly the decisions of the reference decoder.
    """

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def config(
        self, row: _Row, kept: Sequence[int], states: Sequence[MonitorState] | None = None
    ) -> Config:
        """The reference configuration of a row; ``states`` from the device history when given."""
        return Config(
            kept=tuple(kept),
            states=tuple(states) if states is not None else _states_along(self.machine.judge, kept),
            trace=row.trace,
            attempt=row.attempt,
            repair_until=row.repair_until,
            forced=row.forced,
            events=row.events,
            released=row.released,
        )

    def release(self, row: _Row, kept: Sequence[int], states: Sequence[MonitorState]) -> None:
        """Advance the row's released prefix (see :meth:`shield.reference.Machine.release`)."""
        row.released = self.machine.release(self.config(row, kept, states)).released

    def settle(
        self, row: _Row, before: Config, after: Config | Finished, *, appended: bool
    ) -> _Decision:
        """Record the outcome of a transition and turn it into a device decision."""
        if isinstance(after, Finished):
            row.events, row.trace, row.forced = (
                after.config.events,
                after.config.trace,
                after.config.forced,
            )
            if after.reason in ("eos", "length"):
                return _Decision(
                    kind="finish", code=FINISH_EOS if after.reason == "eos" else FINISH_LENGTH
                )
            row.final = after
            return _Decision(
                kind="finish", code=FINISH_REFUSED if after.reason == "refused" else FINISH_BUDGET
            )
        row.events, row.trace, row.forced = after.events, after.trace, after.forced
        if after.attempt == row.attempt:
            if appended != (len(after.kept) == len(before.kept) + 1):
                raise DecoderError(
                    "shielded loop: the device and the reference disagree on a token."
                )
            return _Decision(kind="continue")
        row.attempt, row.repair_until = after.attempt, after.repair_until
        target = len(after.kept)
        return _Decision(
            kind="rewind",
            target=target,
            banned=tuple(sorted(after.trace.banned_at(target))),
            repair_until=after.repair_until,
        )

    def on_event(
        self,
        row: _Row,
        event: int,
        kept: list[int],
        rejected: int,
        states: Sequence[MonitorState],
    ) -> _Decision:
        """Replay the event as a reference transition; ``states[i]`` is the state after ``kept[:i]``."""
        machine = self.machine
        if event == EVENT_STUCK:
            before = self.config(row, kept, states)
            return self.settle(row, before, machine.stuck(before), appended=False)
        if event in (EVENT_VIOLATION, EVENT_EOS):
            before = self.config(row, kept, states)
            return self.settle(
                row, before, machine.read(before, rejected, forced=False), appended=False
            )
        if event in (EVENT_WINDOW, EVENT_LENGTH):
            before = self.config(row, kept[:-1], states[:-1])
            after = machine.read(before, kept[-1], forced=False)
            if event == EVENT_LENGTH and isinstance(after, Config):
                after = machine.end(after)
            decision = self.settle(row, before, after, appended=True)
            return decision
        raise DecoderError(f"shielded loop: expected an event code in 1..5, received {event}.")

    def walk_prefill(
        self, row: _Row, prefill: Sequence[int]
    ) -> tuple[tuple[MonitorState, ...], _Decision | None]:
        """Read a forced prefill token by token, exactly as the reference decoder does."""
        config = self.machine.initial()
        for token in prefill:
            after = self.machine.read(config, token, forced=True)
            if not isinstance(after, Config) or after.attempt != config.attempt:
                before_states = config.states
                return before_states, self.settle(row, config, after, appended=False)
            config = after
        row.forced = config.forced
        return config.states, None


def _apply(state, carry, decisions: dict[int, _Decision], starts: np.ndarray, max_bans: int):  # type: ignore[no-untyped-def]
    """Apply host decisions to the device state: rewinds are cursor moves."""
    batch = state.batch_size
    rewind_rows = np.zeros(batch, bool)
    targets = np.zeros(batch, np.int32)
    clear = np.zeros(batch, bool)
    finish_codes = np.zeros(batch, np.int32)
    ban_position = np.asarray(jax.device_get(carry.ban_position)).copy()
    ban_tokens = np.asarray(jax.device_get(carry.ban_tokens)).copy()
    repair = np.asarray(jax.device_get(carry.repair_until)).copy()
    for b, decision in decisions.items():
        clear[b] = True
        if decision.kind == "rewind":
            rewind_rows[b] = True
            targets[b] = starts[b] + decision.target
            ban_position[b] = targets[b]
            if (
                len(decision.banned) > max_bans
            ):  # cannot happen: bans at one position <= max_retries
                raise DecoderError(
                    f"shielded loop: {len(decision.banned)} bans at one position exceed the {max_bans} ban slots."
                )
            ban_tokens[b] = -1
            ban_tokens[b, : len(decision.banned)] = decision.banned
            repair[b] = starts[b] + decision.repair_until
        elif decision.kind == "finish":
            finish_codes[b] = decision.code
    state = rewind(state, jnp.asarray(targets), jnp.asarray(rewind_rows))
    for code in np.unique(finish_codes[finish_codes > 0]):
        state = finish(state, int(code), jnp.asarray(finish_codes == code))
    carry = dataclasses.replace(
        carry,
        event=jnp.where(jnp.asarray(clear), 0, carry.event),
        ban_position=jnp.asarray(ban_position),
        ban_tokens=jnp.asarray(ban_tokens),
        repair_until=jnp.asarray(repair),
    )
    return state, carry


# Device tables per judge, built once (a judge is immutable) and dropped with the judge.
_TABLES: weakref.WeakKeyDictionary[Judge, dict[tuple[int, tuple[int, ...]], ShieldTables]] = (
    weakref.WeakKeyDictionary()
)


def device_tables(judge: Judge, vocab_size: int, eos_ids: tuple[int, ...]) -> ShieldTables:
    """The judge's device tables for a model's vocabulary size and EOS ids, built on first use.

    Args:
        judge: the token view of a compiled shield.
        vocab_size: V, the model's number of logits.
        eos_ids: the model's end-of-sequence ids (allowed to be sampled).

    Returns:
        The :class:`~decoders.shield_tables.ShieldTables` (cached per judge).
    """
    per_judge = _TABLES.setdefault(judge, {})
    key = (vocab_size, eos_ids)
    if key not in per_judge:
        per_judge[key] = shield_tables(judge.tables, vocab_size, judge.never(eos_ids))
    return per_judge[key]


def _bucket(needed: int, minimum: int = 64) -> int:
    window = minimum
    while window < needed:
        window *= 2
    return window


def generate_shielded(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    judge: Judge,
    strategy: str = "backtrack",
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float | None = 0.9,
    top_k: int | None = None,
    seed: int | Sequence[int] = 0,
    chat: bool = False,
    prefill: str | None = None,
    max_slots: int | None = None,
    mesh: object = None,
    chunk: int = 32,
    repair_mask: bool = True,
    stream: Callable[[int, str], None] | None = None,
) -> list[GenerationResult]:
    """Shielded decoding (``backtrack``, ``reset`` or ``mask``) of a batch of prompts.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row.
        judge: the compiled shield bound to this tokenizer's vocabulary.
        strategy: ``backtrack``, ``reset`` or ``mask``.
        max_new_tokens: N, tokens generated after the prompt and the prefill.
        temperature: 0 for greedy decoding. top_p: nucleus mass (None: off). top_k: (None: off).
        seed: one seed for every row or one per prompt.
        chat: render each prompt as a user turn of the chat template.
        prefill: text forced at the start of every response; the shield judges it and may roll
            it back.
        max_slots: cache slots per row (default: just enough).
        mesh: a device mesh to shard the batch over; True for all local devices.
        chunk: the most device steps between host synchronisations when nothing happens.
        repair_mask: while regenerating a failed segment, mask tokens that would violate.
        stream: called as ``stream(row, text)`` with each piece of a row's response as soon as
            nothing can take it back (see :meth:`shield.reference.Machine.release`); the pieces
            of a row concatenate to its final text.

    Returns:
        One :class:`~shield.result.GenerationResult` per prompt, in order.

    Raises:
        DecoderError: invalid arguments. BudgetError: the request does not fit the cache.
        ClassifierError: a classifier rule's scorer failed (generation stops, fail closed).

    Example:
        >>> model, tok = load_model()  # doctest: +SKIP
        >>> judge = Judge(compiled, compiled.lift(tok.token_bytes))  # doctest: +SKIP
        >>> generate_shielded(model, tok, ["Hi"], judge=judge, max_new_tokens=16)  # doctest: +SKIP
    """
    if strategy not in ("backtrack", "reset", "mask"):
        raise DecoderError(
            f"generate_shielded: expected strategy backtrack, reset or mask, received {strategy!r} "
            "(use decoders.generate for 'none')."
        )
    began = time.perf_counter()
    policy = judge.policy
    sampling, prepared, params = prepare_run(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, top_k=top_k, seed=seed, chat=chat, prefill=prefill, max_slots=max_slots,
        mesh=mesh,  # type: ignore[arg-type]
    )  # fmt: skip
    config = model.config
    state = prepared.state
    batch, slots = state.batch_size, state.max_slots
    forced = tokenizer.encode(prefill, add_bos=False) if prefill else []
    tables = device_tables(judge, config.vocab_size, config.eos_token_ids)
    rules = judge.classifier_rules
    window_sizes = {
        rule.window_tokens for rule in rules if rule.scope == "window" and rule.window_tokens
    }
    if len(window_sizes) > 1:
        raise DecoderError(
            f"generate_shielded: expected one window size across window-scope classifier rules, received {sorted(window_sizes)}."
        )
    loop = LoopConfig(
        strategy=strategy,
        sentence_windows=any(rule.scope == "sentence" for rule in rules),
        window_tokens=next(iter(window_sizes), 0),
        max_bans=policy.max_retries,
    )
    settings = ReferenceSettings(
        strategy=strategy, max_new_tokens=max_new_tokens, repair_mask=repair_mask
    )
    machine = Machine(
        judge,
        config.eos_token_ids,
        settings,
        forced,
        encode=lambda text: tokenizer.encode(text, add_bos=False),
    )
    host = _Host(machine)
    rows = [_Row() for _ in range(batch)]
    starts = np.asarray(jax.device_get(state.start))
    history = np.broadcast_to(
        np.asarray(judge.initial(), np.int32), (batch, slots + 1, tables.components)
    ).copy()
    decisions: dict[int, _Decision] = {}
    for b in range(prepared.rows):
        states, decision = host.walk_prefill(rows[b], forced)
        history[b, starts[b] : starts[b] + len(states)] = np.asarray(states, np.int32)
        if decision is not None:
            decisions[b] = decision
    limit = jnp.asarray(starts + len(forced) + max_new_tokens, jnp.int32)
    carry = init_carry(jnp.asarray(history), limit, loop.max_bans)
    state, carry = _apply(state, carry, decisions, starts, loop.max_bans)
    # Each round either runs device steps or answers at least one event; every event consumes
    # budget or ends a row, so this bound is never reached (fail closed if it were).
    rounds = (max_new_tokens + 2 * policy.max_discarded_tokens + len(forced) + 4) * batch + 8
    streams = (
        [TextStream(functools.partial(stream, b)) for b in range(prepared.rows)] if stream else []
    )
    for _ in range(rounds):
        finish_codes, events = jax.device_get((state.finish, carry.event))
        if streams:
            _release(host, rows, streams, state, carry, finish_codes, starts)
        if bool((finish_codes != RUNNING).all()):
            break
        waiting = [
            b for b in range(batch) if finish_codes[b] == RUNNING and events[b] != EVENT_NONE
        ]
        if waiting:
            state, carry = _answer(host, rows, state, carry, waiting, starts, loop.max_bans)
            continue
        cursors = np.asarray(jax.device_get(state.cursor))
        top = int(cursors[finish_codes == RUNNING].max())
        # The smallest power-of-two attention window that covers the chunk, as plain decoding picks.
        window = min(_bucket(top + chunk - 1), slots)
        steps = max(1, min(chunk, window - top + 1))
        state, carry, _ = shielded_loop(
            params, config, sampling, loop, tables, state, carry, jnp.int32(steps), window=window
        )
    else:
        state = finish(state, FINISH_BUDGET, state.finish == RUNNING)
    results = _collect(
        judge, rows, prepared.rows, state, carry, strategy, time.perf_counter() - began
    )
    for text_stream, result in zip(streams, results, strict=False):
        text_stream.close(result.text)
    return results


def _monitor_states(history: np.ndarray, start: int, cursor: int) -> list[MonitorState]:
    """The monitor states after each prefix of a row's response, read from the device history."""
    return [tuple(int(s) for s in column) for column in history[start : cursor + 1]]


def _release(
    host: _Host, rows: list[_Row], streams: list[TextStream], state, carry, finish_codes, starts
) -> None:  # type: ignore[no-untyped-def]
    """Stream, for every running row, the text that can no longer be rolled back."""
    tokens, cursors, history = jax.device_get((state.tokens, state.cursor, carry.history))
    for b, text_stream in enumerate(streams):
        if finish_codes[b] != RUNNING:
            continue
        kept = [int(t) for t in tokens[b, starts[b] : cursors[b]]]
        host.release(rows[b], kept, _monitor_states(history[b], starts[b], cursors[b]))
        text_stream.update(host.machine.judge.detokenize(kept[: rows[b].released]))


def _answer(
    host: _Host,
    rows: list[_Row],
    state,
    carry,
    waiting: list[int],
    starts: np.ndarray,
    max_bans: int,
):  # type: ignore[no-untyped-def]
    tokens, cursors, history, rejected, events = jax.device_get(
        (state.tokens, state.cursor, carry.history, carry.rejected, carry.event)
    )
    judge = host.machine.judge
    kept_rows = {b: [int(t) for t in tokens[b, starts[b] : cursors[b]]] for b in waiting}
    # Classifier windows of every waiting row are scored in one batch per rule.
    windows = []
    for b, kept in kept_rows.items():
        if events[b] in (EVENT_WINDOW, EVENT_LENGTH):
            windows.extend(judge.closed_windows(kept))
        if events[b] in (EVENT_EOS, EVENT_LENGTH):
            windows.extend(judge.open_windows(kept))
    judge.prefetch(windows)
    decisions = {}
    for b, kept in kept_rows.items():
        states = _monitor_states(history[b], starts[b], cursors[b])
        decisions[b] = host.on_event(rows[b], int(events[b]), kept, int(rejected[b]), states)
    judge.forget()
    return _apply(state, carry, decisions, starts, max_bans)


def _collect(
    judge: Judge, rows: list[_Row], real_rows: int, state, carry, strategy: str, wall: float
) -> list[GenerationResult]:  # type: ignore[no-untyped-def]
    tokens, starts, cursors, finishes, steps = jax.device_get(
        (state.tokens, state.start, state.cursor, state.finish, carry.steps)
    )
    reasons = {
        FINISH_EOS: "eos",
        FINISH_LENGTH: "length",
        FINISH_BUDGET: "budget",
        FINISH_REFUSED: "refused",
    }
    results = []
    for b in range(real_rows):
        row = rows[b]
        if row.final is not None:
            ids, reason, text = row.final.tokens, row.final.reason, row.final.text
        else:
            ids = tuple(int(t) for t in tokens[b, starts[b] : cursors[b]])
            reason, text = reasons.get(int(finishes[b]), "budget"), judge.detokenize(ids)
            if reason == "budget":  # the host's round bound ran out (never expected): fail closed
                ids = ids[: judge.safe_prefix(ids, _states_along(judge, ids), limit=len(ids))]
                text = judge.detokenize(ids)
        events = list(row.events)
        if strategy == "mask":
            events.extend(judge.report(ids))
        produced = int(steps[b]) + row.forced
        stats = GenerationStats(
            generated_tokens=int(steps[b]),
            kept_tokens=len(ids),
            discarded_tokens=produced - (len(ids) if reason != "refused" else 0),
            rollbacks=row.trace.rollbacks,
            max_rollback_tokens=row.trace.max_rollback,
            wall_seconds=wall,
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


def judge_for(compiled: object, tokenizer: Tokenizer) -> Judge:
    """Bind a compiled shield to a tokenizer's vocabulary (special tokens are never text).

    Args:
        compiled: a :class:`shield.Shield` from ``shield.compile``.
        tokenizer: the model's tokenizer.

    Returns:
        The :class:`~shield.judge.Judge` the decoders use.

    Example:
        >>> judge = judge_for(shield.compile(specs.load("specs/library/toxicity.toml")), tokenizer)  # doctest: +SKIP
    """
    return Judge(compiled, compiled.lift(tokenizer.backend), decode=None)  # type: ignore[attr-defined]
