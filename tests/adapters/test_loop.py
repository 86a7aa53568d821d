"""The transformers loop against the reference machine on scripted torch models.

Each example draws a scenario of the JAX differential test (:mod:`tests.decoders.differential_support`:
random specs of every rule kind, policies with small bounds, strategies, greedy and sampled
decoding, a prefill, a scripted bigram table biased toward the rules' texts) and runs
:func:`adapters.huggingface.generate` on a scripted ``LlamaForCausalLM`` with the model's own
cache, and :func:`shield.reference.reference_generate` with fresh, uncached forwards of the same
model. Both must agree row by row on the tokens, the text, the finish reason, the events and the
stats (all but the wall time). A deterministic companion checks that rollbacks, exhaustion and
refusals happen in the drawn scenarios, so the property is not vacuous.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from adapters import huggingface as hf
from shield.errors import DecoderError
from shield.reference import ReferenceSettings, reference_generate
from shield.result import GenerationResult
from tests.adapters.support import full_logits, scripted_llama, token_encoder
from tests.decoders.differential_support import (
    EOS,
    MAX_NEW,
    DrawChooser,
    RandomChooser,
    Scenario,
    comparable,
    desired_logits,
    draw_scenario,
    judges,
    tokenizer,
)


@cache
def _model(table_seed: int, scenario: Scenario) -> torch.nn.Module:
    return scripted_llama(desired_logits(scenario).astype(np.float32), EOS)


def _encode(text: str) -> list[int]:
    return tokenizer().encode(text, add_bos=False)


def run_both(scenario: Scenario) -> tuple[list[GenerationResult], list[GenerationResult]]:
    """The adapter on the batch, and the reference on each row (seed ``seeds[0] + row``)."""
    judge, _ = judges(scenario)
    model = _model(scenario.table_seed, scenario)
    prompts = [tokenizer().encode(p) for p in scenario.prompts]
    prefill = _encode(scenario.prefill) if scenario.prefill else []
    seed = scenario.seeds[0]
    adapter = hf.generate(
        model,
        torch.tensor(prompts),
        judge=judge,
        strategy=scenario.strategy,
        max_new_tokens=MAX_NEW,
        sampling=scenario.sampling,
        seed=seed,
        prefill_ids=prefill,
        eos_token_id=EOS,
        tokenizer=token_encoder(_encode),
    )
    reference = [
        reference_generate(
            lambda prefix: full_logits(model, prefix),
            prompt,
            judge=judge,
            eos_id=EOS,  # type: ignore[arg-type]
            settings=ReferenceSettings(
                strategy=scenario.strategy,
                max_new_tokens=MAX_NEW,
                sampling=scenario.sampling,
                seed=seed + row,
            ),
            prefill=prefill,
            encode=_encode,
        )
        for row, prompt in enumerate(prompts)
    ]
    return adapter, reference


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    scenario = draw_scenario(DrawChooser(draw))
    if scenario is None:
        reject()
    return scenario  # type: ignore[return-value]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_adapter_equals_reference(scenario: Scenario) -> None:
    adapter, reference = run_both(scenario)
    assert [comparable(r) for r in adapter] == [comparable(r) for r in reference]


def test_the_scenarios_reach_rollbacks_exhaustion_and_refusals() -> None:
    reached: Counter[str] = Counter()
    for seed in range(40):  # fuel: a fixed number of seeded scenarios
        scenario = draw_scenario(RandomChooser(seed))
        if scenario is None:
            continue
        adapter, reference = run_both(scenario)
        assert [comparable(r) for r in adapter] == [comparable(r) for r in reference]
        for result in adapter:
            reached[scenario.strategy] += 1
            reached["rollback"] += result.stats.rollbacks > 0
            reached["prefill rolled back"] += bool(
                scenario.prefill
                and any(
                    e.kind == "rollback" and e.to_token < len(_encode(scenario.prefill))
                    for e in result.events
                )
            )
            reached[result.finish_reason] += 1
    for needed in ("backtrack", "reset", "mask", "rollback", "budget", "refused", "eos", "length"):
        assert reached[needed] > 0, f"no scenario reached {needed!r}: {dict(reached)}"


def test_several_eos_ids_and_left_padding() -> None:
    scenario = draw_scenario(RandomChooser(5))
    assert scenario is not None
    judge, _ = judges(scenario)
    model = _model(scenario.table_seed, scenario)
    prompt = tokenizer().encode(scenario.prompts[0])
    padded = torch.tensor([[0, 0, *prompt], [*prompt[:1], *prompt[:1], *prompt]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1] * 5])[:, -padded.shape[1] :]
    rows = hf.prompt_rows(padded, mask)
    assert rows[0] == prompt and len(rows[1]) == padded.shape[1]
    alone = hf.generate(
        model, torch.tensor([prompt]), judge=judge, eos_token_id=EOS, max_new_tokens=6
    )
    batch = hf.generate(
        model, padded, attention_mask=mask, judge=judge, eos_token_id=EOS, max_new_tokens=6
    )
    assert comparable(batch[0]) == dataclasses.replace(comparable(alone[0]))


def test_right_padding_and_unknown_strategy_are_refused() -> None:
    with pytest.raises(DecoderError, match="left padding"):
        hf.prompt_rows(torch.tensor([[5, 6, 0]]), torch.tensor([[1, 1, 0]]))
    scenario = draw_scenario(RandomChooser(5))
    assert scenario is not None
    judge, _ = judges(scenario)
    with pytest.raises(DecoderError, match="strategy"):
        hf.generate(_model(scenario.table_seed, scenario), [[5]], judge=judge, strategy="beam")


def test_a_refusing_spec_needs_the_tokenizer() -> None:
    scenario = next(
        s
        for s in map(draw_scenario, map(RandomChooser, range(100)))
        if s is not None and s.policy.on_exhausted == "refuse"
    )
    judge, _ = judges(scenario)
    with pytest.raises(DecoderError, match="tokenizer"):
        hf.generate(_model(scenario.table_seed, scenario), [[5]], judge=judge, eos_token_id=EOS)
