"""``generate``: plain decoding of a batch of prompts, and the host-side helpers around it.

:func:`prepare` turns prompts into a prefilled :class:`DecodeState` (chat rendering, a forced
response start, per-row seeds, padding to the mesh, sharding); :func:`collect` turns a finished
state into :class:`GenerationResult` values with the fields of ``shield generate --json``.
A shielded strategy reuses both and replaces only the loop in between.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from decoders.config import DecodeConfig
from decoders.loading import Model
from decoders.model import Params
from decoders.sampling import SamplingConfig
from decoders.sharding import batch_mesh, replicate, shard_state
from decoders.state import FINISH_CACHE_FULL, FINISH_EOS, FINISH_LENGTH, DecodeState, finish
from decoders.state import init_state as _init_state
from decoders.step import prefill as _prefill
from decoders.step import run
from decoders.tokenizer import Tokenizer
from shield.errors import BudgetError, DecoderError
from shield.result import FinishReason, GenerationResult, GenerationStats

__all__ = [
    "FINISH_REASONS",
    "GenerationResult",
    "GenerationStats",
    "Prepared",
    "collect",
    "generate_plain",
    "prepare",
    "prepare_run",
]

#: JSON names of the finish codes (strategies add ``budget`` and ``refused``).
FINISH_REASONS: dict[int, str] = {
    FINISH_EOS: "eos",
    FINISH_LENGTH: "length",
    FINISH_CACHE_FULL: "length",
}
_SLOT_QUANTUM = 64  # cache sizes are rounded up to this, so similar requests share compilations


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prepared:
    """A prefilled state plus what :func:`collect` needs to read it back."""

    state: DecodeState
    decode_config: DecodeConfig
    rows: int  # real rows; the rest pad the batch to the mesh
    limit: jax.Array  # [B] int32 response length at which each row finishes
    mesh: Mesh | None


def prepare(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    seed: int | Sequence[int] = 0,
    chat: bool = False,
    prefill: str | None = None,
    max_slots: int | None = None,
    mesh: Mesh | None = None,
) -> Prepared:
    """Tokenize and prefill ``prompts``; see :func:`generate` for the arguments.

    Raises:
        DecoderError: no prompts, an empty prompt, or seeds that do not match the prompts.
        BudgetError: prompt plus response does not fit ``max_slots`` or the model's context.
    """
    if not prompts or max_new_tokens < 1:
        raise DecoderError(
            f"generate: expected at least one prompt and max_new_tokens >= 1, received "
            f"{len(prompts)} prompts and max_new_tokens={max_new_tokens}."
        )
    seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
    if len(seeds) != len(prompts):
        raise DecoderError(
            f"generate: expected one seed per prompt ({len(prompts)}), received {len(seeds)}."
        )
    texts = [
        tokenizer.render_chat([{"role": "user", "content": p}]) if chat else p for p in prompts
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
    devices = 1 if mesh is None else int(mesh.devices.size)
    batch = -(-len(prompts) // devices) * devices
    pad = batch - len(prompts)
    rows = [ids + forced for ids in prompt_ids] + [prompt_ids[0] + forced] * pad
    lengths = np.array([len(r) for r in rows], np.int32)
    tokens = np.zeros((batch, int(lengths.max())), np.int32)
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = row
    decode_config = DecodeConfig(batch_size=batch, max_slots=slots)
    state = _init_state(model.config, decode_config, np.array(seeds + seeds[:1] * pad, np.uint32))
    params = model.params
    if mesh is not None:
        state, params = shard_state(state, mesh), replicate(params, mesh)
    window = min(max(64, 1 << int(lengths.max() - 1).bit_length()), slots)
    state = _prefill(
        params, model.config, state, jnp.asarray(tokens), jnp.asarray(lengths), window=window
    )
    starts = jnp.asarray([len(ids) for ids in prompt_ids] + [len(prompt_ids[0])] * pad, jnp.int32)
    state = dataclasses.replace(state, start=starts)
    padding = jnp.arange(batch) >= len(prompts)  # [B]
    state = finish(state, FINISH_LENGTH, padding)
    limit = jnp.full((batch,), len(forced) + max_new_tokens, jnp.int32)
    return Prepared(
        state=state, decode_config=decode_config, rows=len(prompts), limit=limit, mesh=mesh
    )


def prepare_run(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float | None,
    top_k: int | None,
    seed: int | Sequence[int],
    chat: bool,
    prefill: str | None,
    max_slots: int | None,
    mesh: Mesh | bool | None,
) -> tuple[SamplingConfig, Prepared, Params]:
    """What every decoding path needs first: the sampling rule, the prefilled batch, the weights
    (replicated over the mesh when there is one). See :func:`generate_plain` for the arguments."""
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k)
    chosen = batch_mesh() if mesh is True else (mesh or None)
    prepared = prepare(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed, chat=chat,
        prefill=prefill, max_slots=max_slots, mesh=chosen,
    )  # fmt: skip
    params = model.params if chosen is None else replicate(model.params, chosen)
    return sampling, prepared, params


def _stop_cut(tokenizer: Tokenizer, ids: list[int], stop: Sequence[str]) -> int | None:
    """The shortest prefix length of ``ids`` whose text contains a stop string, or None."""

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
    """Read the finished ``state`` back into one :class:`GenerationResult` per real row."""
    host = jax.device_get(state)
    results = []
    for b in range(prepared.rows):
        ids = [int(t) for t in host.tokens[b, host.start[b] : host.cursor[b]]]
        reason = FINISH_REASONS.get(int(host.finish[b]), "length")
        cut = _stop_cut(tokenizer, ids, stop)
        if cut is not None:
            ids, reason = ids[:cut], "eos"
        stats = GenerationStats(
            generated_tokens=int(host.generated[b]),
            kept_tokens=len(ids),
            discarded_tokens=int(host.discarded[b]),
            rollbacks=int(host.rollbacks[b]),
            max_rollback_tokens=int(host.max_rollback[b]),
            wall_seconds=wall_seconds,
        )
        text = tokenizer.decode(ids, skip_special_tokens=True)
        results.append(
            GenerationResult(
                text=text, finish_reason=cast(FinishReason, reason), tokens=tuple(ids), stats=stats
            )
        )
    return results


def generate_plain(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float | None = 0.9,
    top_k: int | None = None,
    seed: int | Sequence[int] = 0,
    chat: bool = False,
    prefill: str | None = None,
    stop: Sequence[str] | None = None,
    max_slots: int | None = None,
    mesh: Mesh | bool | None = None,
    chunk: int = 32,
    stream: Callable[[int, str], None] | None = None,
) -> list[GenerationResult]:
    """Plain decoding (strategy ``none``) of a batch of prompts of different lengths.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row.
        max_new_tokens: tokens to generate after the prompt and the prefill.
        temperature: 0 for greedy decoding.
        top_p: nucleus mass (None: off). top_k: top-k cut (None: off).
        seed: one seed for every row or one per prompt; a row's tokens depend only on its own
            prompt and seed, never on the rest of the batch.
        chat: render each prompt as a user turn of the chat template.
        prefill: text forced at the start of every response (part of the returned response).
        stop: strings that end a response; it is cut after the token that completes one.
        max_slots: cache slots per row (default: just enough, rounded up to 64).
        mesh: a device mesh to shard the batch over; True for all local devices.
        chunk: decode steps per jitted chunk.
        stream: called as ``stream(row, text)`` with each newly final piece of a response
            (after every chunk; an incomplete UTF-8 character is held back).

    Returns:
        One :class:`GenerationResult` per prompt, in order.

    Raises:
        DecoderError: invalid arguments. BudgetError: the request does not fit the cache.

    Example:
        >>> model, tok = load_model()  # doctest: +SKIP
        >>> [r.text for r in generate(model, tok, ["Hi"], max_new_tokens=8, temperature=0)]  # doctest: +SKIP
    """
    began = time.perf_counter()
    sampling, prepared, params = prepare_run(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, top_k=top_k, seed=seed, chat=chat, prefill=prefill, max_slots=max_slots,
        mesh=mesh,
    )  # fmt: skip
    stops = tuple(stop or ())
    released = [0] * prepared.rows  # characters of each response already streamed

    def after_chunk(state: DecodeState) -> DecodeState:
        tokens, starts, cursors, done = jax.device_get(
            (state.tokens, state.start, state.cursor, state.done)
        )
        hits = []
        for b in range(state.batch_size):
            ids = [int(t) for t in tokens[b, starts[b] : cursors[b]]]
            hits.append(not done[b] and _stop_cut(tokenizer, ids, stops) is not None)
            if stream is not None and b < prepared.rows:
                text = tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")
                if len(text) > released[b]:
                    stream(b, text[released[b] :])
                    released[b] = len(text)
        return finish(state, FINISH_EOS, jnp.asarray(hits))

    state = run(
        params,
        model.config,
        sampling,
        prepared.state,
        max_new_tokens=max_new_tokens,
        limit=prepared.limit,
        chunk=chunk,
        on_chunk=after_chunk if stops or stream is not None else None,
    )
    results = collect(
        prepared, state, tokenizer, wall_seconds=time.perf_counter() - began, stop=stops
    )
    if stream is not None:
        for row, result in enumerate(results):
            if len(result.text) > released[row]:
                stream(row, result.text[released[row] :])
    return results
