"""The host side of a decoding batch: prompts in, a prefilled state out, results back.

:func:`prepare` turns prompts into a prefilled :class:`DecodeState` (chat rendering, a forced
response start, per-row seeds, padding to the mesh, sharding); :func:`collect` turns a finished
state into :class:`GenerationResult` values with the fields of ``shield generate --json``. Plain
decoding (:mod:`decoders.plain`) and shielded decoding (:mod:`decoders.shielded`) share both and
differ only in the loop in between.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from decoders.config import DecodeConfig
from decoders.loading import Model
from decoders.model import Params
from decoders.options import DecodeOptions
from decoders.sampling import SamplingConfig
from decoders.sharding import batch_mesh, data_size, shard_params, shard_state
from decoders.state import FINISH_LENGTH, FINISH_REASONS, DecodeState, finish_rows
from decoders.state import init_state as _init_state
from decoders.step import attention_window
from decoders.step import prefill as _prefill
from decoders.tokenizer import Tokenizer
from shield.errors import BudgetError, DecoderError
from shield.result import FinishReason, GenerationResult, GenerationStats

__all__ = ["Prepared", "collect", "prepare", "prepare_run", "stop_cut"]

_SLOT_QUANTUM = 64  # cache sizes are rounded up to this, so similar requests share compilations
#: The prefill's token width is rounded up to a multiple of this, so prompts of nearby lengths
#: share one compiled prefill (padding is never fed as a row's tokens: ``lengths`` cut it off).
PROMPT_QUANTUM = 16
#: Rows with identical tokens (the K samples of one prompt) are prefilled once and their cache
#: copied; False prefills every row (tests compare the two).
SHARE_PROMPTS = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prepared:
    """A prefilled state plus what :func:`collect` needs to read it back."""

    state: DecodeState
    decode_config: DecodeConfig
    rows: int  # real rows; the rest pad the batch to the mesh
    forced: int  # tokens of the forced prefill, at the start of every response
    limit: jax.Array  # [B] int32 response length at which each row finishes
    mesh: Mesh | None


def prepare(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    options: DecodeOptions | None = None,
    /,
    **fields: Any,
) -> Prepared:
    """Tokenize and prefill ``prompts``.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row.
        options: the decoding options (or give their fields as keyword arguments); ``mesh``
            here must be a mesh or None.
        **fields: fields of :class:`~decoders.options.DecodeOptions`.

    Returns:
        The prefilled batch.

    Raises:
        DecoderError: no prompts, an empty prompt, or seeds that do not match the prompts.
        BudgetError: prompt plus response does not fit ``max_slots`` or the model's context.
    """
    options = DecodeOptions.build(options, **fields)
    max_new_tokens, prefill, max_slots = options.max_new_tokens, options.prefill, options.max_slots
    mesh: Mesh | None = options.mesh
    if not prompts or max_new_tokens < 1:
        raise DecoderError(
            f"generate: expected at least one prompt and max_new_tokens >= 1, received "
            f"{len(prompts)} prompts and max_new_tokens={max_new_tokens}."
        )
    seeds = options.seeds(len(prompts))
    texts = [
        tokenizer.render_chat([{"role": "user", "content": p}]) if options.chat else p
        for p in prompts
    ]
    prompt_ids = [tokenizer.encode(text) for text in texts]
    forced = tokenizer.encode(prefill, add_bos=False) if prefill else []
    if min(len(ids) for ids in prompt_ids) == 0:
        raise DecoderError("generate: a prompt encodes to no tokens; pass non-empty prompts.")
    longest = max(len(ids) for ids in prompt_ids) + len(forced)
    needed = longest + max_new_tokens
    quantised = -(-needed // _SLOT_QUANTUM) * _SLOT_QUANTUM
    slots = min(quantised, model.config.max_position) if max_slots is None else max_slots
    if needed > slots:
        raise BudgetError(
            f"generate: prompt ({longest} tokens with the prefill) plus max_new_tokens "
            f"({max_new_tokens}) needs {needed} cache slots, but only {slots} are available "
            "(max_slots or the model's context); shorten the prompt or lower max_new_tokens."
        )
    devices = 1 if mesh is None else data_size(mesh)
    batch = -(-len(prompts) // devices) * devices
    pad = batch - len(prompts)
    rows = [ids + forced for ids in prompt_ids] + [prompt_ids[0] + forced] * pad
    decode_config = DecodeConfig(batch_size=batch, max_slots=slots)
    row_seeds = np.array(seeds + seeds[:1] * pad, np.uint32)
    if SHARE_PROMPTS and mesh is None and len(set(map(tuple, rows))) < batch:
        state = _prefill_shared(model, rows, slots, row_seeds)
    else:
        state = _init_state(model.config, decode_config, row_seeds)
        params = model.params
        if mesh is not None:
            state, params = shard_state(state, mesh), shard_params(params, mesh)
        tokens, lengths = _padded(rows, slots)
        window = attention_window(int(lengths.max()), slots)
        state = _prefill(
            params,
            model.config,
            state,
            jax.device_put(tokens),
            jax.device_put(lengths),
            window=window,
        )
    # Host arrays put on the device (jnp on host data compiles one small program per shape).
    starts = np.asarray([len(ids) for ids in prompt_ids] + [len(prompt_ids[0])] * pad, np.int32)
    state = dataclasses.replace(state, start=jax.device_put(starts))
    padding = np.arange(batch) >= len(prompts)  # [B]
    state = finish_rows(state, FINISH_LENGTH, jax.device_put(padding))
    limit = jax.device_put(np.full((batch,), len(forced) + max_new_tokens, np.int32))
    return Prepared(
        state=state,
        decode_config=decode_config,
        rows=len(prompts),
        forced=len(forced),
        limit=limit,
        mesh=mesh,
    )


def _padded(rows: Sequence[list[int]], slots: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` right-padded to a multiple of :data:`PROMPT_QUANTUM` (at most ``slots`` wide)."""
    lengths = np.array([len(r) for r in rows], np.int32)  # [B]
    width = min(-(-int(lengths.max()) // PROMPT_QUANTUM) * PROMPT_QUANTUM, slots)
    tokens = np.zeros((len(rows), max(width, int(lengths.max()))), np.int32)  # [B, T]
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = row
    return tokens, lengths


def _prefill_shared(
    model: Model, rows: Sequence[list[int]], slots: int, seeds: np.ndarray
) -> DecodeState:
    """A prefilled state of ``rows`` that feeds identical rows once (no mesh).

    The distinct rows are prefilled as a batch of their own; every row then takes its distinct
    row's state (buffer, cursor, start, cache, counters) and keeps its own seed.

    Args:
        model: the model.
        rows: each row's token ids; some rows are equal (the K samples of one prompt).
        slots: the cache size.
        seeds: ``[B]`` uint32, each row's sampling seed.

    Returns:
        The prefilled state of ``len(rows)`` rows.
    """
    distinct = list(dict.fromkeys(tuple(r) for r in rows))
    tokens, lengths = _padded([list(r) for r in distinct], slots)
    fed = _init_state(model.config, DecodeConfig(batch_size=len(distinct), max_slots=slots))
    window = attention_window(int(lengths.max()), slots)
    fed = _prefill(
        model.params,
        model.config,
        fed,
        jax.device_put(tokens),
        jax.device_put(lengths),
        window=window,
    )
    position = {row: index for index, row in enumerate(distinct)}
    take = jnp.asarray([position[tuple(r)] for r in rows], jnp.int32)  # [B] -> distinct row
    # Every field is gathered (a fresh buffer each: the decode loop donates the state).
    fields: dict[str, Any] = {
        f.name: getattr(fed, f.name)[take] for f in dataclasses.fields(fed) if f.name != "cache"
    }
    fields["cache"] = dataclasses.replace(fed.cache, k=fed.cache.k[:, take], v=fed.cache.v[:, take])
    fields["seed"] = jax.device_put(seeds)
    return dataclasses.replace(fed, **fields)


def prepare_run(
    model: Model, tokenizer: Tokenizer, prompts: Sequence[str], options: DecodeOptions
) -> tuple[SamplingConfig, Prepared, Params]:
    """What every decoding path needs first: the sampling rule, the prefilled batch, the weights
    (sharded over the mesh when there is one, see :mod:`decoders.sharding`).

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row.
        options: the decoding options (``mesh=True`` picks all local devices).

    Returns:
        ``(sampling, prepared, params)``.
    """
    sampling = SamplingConfig(
        temperature=options.temperature, top_p=options.top_p, top_k=options.top_k
    )
    chosen = batch_mesh() if options.mesh is True else (options.mesh or None)
    prepared = prepare(model, tokenizer, prompts, dataclasses.replace(options, mesh=chosen))
    params = model.params if chosen is None else shard_params(model.params, chosen)
    return sampling, prepared, params


def stop_cut(tokenizer: Tokenizer, ids: list[int], stop: Sequence[str]) -> int | None:
    """The shortest prefix length of ``ids`` whose text contains a stop string, or None.

    Args:
        tokenizer: decodes the ids.
        ids: a response's token ids.
        stop: the stop strings.

    Returns:
        The length of the shortest prefix whose text contains one, or None.
    """

    def text(prefix: list[int]) -> str:
        return tokenizer.decode(prefix, skip_special_tokens=True)

    if not stop or not any(s in text(ids) for s in stop):
        return None
    low, high = 1, len(ids)  # the predicate is monotone in the prefix length
    while low < high:
        middle = (low + high) // 2
        if any(s in text(ids[:middle]) for s in stop):
            high = middle
        else:
            low = middle + 1
    return low


def collect(
    prepared: Prepared,
    state: DecodeState,
    tokenizer: Tokenizer,
    *,
    wall_seconds: float,
    stop: Sequence[str] = (),
) -> list[GenerationResult]:
    """Read the finished ``state`` back into one :class:`GenerationResult` per real row.

    Args:
        prepared: what :func:`prepare` returned.
        state: the finished state.
        tokenizer: decodes the responses.
        wall_seconds: the wall time of the call, reported in every row's stats.
        stop: stop strings; a response is cut after the token that completes one.

    Returns:
        One result per prompt, in order.
    """
    # Everything but the cache, which stays on the devices (across processes its heads are split
    # between hosts, so no process could fetch it whole).
    rows = {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name != "cache"}
    host = SimpleNamespace(**jax.device_get(rows))
    results = []
    for b in range(prepared.rows):
        ids = [int(t) for t in host.tokens[b, host.start[b] : host.cursor[b]]]
        generated = int(host.generated[b])
        # The EOS step is counted in `generated` but never appended: it is the one produced
        # token that is missing from the buffer.
        ended_by_eos = generated + prepared.forced - int(host.discarded[b]) > len(ids)
        reason = FINISH_REASONS.get(int(host.finish[b]), "length")  # plain rows end by length
        cut = stop_cut(tokenizer, ids, stop)
        if cut is not None:
            ids, reason = ids[:cut], "eos"
        stats = GenerationStats.count(
            generated=generated,
            forced=prepared.forced,
            kept=len(ids),
            ended_by_eos=ended_by_eos,
            refused=False,
            rollbacks=int(host.rollbacks[b]),
            max_rollback=int(host.max_rollback[b]),
            wall_seconds=wall_seconds,
        )
        text = tokenizer.decode(ids, skip_special_tokens=True)
        results.append(
            GenerationResult(
                text=text, finish_reason=cast(FinishReason, reason), tokens=tuple(ids), stats=stats
            )
        )
    return results
