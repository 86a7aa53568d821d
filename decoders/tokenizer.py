"""The tokenizer: a ``tokenizers`` tokenizer plus the model's own chat template, no torch.

:func:`tokenizer_json_from_gguf` rebuilds the tokenizer of a GGUF file from its metadata
(``tokenizer.ggml.tokens``/``merges``/``token_type``) as byte-level BPE with the GPT-2
pre-tokenizer, which is what SmolLM2 uses; control tokens become special tokens. A Hugging Face
directory ships its ``tokenizer.json`` as is. :class:`Tokenizer` wraps either with the ids, the
chat template and the byte string of every token (what token lifting of a shield automaton needs).

Chat prompts are rendered by the model's Jinja chat template exactly as transformers'
``apply_chat_template`` renders them (:func:`compile_template`: a sandboxed environment with
``trim_blocks`` and ``lstrip_blocks``, the loop-control extension, a ``tojson`` that does not
escape HTML, ``raise_exception``, ``strftime_now``, and the special tokens of
``tokenizer_config.json`` such as ``bos_token`` as variables). The template comes from
``tokenizer_config.json`` (its ``chat_template``, or the entry named ``default`` of a list) or
from ``chat_template.jinja`` (:class:`ChatSettings`). A tokenizer without a template renders
ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from shield import lifting
from shield.errors import DecoderError, ModelLoadError

__all__ = ["ChatSettings", "Tokenizer", "compile_template", "tokenizer_json_from_gguf"]

#: GGUF token type of control (special) tokens.
_CONTROL = 3
_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", re.DOTALL)
#: Keys of ``tokenizer_config.json`` that transformers passes to a chat template as variables.
SPECIAL_TOKEN_KEYS: tuple[str, ...] = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def _token_text(value: Any) -> str | None:
    """A special token of ``tokenizer_config.json``: a string or an ``AddedToken`` dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


@dataclasses.dataclass(frozen=True)
class ChatSettings:
    """A model directory's chat template and the special tokens its template may read.

    Attributes:
        template: the Jinja source, or None when the directory has none.
        special_tokens: ``(name, text)`` pairs such as ``("bos_token", "<s>")``.
    """

    template: str | None = None
    special_tokens: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_directory(cls, directory: Path) -> ChatSettings:
        """Read ``tokenizer_config.json`` and ``chat_template.jinja`` of a Hugging Face directory.

        The template of ``tokenizer_config.json`` wins; a list of named templates gives its
        ``default`` entry. Either file may be missing.

        Raises:
            ModelLoadError: a file is unreadable, or a template list has no ``default`` entry.
        """
        path = directory / "tokenizer_config.json"
        values: dict[str, Any] = {}
        try:
            if path.is_file():
                values = dict(json.loads(path.read_text(encoding="utf-8")))
            template = values.get("chat_template")
            jinja = directory / "chat_template.jinja"
            if template is None and jinja.is_file():
                template = jinja.read_text(encoding="utf-8")
        except (OSError, ValueError, TypeError) as error:
            raise ModelLoadError(
                f"{path}: unreadable tokenizer configuration ({error})."
            ) from error
        if isinstance(template, list):
            named = {str(t.get("name")): t.get("template") for t in template if isinstance(t, dict)}
            if "default" not in named:
                raise ModelLoadError(
                    f"{path}: chat_template is a list without a 'default' entry (found "
                    f"{sorted(named)}); keep one template named 'default'."
                )
            template = named["default"]
        if template is not None and not isinstance(template, str):
            raise ModelLoadError(f"{path}: chat_template must be a string, received {template!r}.")
        tokens = tuple(
            (key, text)
            for key in SPECIAL_TOKEN_KEYS
            if (text := _token_text(values.get(key))) is not None
        )
        return cls(template=template, special_tokens=tokens)


def compile_template(source: str) -> Any:
    """Compile a chat template in the environment transformers renders chat templates in.

    Args:
        source: the Jinja source.

    Returns:
        A ``jinja2.Template``; render it with ``messages``, ``add_generation_prompt`` and the
        special tokens.

    Raises:
        ModelLoadError: the template is not valid Jinja.
    """
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        # Jinja's own tojson escapes HTML characters; transformers' does not.
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
            sort_keys=sort_keys,
        )  # fmt: skip

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    try:
        return environment.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as error:
        raise ModelLoadError(
            f"chat template: not valid Jinja ({error.message}, line {error.lineno})."
        ) from error


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
        chat_template: the model's Jinja chat template (ChatML is rendered without one).
        special_tokens: ``(name, text)`` pairs the template may read (``bos_token``, ...).
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
        special_tokens: Sequence[tuple[str, str]] = (),
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
        self.special_tokens = dict(special_tokens)
        self.source = source
        match = _SYSTEM.search(chat_template or "")
        self.default_system_prompt = match.group(1) if match else None

    @cached_property
    def _template(self) -> Any:
        return None if self.chat_template is None else compile_template(self.chat_template)

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
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        **variables: Any,
    ) -> str:
        """The text of ``messages`` (dicts with ``role`` and ``content``) by the chat template.

        Rendered as transformers' ``apply_chat_template(..., tokenize=False)`` renders it; without
        a template, as ChatML.

        Args:
            messages: the conversation.
            add_generation_prompt: end with the opening of an assistant turn.
            **variables: more template variables (they override the special tokens).

        Returns:
            The prompt text (encode it with ``add_bos=False`` when the template writes the BOS).

        Raises:
            DecoderError: the template refused the conversation (``raise_exception``) or failed.

        Example:
            >>> tok.render_chat([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
            '<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
        """
        if self._template is None:
            parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
            return "".join(parts) + ("<|im_start|>assistant\n" if add_generation_prompt else "")
        import jinja2

        try:
            return str(
                self._template.render(
                    messages=[dict(m) for m in messages],
                    tools=None,
                    documents=None,
                    add_generation_prompt=add_generation_prompt,
                    **{**self.special_tokens, **variables},
                )
            )
        except jinja2.exceptions.TemplateError as error:
            raise DecoderError(
                f"{self.source}: the chat template refused the conversation: {error}"
            ) from error
