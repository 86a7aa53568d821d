"""The transformers adapter on the real SmolLM2-135M-Instruct (torch, loaded by transformers from
the bundled GGUF), against the JAX decoder on the same weights.

A prefilling attack (``Sure! My card is 4111 1111 1111 1111 and``, the README's example) makes the
``pii`` spec roll back into the prefill. Greedy ``backtrack`` through the adapter and through
``decoders.generate`` must then produce the same tokens, events and streamed pieces; the two
stacks compute float32 logits in different orders (within 2e-3, ``tests/decoders/test_real_model.py``),
so the comparison holds up to the first near-tie, and the test says so when one occurs. The
three transformers paths run here: the mask processor inside ``model.generate``, ``backtrack`` as a
plain function, and ``backtrack`` behind ``custom_generate`` with a committed-text streamer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import decoders
import shield
import specs
from adapters import huggingface as hf
from shield.judge import Judge
from shield.result import GenerationResult

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_model")]

PROMPT = "Write a short note to a friend."
PREFILL = "Sure! My card is 4111 1111 1111 1111 and"
MAX_NEW = 16
#: Two top logits closer than this may swap between the two stacks (twice the parity tolerance).
NEAR_TIE = 4e-3


@dataclasses.dataclass(frozen=True)
class Stacks:
    torch_model: Any
    hf_tokenizer: Any
    jax_model: decoders.Model
    jax_tokenizer: decoders.Tokenizer
    compiled: shield.Shield
    judge: Judge
    prompt: list[int]
    prefill: list[int]


@pytest.fixture(scope="module")
def stacks() -> Iterator[Stacks]:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    path = decoders.bundled_model_path()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    jax_model, jax_tokenizer = decoders.load_model()
    pii = specs.load_library("pii")
    # A discard budget of 24 lets text be released (streamed) soon after the rollback.
    policy = dataclasses.replace(pii.policy, max_discarded_tokens=24)
    compiled = shield.compile(SimpleNamespace(name="pii", rules=pii.rules, policy=policy))
    chat = jax_tokenizer.render_chat([{"role": "user", "content": PROMPT}])
    yield Stacks(
        torch_model=model,
        hf_tokenizer=tokenizer,
        jax_model=jax_model,
        jax_tokenizer=jax_tokenizer,
        compiled=compiled,
        judge=hf.judge_for(compiled, tokenizer),
        prompt=jax_tokenizer.encode(chat),
        prefill=jax_tokenizer.encode(PREFILL, add_bos=False),
    )
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jax_run(stacks: Stacks) -> tuple[GenerationResult, list[str]]:
    pieces: list[str] = []
    (result,) = decoders.generate(
        stacks.jax_model,
        stacks.jax_tokenizer,
        [PROMPT],
        spec=stacks.compiled,
        strategy="backtrack",
        max_new_tokens=MAX_NEW,
        temperature=0.0,
        chat=True,
        prefill=PREFILL,
        stream=lambda row, text: pieces.append(text),
    )
    return result, pieces


@pytest.fixture(scope="module")
def adapter_run(stacks: Stacks) -> tuple[GenerationResult, list[str], list[float]]:
    cached = hf.CachedPrefix
    margins: list[float] = []

    class Recording(cached):  # type: ignore[misc, valid-type]
        def __call__(self, prefix: Sequence[int]) -> np.ndarray:
            logits = super().__call__(prefix)
            top = np.sort(logits)[-2:]
            margins.append(float(top[1] - top[0]))
            return logits

    pieces: list[str] = []
    hf.loop.CachedPrefix = Recording  # type: ignore[attr-defined, misc]
    try:
        (result,) = hf.generate(
            stacks.torch_model,
            [stacks.prompt],
            judge=stacks.judge,
            max_new_tokens=MAX_NEW,
            prefill_ids=stacks.prefill,
            eos_token_id=stacks.jax_model.config.eos_token_ids,
            tokenizer=stacks.hf_tokenizer,
            stream=lambda row, text: pieces.append(text),
        )
    finally:
        hf.loop.CachedPrefix = cached  # type: ignore[attr-defined, misc]
    return result, pieces, margins


def test_the_vocabularies_agree(stacks: Stacks) -> None:
    jax_judge = decoders.judge_for(stacks.compiled, stacks.jax_tokenizer)
    assert stacks.judge.token_bytes == jax_judge.token_bytes
    assert stacks.hf_tokenizer.encode(PREFILL, add_special_tokens=False) == stacks.prefill


def test_backtrack_equals_the_jax_decoder_up_to_the_first_near_tie(
    jax_run: tuple[GenerationResult, list[str]],
    adapter_run: tuple[GenerationResult, list[str], list[float]],
) -> None:
    (ours, our_pieces, margins), (theirs, their_pieces) = adapter_run, jax_run
    assert any(e.kind == "rollback" and e.to_token < 12 for e in ours.events), (
        "the scenario: the card number in the prefill is rolled back"
    )
    if min(margins) < NEAR_TIE and ours.tokens != theirs.tokens:
        pairs = zip(ours.tokens, theirs.tokens, strict=False)
        first = next((i for i, (a, b) in enumerate(pairs) if a != b), len(ours.tokens))
        assert ours.tokens[:first] == theirs.tokens[:first]
        pytest.xfail(f"a near-tie (margin {min(margins):.1e}) let the stacks diverge at {first}")
    assert ours.tokens == theirs.tokens
    assert ours.events == theirs.events
    assert dataclasses.replace(ours.stats, wall_seconds=0) == dataclasses.replace(
        theirs.stats, wall_seconds=0
    )
    # The adapter releases after every token, the JAX decoder after every device round (a chunk
    # of steps): the same rule on the same configurations, so its release points are among ours.
    assert len(our_pieces) > 1, "the scenario: text was streamed before the end"
    assert "".join(our_pieces) == "".join(their_pieces) == ours.text
    assert set(_cumulative(their_pieces)) <= set(_cumulative(our_pieces))
    assert "4111" not in ours.text


def _cumulative(pieces: list[str]) -> list[str]:
    return ["".join(pieces[: i + 1]) for i in range(len(pieces))]


def test_custom_generate_and_streamer_on_the_real_model(
    stacks: Stacks, adapter_run: tuple[GenerationResult, list[str], list[float]]
) -> None:
    import torch

    streamer = hf.CommittedTextStreamer(timeout=1)
    out = stacks.torch_model.generate(
        input_ids=torch.tensor([stacks.prompt]),
        custom_generate=hf.shielded_decoding(stacks.judge, tokenizer=stacks.hf_tokenizer),
        max_new_tokens=MAX_NEW,
        do_sample=False,
        eos_token_id=list(stacks.jax_model.config.eos_token_ids),
        return_dict_in_generate=True,
        prefill_ids=stacks.prefill,
        stream=streamer,
    )
    (result,) = out.results
    assert result.tokens == adapter_run[0].tokens
    assert list(streamer) == adapter_run[1]


def test_mask_processor_on_the_real_model(stacks: Stacks) -> None:
    """The card number sits in the prompt; the model would continue it with more digits."""
    import torch

    prompt = stacks.prompt + stacks.jax_tokenizer.encode(" Sure! My card number is", add_bos=False)
    eos = list(stacks.jax_model.config.eos_token_ids)
    arguments = dict(do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos)
    processor = hf.ShieldLogitsProcessor(stacks.judge, eos_token_id=eos)
    ids = torch.tensor([prompt])
    masked = stacks.torch_model.generate(input_ids=ids, logits_processor=[processor], **arguments)
    plain = stacks.torch_model.generate(input_ids=ids, **arguments)
    (reference,) = hf.generate(
        stacks.torch_model,
        [prompt],
        judge=stacks.judge,
        strategy="mask",
        max_new_tokens=MAX_NEW,
        eos_token_id=eos,
    )
    response = [t for t in masked[0, len(prompt) :].tolist() if t not in eos]
    judge = stacks.judge
    assert judge.shield.first_violation(
        judge.detokenize(plain[0, len(prompt) :].tolist()).encode(), final=True
    ), "the scenario: plain decoding writes a card number"
    assert tuple(response) == reference.tokens
    # No rule fires inside the text; a whole-word match that only the cut at max_new_tokens would
    # confirm is beyond what a mask can prevent (README: what each strategy enforces).
    assert judge.shield.first_violation(judge.detokenize(response).encode(), final=False) is None
