"""Chat templates render as transformers' ``apply_chat_template`` renders them: the real templates
of every supported family (``tests/data/chat_templates``), on fixed and random conversations, with
and without the generation prompt, refusals (``raise_exception``) included; and the template and
special tokens are read from a model directory as transformers reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decoders.tokenizer import ChatSettings, Tokenizer
from shield.errors import DecoderError, ModelLoadError
from tests.decoders.family_support import tokenizer_json

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "chat_templates"
#: The special tokens each family's tokenizer_config.json declares.
SPECIALS: dict[str, dict[str, str]] = {
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "qwen2": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen3": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "mistral": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "gemma2": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
    "gemma3": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
    "phi3": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>"},
}
#: Fixed so that Llama 3's ``strftime_now`` date cannot differ between the two renderings.
VARIABLES = {"date_string": "26 Jul 2024"}

CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": " What is 2+2?\n"}],
    [
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "{{ not jinja }} <|im_end|> [INST]"},
    ],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],  # not alternating
]


def ours(family: str) -> Tokenizer:
    return Tokenizer(
        tokenizer_json(),
        eos_token_ids=(2,),
        chat_template=(TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8"),
        special_tokens=tuple(SPECIALS[family].items()),
        source=family,
    )


def theirs(family: str) -> Any:
    import transformers
    from tokenizers import Tokenizer as Backend

    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=Backend.from_str(tokenizer_json()),
        chat_template=(TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8"),
        **SPECIALS[family],
    )


def rendered(render: Any, messages: list[dict[str, str]], generation: bool) -> tuple[str, str]:
    """``("ok", text)`` or ``("refused", message)`` of one rendering."""
    try:
        return "ok", render(messages, generation)
    except Exception as error:
        text = str(error)
        return "refused", text.split("refused the conversation: ")[-1]


def compare(family: str, messages: list[dict[str, str]], generation: bool) -> tuple[str, str]:
    tokenizer, reference = ours(family), theirs(family)
    found = rendered(
        lambda m, g: tokenizer.render_chat(m, add_generation_prompt=g, **VARIABLES),
        messages,
        generation,
    )
    expected = rendered(
        lambda m, g: reference.apply_chat_template(
            m, tokenize=False, add_generation_prompt=g, **VARIABLES
        ),
        messages,
        generation,
    )
    assert found == expected, family
    return found


@pytest.mark.parametrize("family", sorted(SPECIALS))
def test_real_templates_render_as_transformers_does(family: str) -> None:
    outcomes = [
        compare(family, messages, generation)
        for messages in CONVERSATIONS
        for generation in (True, False)
    ]
    # The scenarios happened: every template rendered something, and the non-alternating
    # conversation was refused by the templates that check roles.
    assert sum(kind == "ok" for kind, _ in outcomes) >= 4
    refuses_roles = family in ("mistral", "gemma2", "gemma3")
    assert (outcomes[-1][0] == "refused") == refuses_roles


def test_a_refusal_is_a_decoder_error_that_quotes_the_template() -> None:
    with pytest.raises(DecoderError, match="System role not supported"):
        ours("gemma2").render_chat([{"role": "system", "content": "x"}])


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(
    family=st.sampled_from(sorted(SPECIALS)),
    turns=st.lists(texts, min_size=1, max_size=4),
    system=st.none() | texts,
    generation=st.booleans(),
)
def test_random_conversations_render_as_transformers_does(
    family: str, turns: list[str], system: str | None, generation: bool
) -> None:
    messages = [] if system is None else [{"role": "system", "content": system}]
    roles = ("user", "assistant")
    messages += [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]
    compare(family, messages, generation)


def test_the_bundled_chatml_without_a_template() -> None:
    plain = Tokenizer(tokenizer_json(), eos_token_ids=(2,))
    assert plain.render_chat([{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_directory_settings_are_read_as_transformers_reads_them(tmp_path: Path) -> None:
    llama = (TEMPLATES / "llama3.jinja").read_text(encoding="utf-8")
    (tmp_path / "chat_template.jinja").write_text(llama, encoding="utf-8")
    config = {"bos_token": {"content": "<|begin_of_text|>", "lstrip": False}, "eos_token": "<e>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    settings = ChatSettings.from_directory(tmp_path)
    assert settings.template == llama  # no template in tokenizer_config.json: the .jinja file
    assert dict(settings.special_tokens) == {"bos_token": "<|begin_of_text|>", "eos_token": "<e>"}
    config["chat_template"] = [
        {"name": "default", "template": "D"},
        {"name": "rag", "template": "R"},
    ]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert ChatSettings.from_directory(tmp_path).template == "D"  # tokenizer_config wins
    config["chat_template"] = [{"name": "rag", "template": "R"}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="without a 'default' entry"):
        ChatSettings.from_directory(tmp_path)


def test_invalid_template_is_refused_when_used() -> None:
    broken = Tokenizer(tokenizer_json(), eos_token_ids=(2,), chat_template="{% for %}")
    with pytest.raises(ModelLoadError, match="not valid Jinja"):
        broken.render_chat([{"role": "user", "content": "x"}])
