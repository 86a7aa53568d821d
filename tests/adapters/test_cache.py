"""Rewinding the model's own KV cache: crop equivalence, other families, and uncroppable caches.

On tiny random models written by transformers (Llama and Qwen2: it is not Llama-only), the
logits after a prefix reached by extending and cropping one ``DynamicCache`` equal a fresh
forward's (float32 rounding aside), and ``backtrack`` through the adapter takes the reference
machine's decisions with uncached logits. A sliding-window cache that a rewind could not crop
exactly is refused before decoding.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import shield
from adapters import huggingface as hf
from shield.errors import DecoderError
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.reference import ReferenceSettings, reference_generate
from shield.rules import RegexRule
from shield.sampling import SamplingConfig
from tests.adapters.support import full_logits, tiny_random
from tests.decoders.differential_support import EOS, comparable, tokenizer

VOCAB = len(tokenizer().token_bytes)
#: float32 rounding between a cached and a fresh forward of a tiny model.
LOGIT_ATOL = 1e-5


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model(request: pytest.FixtureRequest) -> Any:
    model = tiny_random(request.param, VOCAB)
    model.generation_config.eos_token_id = list(EOS)
    return model


@pytest.fixture(scope="module")
def judge() -> Judge:
    rules = (RegexRule(id="letter", pattern="[A-Za-z]"), RegexRule(id="digit", pattern="[0-9]"))
    spec = SimpleNamespace(name="cache", rules=rules, policy=BacktrackPolicy(refusal="..."))
    compiled = shield.compile(spec)
    return Judge(compiled, compiled.lift(tokenizer().backend))


@settings(deadline=None)
@given(
    moves=st.lists(
        st.one_of(
            st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=4).map(lambda t: ("feed", t)),
            st.integers(1, 5).map(lambda n: ("cut", n)),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_cropped_cache_equals_a_fresh_forward(model: Any, moves: list[tuple[str, Any]]) -> None:
    cached = hf.CachedPrefix(model, vocab_size=VOCAB, capacity=64, rewinds=True)
    prefix = [5, 6]
    for kind, value in moves:
        prefix = prefix + value if kind == "feed" else prefix[: max(1, len(prefix) - value)]
        np.testing.assert_allclose(cached(prefix), full_logits(model, prefix), atol=LOGIT_ATOL)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_backtrack_equals_the_reference_with_fresh_forwards(
    model: Any, judge: Judge, temperature: float
) -> None:
    prompt = tokenizer().encode("the hello")
    sampling = SamplingConfig(temperature=temperature, top_p=0.95 if temperature else None)
    settings_ = ReferenceSettings(
        strategy="backtrack", max_new_tokens=24, sampling=sampling, seed=3
    )
    reference = reference_generate(
        lambda prefix: full_logits(model, prefix)[:VOCAB],
        prompt,
        judge=judge,
        eos_id=EOS,  # type: ignore[arg-type]
        settings=settings_,
    )
    (adapter,) = hf.generate(
        model,
        torch.tensor([prompt]),
        judge=judge,
        max_new_tokens=24,
        eos_token_id=EOS,
        sampling=sampling,
        seed=3,
    )
    assert reference.stats.rollbacks > 0, "the scenario: the shield rolled back"
    assert comparable(adapter) == comparable(reference)
    assert not judge.shield.scan(adapter.text)


def test_sliding_window_past_its_window_is_refused(judge: Judge) -> None:
    model = tiny_random("qwen2", VOCAB, sliding_window=16)
    prompt = torch.tensor([tokenizer().encode("the hello")])
    assert any("Sliding" in type(layer).__name__ for layer in hf.new_cache(model).layers)
    with pytest.raises(DecoderError, match="sliding-window layer of 16 tokens"):
        hf.generate(model, prompt, judge=judge, max_new_tokens=24, eos_token_id=EOS)
    # Within the window, or without rewinds, the same model decodes.
    (inside,) = hf.generate(model, prompt, judge=judge, max_new_tokens=6, eos_token_id=EOS)
    (masked,) = hf.generate(
        model, prompt, judge=judge, strategy="mask", max_new_tokens=24, eos_token_id=EOS
    )
    assert inside.finish_reason in ("eos", "length", "budget")
    assert not judge.shield.scan(masked.text)


def test_other_cache_layers_are_refused() -> None:
    from transformers import StaticCache

    config = tiny_random("llama", VOCAB).config
    with pytest.raises(DecoderError, match="DynamicCache"):
        hf.require_croppable(StaticCache(config=config, max_cache_len=16), 8)
    cache = hf.new_cache(tiny_random("llama", VOCAB))
    cache.layers[1] = SimpleNamespace()  # a layer kind the adapter does not know how to crop
    with pytest.raises(DecoderError, match="cannot be cropped"):
        hf.require_croppable(cache, 8)
