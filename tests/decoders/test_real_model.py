"""The real SmolLM2-135M-Instruct: loading, tokenizer, chat template, rewind equivalence, and
parity with transformers + torch loading the same GGUF (logits and greedy tokens).

All tests share one session-scoped load and run on one xdist worker (group ``real_model``).
Parity tolerance: logits agree within 2e-3 absolute (float32, different summation orders over
30 layers; measured ≈ 1e-4) at the prompt and after 32 greedy decode steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

from decoders.loading import Model, load_model
from decoders.paths import bundled_model_path
from decoders.plain import generate_plain
from decoders.sampling import SamplingConfig
from decoders.state import rewind
from decoders.step import decode_logits, plain_step
from decoders.tokenizer import Tokenizer
from tests.decoders.conftest import prefilled, with_eos

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_model")]

LOGIT_ATOL = 2e-3
PROMPT = "The capital of France is"
STEPS = 32


@pytest.fixture(scope="session")
def reference() -> Iterator[Any]:
    """transformers + torch loading the bundled GGUF (float32), or a skip when torch is absent."""
    torch = pytest.importorskip("torch", reason="parity needs torch (pip install '.[parity]')")
    from transformers import AutoModelForCausalLM

    path = bundled_model_path()
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    model.eval()
    yield model


def test_load_is_complete_and_warm_load_is_fast(
    real_model: tuple[Model, Tokenizer, float],
    real_cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, tokenizer, _ = real_model
    c = model.config
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads) == (30, 576, 9, 3)
    assert (c.vocab_size, c.tie_embeddings, c.rope_theta) == (49152, True, 100000.0)
    assert tokenizer.eos_token_ids[0] == 2
    monkeypatch.setenv("SHIELD_CACHE_DIR", str(real_cache_dir))

    def no_conversion(path: Path) -> None:
        raise AssertionError(f"a warm load must read the cache, not convert {path} again")

    # Speed is measured by bench/bench_decoder.py; here: the second load never converts again.
    monkeypatch.setattr("decoders.loading.read_gguf", no_conversion)
    warm, _ = load_model("smollm2")
    np.testing.assert_array_equal(warm.params.layers[3].wqkv, model.params.layers[3].wqkv)


def test_tokenizer_matches_the_reference(real_model: tuple[Model, Tokenizer, float]) -> None:
    _, tokenizer, _ = real_model
    from transformers import AutoTokenizer

    path = bundled_model_path()
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    texts = [
        "Hello world",
        "  spaces\tand\nnewlines 12345!",
        "naïve café — ünïcödé 😀",
        "<|im_start|>user",
    ]
    for text in texts:
        assert tokenizer.encode(text) == ref(text, add_special_tokens=False)["input_ids"], text
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode("Hello world") == [19556, 905]
    assert (
        b"".join(tokenizer.token_bytes[i] for i in tokenizer.encode(texts[2])) == texts[2].encode()
    )


def test_chat_template_rendering(real_model: tuple[Model, Tokenizer, float]) -> None:
    import jinja2

    _, tokenizer, _ = real_model
    messages = [{"role": "user", "content": "Say hi"}]
    template = jinja2.Environment().from_string(tokenizer.chat_template or "")
    assert tokenizer.render_chat(messages) == template.render(
        messages=messages, add_generation_prompt=True
    )
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.render_chat(messages)


@pytest.mark.parametrize("weights", ["dense", "int8"])
def test_rewind_equivalence_on_the_real_model(
    real_model: tuple[Model, Tokenizer, float], real_int8_model: Model, weights: str
) -> None:
    _, tokenizer, _ = real_model
    model = with_eos(real_int8_model if weights == "int8" else real_model[0], ())
    prompt = tokenizer.encode(PROMPT)
    state = prefilled(model, [prompt], slots=64)
    greedy = SamplingConfig(temperature=0.0)
    for _ in range(6):
        state = plain_step(model.params, model.config, greedy, state, jnp.int32(99), 64)
    target = len(prompt) + 2
    after, _ = decode_logits(
        model.params, model.config, rewind(state, jnp.array([target], jnp.int32)), window=64
    )
    prefix = [int(t) for t in state.tokens[0, :target]]
    fresh, _ = decode_logits(model.params, model.config, prefilled(model, [prefix]), window=64)
    np.testing.assert_allclose(after, fresh, atol=LOGIT_ATOL, rtol=0)


@pytest.mark.parity
def test_logits_and_greedy_tokens_match_the_reference(
    real_model: tuple[Model, Tokenizer, float], reference: Any
) -> None:
    import torch

    model, tokenizer, _ = real_model
    prompt = tokenizer.encode(PROMPT)
    with torch.no_grad():
        expected = reference.generate(
            torch.tensor([prompt]),
            max_new_tokens=STEPS,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            min_new_tokens=STEPS,
        )[0, len(prompt) :].tolist()
        full = torch.tensor([prompt + expected])
        ref_logits = reference(full).logits[0].numpy()  # [T, V]
    free = with_eos(model, ())
    state = prefilled(free, [prompt], slots=128)
    greedy = SamplingConfig(temperature=0.0)
    ours = []
    for step in range(STEPS):
        logits, _ = decode_logits(free.params, free.config, state, window=128)
        row = len(prompt) - 1 + step
        np.testing.assert_allclose(
            logits[0], ref_logits[row], atol=LOGIT_ATOL, rtol=0, err_msg=f"step {step}"
        )
        state = plain_step(free.params, free.config, greedy, state, jnp.int32(STEPS), 128)
        ours.append(int(state.tokens[0, len(prompt) + step]))
    assert ours == expected
    via_api = generate_plain(model, tokenizer, [PROMPT], max_new_tokens=STEPS, temperature=0.0)[0]
    assert list(via_api.tokens) == expected[: len(via_api.tokens)]
