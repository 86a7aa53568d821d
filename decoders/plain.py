"""Plain decoding (strategy ``none``): prepare the batch, run the jitted loop, collect.

Streaming releases each row's text after every chunk (plain decoding never takes text back), and
stop strings end a row at the chunk boundary after the token that completes one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from decoders.batch import collect, prepare_run, stop_cut
from decoders.loading import Model
from decoders.options import DecodeOptions
from decoders.state import FINISH_EOS, DecodeState, finish
from decoders.step import run
from decoders.tokenizer import Tokenizer
from shield.result import GenerationResult

__all__ = ["generate_plain"]


def generate_plain(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    options: DecodeOptions | None = None,
    /,
    *,
    stop: Sequence[str] | None = None,
    **fields: Any,
) -> list[GenerationResult]:
    """Plain decoding (strategy ``none``) of a batch of prompts of different lengths.

    Args:
        model: from :func:`decoders.load_model`.
        tokenizer: its tokenizer.
        prompts: one text per row; a row's tokens depend only on its own prompt and seed, never
            on the rest of the batch.
        options: the decoding options (or give their fields as keyword arguments); a stream
            receives each newly final piece of a response after every chunk (an incomplete
            UTF-8 character is held back).
        stop: strings that end a response; it is cut after the token that completes one.
        **fields: fields of :class:`~decoders.options.DecodeOptions`.

    Returns:
        One :class:`GenerationResult` per prompt, in order.

    Raises:
        DecoderError: invalid arguments. BudgetError: the request does not fit the cache.

    Example:
        >>> model, tok = load_model()  # doctest: +SKIP
        >>> [r.text for r in generate(model, tok, ["Hi"], max_new_tokens=8, temperature=0)]  # doctest: +SKIP
    """
    began = time.perf_counter()
    options = DecodeOptions.build(options, **fields)
    sampling, prepared, params = prepare_run(model, tokenizer, prompts, options)
    stream = options.stream
    stops = tuple(stop or ())
    released = [0] * prepared.rows  # characters of each response already streamed

    def after_chunk(state: DecodeState) -> DecodeState:
        tokens, starts, cursors, done = jax.device_get(
            (state.tokens, state.start, state.cursor, state.done)
        )
        hits = []
        for b in range(state.batch_size):
            ids = [int(t) for t in tokens[b, starts[b] : cursors[b]]]
            hits.append(not done[b] and stop_cut(tokenizer, ids, stops) is not None)
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
        max_new_tokens=options.max_new_tokens,
        limit=prepared.limit,
        chunk=options.chunk,
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
