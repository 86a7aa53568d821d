"""``model.generate(..., custom_generate=shielded_decoding(...))`` and committed-text streaming."""

from __future__ import annotations

import threading
from functools import cache

import numpy as np
import pytest
import torch

from adapters import huggingface as hf
from shield.errors import DecoderError
from shield.reference import ReferenceSettings, reference_generate
from tests.adapters.support import full_logits, scripted_llama, token_encoder
from tests.decoders.differential_support import (
    EOS,
    MAX_NEW,
    RandomChooser,
    Scenario,
    comparable,
    desired_logits,
    draw_scenario,
    judges,
    tokenizer,
)


def _encode(text: str) -> list[int]:
    return tokenizer().encode(text, add_bos=False)


@cache
def rolling_back() -> tuple[Scenario, torch.nn.Module]:
    """The first seeded greedy ``backtrack`` scenario (stop on exhaustion, no prefill) whose
    first row rolls back and still streams before its end."""
    for seed in range(200):  # fuel: seeded scenarios
        scenario = draw_scenario(
            RandomChooser(seed), strategies=("backtrack",), samplings=((0.0, None),)
        )
        if scenario is None or scenario.prefill or scenario.policy.on_exhausted != "stop":
            continue
        model = scripted_llama(desired_logits(scenario).astype(np.float32), EOS)
        judge, _ = judges(scenario)
        pieces: list[str] = []
        prompt = tokenizer().encode(scenario.prompts[0])
        result = hf.generate(
            model,
            [prompt],
            judge=judge,
            max_new_tokens=MAX_NEW,
            eos_token_id=EOS,
            stream=lambda row, text, pieces=pieces: pieces.append(text),
        )[0]
        if result.stats.rollbacks and len(pieces) > 1 and result.finish_reason != "budget":
            return scenario, model
    raise AssertionError("no seeded scenario rolls back and streams in pieces")


def test_custom_generate_equals_the_plain_function() -> None:
    scenario, model = rolling_back()
    judge, _ = judges(scenario)
    prompts = torch.tensor([tokenizer().encode(p) for p in scenario.prompts])
    decode = hf.shielded_decoding(judge, tokenizer=token_encoder(_encode))
    out = model.generate(
        input_ids=prompts,
        custom_generate=decode,
        max_new_tokens=MAX_NEW,
        do_sample=False,
        return_dict_in_generate=True,
    )
    plain = hf.generate(
        model, prompts, judge=judge, max_new_tokens=MAX_NEW, tokenizer=token_encoder(_encode)
    )
    assert isinstance(out, hf.ShieldedGenerateOutput)
    assert out.results[0].stats.rollbacks > 0, "the scenario: a rollback"
    assert [comparable(r) for r in out.results] == [comparable(r) for r in plain]
    for row, result in zip(out.sequences.tolist(), plain, strict=True):
        width = prompts.shape[1]
        assert tuple(row[width : width + len(result.tokens)]) == result.tokens
        assert set(row[width + len(result.tokens) :]) <= {EOS[0]}
    sequences = model.generate(
        input_ids=prompts, custom_generate=decode, max_new_tokens=MAX_NEW, do_sample=False
    )
    assert torch.equal(sequences, out.sequences)


def test_streamed_pieces_equal_the_reference_and_are_never_taken_back() -> None:
    scenario, model = rolling_back()
    judge, _ = judges(scenario)
    prompt = tokenizer().encode(scenario.prompts[0])
    expected: list[str] = []
    reference = reference_generate(
        lambda prefix: full_logits(model, prefix),
        prompt,
        judge=judge,
        eos_id=EOS,  # type: ignore[arg-type]
        settings=ReferenceSettings(strategy="backtrack", max_new_tokens=MAX_NEW, seed=0),
        stream=expected.append,
    )
    streamer = hf.CommittedTextStreamer(timeout=60)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.extend(streamer))
    reader.start()
    out = model.generate(
        input_ids=torch.tensor([prompt]),
        custom_generate=hf.shielded_decoding(judge),
        max_new_tokens=MAX_NEW,
        do_sample=False,
        return_dict_in_generate=True,
        stream=streamer,
    )
    reader.join(timeout=60)
    assert reference.stats.rollbacks > 0 and len(expected) > 1, (
        "the scenario: streamed, rolled back"
    )
    assert received == expected
    assert "".join(received) == out.results[0].text == reference.text


@pytest.mark.parametrize(
    ("arguments", "refused"),
    [
        (dict(num_beams=2), "num_beams=2"),
        (dict(repetition_penalty=1.3), "RepetitionPenaltyLogitsProcessor"),
        (dict(max_time=30.0), "MaxTimeCriteria"),
    ],
)
def test_settings_the_loop_does_not_implement_are_refused(arguments: dict, refused: str) -> None:
    scenario, model = rolling_back()
    judge, _ = judges(scenario)
    with pytest.raises(DecoderError, match=refused):
        model.generate(
            input_ids=torch.tensor([tokenizer().encode(scenario.prompts[0])]),
            custom_generate=hf.shielded_decoding(judge),
            max_new_tokens=4,
            **arguments,
        )


def test_a_transformers_streamer_takes_one_row_only() -> None:
    scenario, model = rolling_back()
    judge, _ = judges(scenario)
    with pytest.raises(DecoderError, match="one row"):
        hf.generate(
            model, [[5], [6]], judge=judge, eos_token_id=EOS, stream=hf.CommittedTextStreamer()
        )
