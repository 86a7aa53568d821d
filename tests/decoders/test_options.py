"""``DecodeOptions``: one value for the generation arguments, accepted by every entry point."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoders
from decoders.loading import Model
from decoders.options import DecodeOptions
from decoders.plain import generate_plain
from decoders.step import MIN_ATTENTION_WINDOW, attention_window
from decoders.tokenizer import Tokenizer
from shield.errors import DecoderError


def test_fields_override_a_base_value() -> None:
    base = DecodeOptions(max_new_tokens=8, temperature=0.0)
    changed = DecodeOptions.build(base, seed=[4, 5], chat=True)
    assert changed.seed == (4, 5) and changed.chat  # a list of seeds is frozen to a tuple
    assert changed.temperature == 0.0 and changed.max_new_tokens == 8
    assert base.seed == 0 and not base.chat  # the base value is untouched
    assert hash(changed) == hash(dataclasses.replace(changed))


def test_unknown_option_is_named_with_the_valid_ones() -> None:
    with pytest.raises(DecoderError, match=r"unknown decoding option\(s\) temprature") as caught:
        DecodeOptions.build(max_new_tokens=4, temprature=0.5)
    assert "temperature" in str(caught.value) and "DecodeOptions" in str(caught.value)


def test_max_new_tokens_is_required() -> None:
    with pytest.raises(DecoderError, match="max_new_tokens is required"):
        DecodeOptions.build(temperature=0.0)


def test_one_seed_per_prompt_must_match_the_prompts() -> None:
    assert DecodeOptions(max_new_tokens=1, seed=7).seeds(3) == [7, 7, 7]
    assert DecodeOptions(max_new_tokens=1, seed=(1, 2)).seeds(2) == [1, 2]
    with pytest.raises(DecoderError, match=r"one seed per prompt \(3\), received 2"):
        DecodeOptions(max_new_tokens=1, seed=(1, 2)).seeds(3)


def test_every_entry_point_takes_the_same_options(
    tiny_model: Model, tiny_tokenizer: Tokenizer
) -> None:
    options = DecodeOptions(max_new_tokens=6, temperature=0.0, prefill="the")
    by_value = decoders.generate(tiny_model, tiny_tokenizer, ["hello"], options)[0]
    by_keywords = decoders.generate(
        tiny_model, tiny_tokenizer, ["hello"], max_new_tokens=6, temperature=0.0, prefill="the"
    )[0]
    plain = generate_plain(tiny_model, tiny_tokenizer, ["hello"], options)[0]
    assert by_value.tokens == by_keywords.tokens == plain.tokens
    assert by_value.text.startswith("the")  # the prefill option was honoured
    with pytest.raises(DecoderError, match="unknown decoding option"):
        decoders.generate(tiny_model, tiny_tokenizer, ["hello"], max_new_tokens=2, topp=0.5)


@given(st.integers(0, 5000), st.integers(1, 5000))
def test_attention_window_is_the_smallest_covering_power_of_two(needed: int, slots: int) -> None:
    window = attention_window(needed, slots)
    assert window <= slots
    if window < slots:
        assert window >= max(needed, MIN_ATTENTION_WINDOW)
        assert window & (window - 1) == 0  # a power of two: few compilations serve every length
        assert window == MIN_ATTENTION_WINDOW or window // 2 < needed  # and the smallest one
