"""``generate`` on the tiny model: results, prefill, stop strings, chat, budgets, streaming."""

from __future__ import annotations

import pytest

from decoders.config import ModelConfig
from decoders.loading import Model
from decoders.plain import generate_plain
from decoders.tokenizer import Tokenizer
from shield.errors import BudgetError, DecoderError
from tests.decoders.conftest import TEMPLATE, with_eos
from tests.decoders.scripted import Script, scripted_model


def test_batch_of_different_lengths_equals_single_prompts(
    tiny_model_any: Model, tiny_tokenizer: Tokenizer
) -> None:
    prompts = ["the", "hello world, the other", "or"]
    batch = generate_plain(
        tiny_model_any, tiny_tokenizer, prompts, max_new_tokens=8, seed=[1, 2, 3]
    )
    for seed, (prompt, result) in enumerate(zip(prompts, batch, strict=True), start=1):
        alone = generate_plain(
            tiny_model_any, tiny_tokenizer, [prompt], max_new_tokens=8, seed=seed
        )[0]
        assert alone.tokens == result.tokens and alone.text == result.text
    for result in batch:
        assert result.finish_reason in ("eos", "length")
        assert result.stats.kept_tokens == len(result.tokens) <= 8
        assert set(result.to_json()) == {"text", "finish_reason", "tokens", "stats", "events"}


def test_prefill_is_part_of_the_response(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    result = generate_plain(
        tiny_model, tiny_tokenizer, ["hello"], max_new_tokens=5, temperature=0.0, prefill="the"
    )[0]
    forced = tiny_tokenizer.encode("the", add_bos=False)
    assert result.tokens[: len(forced)] == tuple(forced)
    assert result.text.startswith("the")
    assert len(result.tokens) <= len(forced) + 5


def test_stop_string_cuts_after_the_completing_token(
    tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    tiny_model = with_eos(tiny_model, ())
    free = generate_plain(
        tiny_model, tiny_tokenizer, ["hello"], max_new_tokens=12, temperature=0.0
    )[0]
    assert len(free.text) >= 3, (
        "without EOS the tiny model writes 12 tokens: enough for a stop string"
    )
    stop = free.text[1:3]
    cut = generate_plain(
        tiny_model, tiny_tokenizer, ["hello"], max_new_tokens=12, temperature=0.0, stop=[stop]
    )[0]
    assert stop in cut.text and stop not in tiny_tokenizer.decode(
        cut.tokens[:-1], skip_special_tokens=True
    )
    assert cut.finish_reason == "eos"


def test_chat_renders_like_the_template(tiny_tokenizer: Tokenizer) -> None:
    import jinja2

    messages = [{"role": "user", "content": "Hi there"}]
    expected = (
        jinja2.Environment()
        .from_string(TEMPLATE)
        .render(messages=messages, add_generation_prompt=True)
    )
    assert tiny_tokenizer.render_chat(messages) == expected
    with_system = [{"role": "system", "content": "S"}, *messages]
    expected = (
        jinja2.Environment()
        .from_string(TEMPLATE)
        .render(messages=with_system, add_generation_prompt=False)
    )
    assert tiny_tokenizer.render_chat(with_system, add_generation_prompt=False) == expected


def test_budget_and_argument_errors(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    with pytest.raises(BudgetError, match="16"):
        generate_plain(tiny_model, tiny_tokenizer, ["hello world"], max_new_tokens=10, max_slots=16)
    with pytest.raises(DecoderError, match="seed"):
        generate_plain(tiny_model, tiny_tokenizer, ["a", "b"], max_new_tokens=4, seed=[1])
    with pytest.raises(DecoderError, match="max_new_tokens"):
        generate_plain(tiny_model, tiny_tokenizer, ["a"], max_new_tokens=0)


def test_streaming_releases_the_whole_text(tiny_model: Model, tiny_tokenizer: Tokenizer) -> None:
    pieces: list[str] = []
    result = generate_plain(
        tiny_model,
        tiny_tokenizer,
        ["the"],
        max_new_tokens=10,
        chunk=3,
        stream=lambda row, text: pieces.append(text),
    )[0]
    assert "".join(pieces) == result.text


def test_counters_add_up_and_the_eos_step_is_counted_on_its_own(
    tiny_model: Model, tiny_config: ModelConfig, tiny_tokenizer: Tokenizer
) -> None:
    """Every produced token is kept, discarded (cut by a stop string) or the EOS step."""
    (b,) = tiny_tokenizer.encode("b", add_bos=False)
    eos = tiny_config.eos_token_ids[0]
    script = Script(tiny_config.vocab_size).everywhere(b, 4.0).after(b, [(eos, 6.0)])
    ends = generate_plain(
        scripted_model(tiny_config, script.table), tiny_tokenizer, ["hello", "a"],
        max_new_tokens=12, temperature=0.0, prefill="or",
    )  # fmt: skip
    forced = len(tiny_tokenizer.encode("or", add_bos=False))
    for result in ends:
        stats = result.stats
        assert result.text == "orb" and result.finish_reason == "eos"  # the script ran
        assert stats.end_tokens == 1 and stats.generated_tokens == 2  # "b", then EOS
        assert stats.discarded_tokens == 0  # nothing was rolled back or cut
        assert stats.generated_tokens + forced == stats.kept_tokens + stats.end_tokens
    no_eos = with_eos(tiny_model, ())
    long = generate_plain(no_eos, tiny_tokenizer, ["hello"], max_new_tokens=12, temperature=0.0)[0]
    assert long.stats.end_tokens == 0 and long.finish_reason == "length"
    stop = long.text[1:3]
    cut = generate_plain(
        no_eos, tiny_tokenizer, ["hello"], max_new_tokens=12, temperature=0.0, stop=[stop]
    )[0]
    assert cut.stats.kept_tokens < long.stats.kept_tokens, "the stop string must cut the text"
    assert cut.stats.end_tokens == 0
    assert cut.stats.discarded_tokens == cut.stats.generated_tokens - cut.stats.kept_tokens > 0
