"""The ``mask`` logits processor inside ``model.generate``: incremental state, left padding, beams,
``num_return_sequences``, EOS under END rules, and agreement with the reference machine's ``mask``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import shield
from adapters import huggingface as hf
from adapters.huggingface import mask as mask_module
from shield.errors import DecoderError
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.rules import LiteralRule, MatchOptions, RegexRule, WordsRule
from tests.adapters.support import scripted_llama, tiny_random
from tests.decoders.differential_support import (
    EOS,
    MAX_NEW,
    RandomChooser,
    desired_logits,
    draw_scenario,
    judges,
    run_reference,
    tokenizer,
)

#: A whole-word rule that only the next byte (or END) confirms, a plain literal, and capitals
#: (which the tiny random model's greedy text holds: the processor has something to change).
RULES = (
    WordsRule(id="cat", words=("cat",), match=MatchOptions(whole_word=True)),
    LiteralRule(id="ll", literal="ll"),
    RegexRule(id="upper", pattern="[A-Z]"),
)


@pytest.fixture(scope="module")
def judge() -> Judge:
    spec = SimpleNamespace(name="mask", rules=RULES, policy=BacktrackPolicy(refusal="no."))
    return Judge(shield.compile(spec), shield.compile(spec).lift(tokenizer().backend))


def _ids(text: str) -> list[int]:
    return tokenizer().encode(text, add_bos=False)


def _walk(judge: Judge, response: list[int]) -> tuple[int, ...]:
    state = judge.initial()
    for token in response:
        if token in EOS:
            break
        state = judge.feed(state, token)[0]
    return state


@settings(deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.permutations(range(3)), st.lists(st.integers(3, 263), min_size=3, max_size=3)),
        min_size=1,
        max_size=12,
    ),
    prompt_width=st.integers(1, 4),
)
def test_incremental_state_equals_a_full_rewalk(
    judge: Judge, steps: list[tuple[list[int], list[int]]], prompt_width: int
) -> None:
    """Rows are reordered between calls as beam search does; each row's state must equal the walk
    of its whole response from the start."""
    processor = hf.ShieldLogitsProcessor(judge, eos_token_id=EOS)
    rows = torch.zeros((3, prompt_width), dtype=torch.long) + 7
    scores = torch.zeros((3, len(judge.token_bytes)))
    processor(rows, scores)
    for order, tokens in steps:
        rows = torch.cat([rows[list(order)], torch.tensor(tokens)[:, None]], dim=1)
        processor(rows, scores)
        expected = [_walk(judge, row[prompt_width:].tolist()) for row in rows]
        assert processor.row_states() == expected


def test_eos_is_masked_where_the_end_would_confirm_a_whole_word(judge: Judge) -> None:
    processor = hf.ShieldLogitsProcessor(judge, eos_token_id=EOS)
    prompt = torch.tensor([[5, 6], [5, 6]])
    scores = torch.zeros((2, len(judge.token_bytes)))
    processor(prompt, scores)
    cat, cats = _ids(" cat"), _ids(" cats")
    width = max(len(cat), len(cats))
    rows = [[*prompt[0].tolist(), *_ids(" " * (width - len(t))), *t] for t in (cat, cats)]
    processor.reset()
    processor(torch.tensor([r[: len(r) - width] for r in rows]), scores)
    for k in range(width, 0, -1):
        masked = processor(torch.tensor([r[: len(r) - k + 1] for r in rows]), scores)
    assert torch.isinf(masked[0, list(EOS)]).all(), "ending right after 'cat' must be masked"
    assert not torch.isinf(masked[1, list(EOS)]).any(), "ending after 'cats' is fine"
    letter = _ids("x")[0]
    assert torch.isinf(masked[0, letter]).item() is False, "'catx' is not the word cat"
    assert torch.isinf(masked[0, _ids(" ")[0]]).item(), "a space would confirm 'cat'"


def test_partial_continuation_is_refused(judge: Judge) -> None:
    processor = hf.ShieldLogitsProcessor(judge, eos_token_id=EOS)
    scores = torch.zeros((2, len(judge.token_bytes)))
    processor(torch.tensor([[5], [6]]), scores)
    processor(torch.tensor([[5, 40], [6, 41]]), scores)
    with pytest.raises(DecoderError, match="continues none"):
        processor(torch.tensor([[5, 40, 9], [6, 42, 9]]), scores)


@pytest.fixture(scope="module")
def random_llama() -> torch.nn.Module:
    model = tiny_random("llama", len(tokenizer().token_bytes))
    model.generation_config.eos_token_id = list(EOS)
    model.generation_config.pad_token_id = EOS[0]
    return model


def _clean(judge: Judge, response: list[int]) -> bool:
    state = judge.initial()
    for token in response:
        if token in EOS:
            return judge.end_violation([], state) is None
        state, violation = judge.feed(state, token)
        if violation is not None:
            return False
    return True


def test_left_padded_batch_equals_rows_alone_and_is_clean(
    judge: Judge, random_llama: torch.nn.Module
) -> None:
    prompts = [_ids("hello the"), _ids("ll")]
    width = max(map(len, prompts))
    ids = torch.tensor([[EOS[0]] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    processor = hf.ShieldLogitsProcessor(judge, eos_token_id=EOS)
    out = random_llama.generate(
        input_ids=ids, attention_mask=mask, logits_processor=[processor],
        do_sample=False, max_new_tokens=12,
    )  # fmt: skip
    plain = random_llama.generate(
        input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12
    )
    for b, prompt in enumerate(prompts):
        alone = random_llama.generate(
            input_ids=torch.tensor([prompt]), logits_processor=[hf.ShieldLogitsProcessor(judge, EOS)],
            do_sample=False, max_new_tokens=12,
        )  # fmt: skip
        response = out[b, width:].tolist()
        assert response[: alone.shape[1] - len(prompt)] == alone[0, len(prompt) :].tolist()
        assert _clean(judge, response)
    assert not _clean(judge, plain[0, width:].tolist()), "the scenario: plain decoding violates"


@pytest.mark.parametrize(("beams", "sample"), [(3, False), (1, True)])
def test_beams_and_return_sequences_are_clean(
    judge: Judge,
    random_llama: torch.nn.Module,
    beams: int,
    sample: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reorders = []
    parents = mask_module._parents
    monkeypatch.setattr(
        mask_module,
        "_parents",
        lambda *a: reorders.append(1) or parents(*a),  # type: ignore[func-returns-value]
    )
    prompt = torch.tensor([_ids("ll the"), _ids("xy")])
    arguments = dict(num_beams=beams, do_sample=sample, num_return_sequences=3, max_new_tokens=14)
    torch.manual_seed(0)
    plain = random_llama.generate(input_ids=prompt, **arguments)
    assert not all(_clean(judge, row) for row in plain[:, 2:].tolist()), "the scenario: violations"
    torch.manual_seed(0)
    processor = hf.ShieldLogitsProcessor(judge, eos_token_id=EOS)
    out = random_llama.generate(input_ids=prompt, logits_processor=[processor], **arguments)
    assert out.shape[0] == 6
    assert bool(reorders) == (beams > 1), "beam search reorders rows; sampling does not"
    for row in out[:, prompt.shape[1] :].tolist():
        assert _clean(judge, row), tokenizer().decode(row)


def test_processor_equals_the_reference_machines_mask() -> None:
    """Greedy ``model.generate`` with the processor takes the reference ``mask`` strategy's tokens."""
    compared = 0
    for seed in range(30):  # fuel: seeded scenarios until enough clean comparisons
        scenario = draw_scenario(
            RandomChooser(seed), strategies=("mask",), samplings=((0.0, None),)
        )
        if scenario is None or scenario.prefill:
            continue
        judge, _ = judges(scenario)
        table = desired_logits(scenario).astype(np.float32)
        model = scripted_llama(table, EOS)
        for row, text in enumerate(scenario.prompts):
            prompt = tokenizer().encode(text)
            reference = run_reference(scenario, judge, table.astype(np.float64), row)
            processor = hf.ShieldLogitsProcessor(judge, eos_token_id=EOS)
            out = model.generate(
                input_ids=torch.tensor([prompt]), logits_processor=[processor], do_sample=False,
                max_new_tokens=MAX_NEW,
            )  # fmt: skip
            produced = [t for t in out[0, len(prompt) :].tolist() if t not in EOS]
            assert tuple(produced) == reference.tokens
            compared += 1
    assert compared >= 10
