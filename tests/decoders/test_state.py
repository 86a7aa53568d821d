"""Laws of the decode state on a tiny random model: rewind equivalence, batch = single row,
snapshot/rewind bookkeeping, finishing on EOS and on a full cache."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.loading import Model
from decoders.sampling import SamplingConfig
from decoders.state import (
    FINISH_CACHE_FULL,
    FINISH_EOS,
    FINISH_LENGTH,
    RUNNING,
    append,
    rewind,
    snapshot,
)
from decoders.step import decode_logits, plain_step, run
from tests.decoders.conftest import prefilled, with_eos

GREEDY = SamplingConfig(temperature=0.0)
ATOL = 1e-4  # float32: a prefill and step-by-step decoding sum in different orders


def greedy_tokens(model: Model, prompt: list[int], steps: int) -> list[int]:
    state = prefilled(with_eos(model, ()), [prompt])
    state = run(model.params, with_eos(model, ()).config, GREEDY, state, max_new_tokens=steps)
    return [int(t) for t in state.tokens[0, len(prompt) : int(state.cursor[0])]]


@settings(max_examples=8)
@given(
    prompt=st.lists(st.integers(3, 200), min_size=1, max_size=12),
    steps=st.integers(1, 10),
    back=st.integers(0, 10),
)
def test_rewind_then_decode_equals_fresh_prefill(
    tiny_model_any: Model, prompt: list[int], steps: int, back: int
) -> None:
    model = with_eos(tiny_model_any, ())
    state = prefilled(model, [prompt])
    for _ in range(steps):
        state = plain_step(model.params, model.config, GREEDY, state, jnp.int32(99), 64)
    target = max(len(prompt), int(state.cursor[0]) - back)
    rewound = rewind(state, jnp.array([target], jnp.int32))
    after_rewind, _ = decode_logits(model.params, model.config, rewound, window=64)
    prefix = [int(t) for t in state.tokens[0, :target]]
    fresh, _ = decode_logits(model.params, model.config, prefilled(model, [prefix]), window=64)
    np.testing.assert_allclose(after_rewind, fresh, atol=ATOL, rtol=ATOL)
    # Re-feeding the same tokens after the rewind reproduces the original continuation.
    again = rewound
    for _ in range(int(state.cursor[0]) - target):
        again = plain_step(model.params, model.config, GREEDY, again, jnp.int32(99), 64)
    np.testing.assert_array_equal(
        again.tokens[0, : again.cursor[0]], state.tokens[0, : state.cursor[0]]
    )


def test_batch_rows_equal_single_rows(tiny_model_any: Model) -> None:
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12], [13, 14, 15]]
    model = with_eos(tiny_model_any, ())
    sampling = SamplingConfig(temperature=1.0, top_p=0.9)
    batch = run(
        model.params,
        model.config,
        sampling,
        prefilled(model, prompts, seeds=[1, 2, 3]),
        max_new_tokens=12,
        chunk=5,
    )
    for row, prompt in enumerate(prompts):
        single = run(
            model.params,
            model.config,
            sampling,
            prefilled(model, [prompt], seeds=[row + 1]),
            max_new_tokens=12,
            chunk=7,
        )
        np.testing.assert_array_equal(
            batch.tokens[row, : batch.cursor[row]], single.tokens[0, : single.cursor[0]]
        )


def test_snapshot_and_rewind_bookkeeping(tiny_model: Model) -> None:
    model = with_eos(tiny_model, ())
    state = prefilled(model, [[5, 6, 7], [8, 9]])
    mark = snapshot(state)
    for token in (20, 21, 22):
        state = append(state, jnp.array([token, token], jnp.int32))
    rows = jnp.array([True, False])
    back = rewind(state, mark, rows)
    assert back.cursor.tolist() == [3, 5]
    assert back.attempt.tolist() == [1, 0]
    assert back.discarded.tolist() == [3, 0]
    assert back.rollbacks.tolist() == [1, 0]
    assert back.max_rollback.tolist() == [3, 0]
    # Never below the prompt, never forward.
    assert rewind(state, jnp.array([0, 99], jnp.int32)).cursor.tolist() == [3, 5]
    assert rewind(state, mark, fresh_attempt=False).attempt.tolist() == [0, 0]


def test_rewind_costs_no_copy_of_the_cache(tiny_model: Model) -> None:
    state = prefilled(tiny_model, [[5, 6, 7]])
    back = rewind(state, snapshot(state))
    assert back.cache is state.cache and back.tokens is state.tokens


def test_eos_as_first_token_finishes_empty(tiny_model: Model) -> None:
    state = prefilled(tiny_model, [[5, 6, 7]])
    logits, _ = decode_logits(tiny_model.params, tiny_model.config, state, window=64)
    first = int(jnp.argmax(logits[0]))
    model = with_eos(tiny_model, (first,))
    done = run(model.params, model.config, GREEDY, prefilled(model, [[5, 6, 7]]), max_new_tokens=8)
    assert int(done.finish[0]) == FINISH_EOS
    assert int(done.cursor[0]) == 3 and int(done.generated[0]) == 1


def test_length_and_full_cache_finish_rows(tiny_model: Model) -> None:
    model = with_eos(tiny_model, ())
    done = run(model.params, model.config, GREEDY, prefilled(model, [[5, 6]]), max_new_tokens=4)
    assert int(done.finish[0]) == FINISH_LENGTH and int(done.cursor[0]) == 6
    full = run(
        model.params,
        model.config,
        GREEDY,
        prefilled(model, [[5, 6], [7]], slots=8),
        max_new_tokens=20,
    )
    assert full.finish.tolist() == [FINISH_CACHE_FULL, FINISH_CACHE_FULL]
    assert full.cursor.tolist() == [8, 8]


def test_fuel_bounds_the_loop(tiny_model: Model) -> None:
    model = with_eos(tiny_model, ())
    state = prefilled(model, [[5, 6]])
    done = run(model.params, model.config, GREEDY, state, max_new_tokens=3, limit=jnp.int32(50))
    assert int(done.cursor[0]) == 5 and int(done.finish[0]) == RUNNING


def test_greedy_continuation_is_deterministic(tiny_model: Model) -> None:
    assert greedy_tokens(tiny_model, [5, 6, 7], 6) == greedy_tokens(tiny_model, [5, 6, 7], 6)


def test_run_rejects_bad_bounds(tiny_model: Model) -> None:
    from shield.errors import DecoderError

    with pytest.raises(DecoderError, match="max_new_tokens"):
        run(
            tiny_model.params,
            tiny_model.config,
            GREEDY,
            prefilled(tiny_model, [[5]]),
            max_new_tokens=0,
        )


def test_chunking_does_not_change_tokens(tiny_model: Model) -> None:
    model = with_eos(tiny_model, ())
    sampling = SamplingConfig(temperature=0.8, top_k=20)
    a = run(
        model.params,
        model.config,
        sampling,
        prefilled(model, [[9, 8, 7]], seeds=[4]),
        max_new_tokens=9,
        chunk=2,
    )
    b = run(
        model.params,
        model.config,
        sampling,
        prefilled(model, [[9, 8, 7]], seeds=[4]),
        max_new_tokens=9,
        chunk=9,
    )
    np.testing.assert_array_equal(a.tokens[0, : a.cursor[0]], b.tokens[0, : b.cursor[0]])
    assert jax.device_get(a.cursor).tolist() == [12]
