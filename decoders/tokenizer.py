"""The tokenizer: a ``tokenizers`` byte-level BPE plus the ChatML chat format, no torch.

:func:`tokenizer_json_from_gguf` rebuilds the tokenizer of a GGUF file from its metadata
(``tokenizer.ggml.tokens``/``merges``/``token_type``) as byte-level BPE with the GPT-2
pre-tokenizer, which is what SmolLM2 uses; control tokens become special tokens.
:class:`Tokenizer` wraps the result with the ids, the chat format and the byte string of every
token (what token lifting of a shield automaton needs).

Chat prompts are rendered in ChatML directly (``<|im_start|>role\\ncontent<|im_end|>\\n``); the
default system prompt is read from the model's own template, so the rendering equals the template's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from shield import lifting
from shield.errors import ModelLoadError

__all__ = ["Tokenizer", "tokenizer_json_from_gguf"]

#: GGUF token type of control (special) tokens.
_CONTROL = 3
_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", re.DOTALL)


def tokenizer_json_from_gguf(
    tokens: Sequence[str], merges: Sequence[str], token_types: Sequence[int]
) -> str:
    """The ``tokenizers`` JSON of a GGUF ``gpt2``-model tokenizer.

    Args:
        tokens: ``tokenizer.ggml.tokens``, the vocabulary in id order.
        merges: ``tokenizer.ggml.merges``, ``"left right"`` strings in rank order.
        token_types: ``tokenizer.ggml.token_type`` (3 = control, made a special token).

    Returns:
        A JSON string loadable by ``tokenizers.Tokenizer.from_str``.
    """
    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [(left, right) for left, _, right in (m.partition(" ") for m in merges)]
    bpe = models.BPE(vocab=vocab, merges=pairs, fuse_unk=False)
    tok = tokenizers.Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    special = [
        tokenizers.AddedToken(tokens[i], special=True, normalized=False)
        for i, kind in enumerate(token_types)
        if kind == _CONTROL
    ]
    tok.add_special_tokens(special)
    return str(tok.to_str())


class Tokenizer:
    """Text ↔ token ids for one model, with its end-of-sequence ids and chat format.

    Args:
        tokenizer_json: a ``tokenizers`` JSON string.
        eos_token_ids: ids that end generation.
        bos_token_id: id prepended to every prompt, or None (SmolLM2 uses none).
        chat_template: the model's Jinja chat template (used for its default system prompt).
        source: the file the tokenizer came from, named in errors.

    Raises:
        ModelLoadError: the JSON is not a valid tokenizer.

    Example:
        >>> tok = load_model()[1]  # doctest: +SKIP
        >>> tok.decode(tok.encode("Hello world"))  # doctest: +SKIP
        'Hello world'
    """

    def __init__(
        self,
        tokenizer_json: str,
        *,
        eos_token_ids: tuple[int, ...],
        bos_token_id: int | None = None,
        chat_template: str | None = None,
        source: str = "<memory>",
    ) -> None:
        try:
            self._tok = tokenizers.Tokenizer.from_str(tokenizer_json)
        except Exception as error:  # tokenizers raises a bare Exception subclass
            raise ModelLoadError(f"{source}: not a valid tokenizer ({error}).") from error
        self.tokenizer_json = tokenizer_json
        self.eos_token_ids = tuple(eos_token_ids)
        self.bos_token_id = bos_token_id
        self.chat_template = chat_template
        match = _SYSTEM.search(chat_template or "")
        self.default_system_prompt = match.group(1) if match else None

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (what ``Shield.lift`` reads the vocabulary from)."""
        return self._tok

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of ``text`` (special-token strings in it become their ids)."""
        ids = list(self._tok.encode(text, add_special_tokens=False).ids)
        if add_bos and self.bos_token_id is not None:
            ids.insert(0, self.bos_token_id)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids`` (invalid UTF-8 across a cut becomes U+FFFD)."""
        return str(self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        """The id of one vocabulary entry, or None."""
        found = self._tok.token_to_id(token)
        return None if found is None else int(found)

    @cached_property
    def token_bytes(self) -> tuple[bytes, ...]:
        """The UTF-8 bytes each id stands for; special tokens (no text) have none.

        The same reading of the vocabulary as :func:`shield.lifting.token_bytes`, which the shield
        lifts its automata with.
        """
        return lifting.token_bytes(self._tok)[0]

    def render_chat(
        self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """ChatML text of ``messages`` (dicts with ``role`` and ``content``).

        A default system message (from the model's template) is put first when the first
        message is not a system message, as SmolLM2's template does.

        Example:
            >>> tok.render_chat([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
            '<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
        """
        parts = []
        if messages and messages[0]["role"] != "system" and self.default_system_prompt:
            parts.append(f"<|im_start|>system\n{self.default_system_prompt}<|im_end|>\n")
        parts.extend(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)
