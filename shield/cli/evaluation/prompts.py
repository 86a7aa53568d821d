"""Prompt files: one prompt a line (``.txt``) or one JSON object a line (``.jsonl``).

A ``.jsonl`` row is ``{"prompt": ...}`` and may also carry ``"prefill"`` (text forced at the
start of the response: a prefilling attack, judged and possibly rolled back like generated text)
and ``"chat"`` (``true``: render the prompt as a user turn of the model's chat template, whatever
``--chat`` says). Other keys (``category``, ``source``, ...) are kept out of the way. A key the
evaluation would act on, written with the wrong type, is an error naming the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shield.errors import EvaluationError

__all__ = ["PromptRow", "load_prompt_rows", "load_prompts"]


@dataclass(frozen=True, kw_only=True)
class PromptRow:
    """One prompt of a prompt file.

    Attributes:
        prompt: the prompt text (the user turn when ``chat``).
        prefill: text forced at the start of the response (None: none).
        chat: True renders the prompt with the chat template; None follows ``--chat``.

    Example:
        >>> PromptRow.of("Hello").prefill is None
        True
    """

    prompt: str
    prefill: str | None = None
    chat: bool | None = None

    @classmethod
    def of(cls, value: str | PromptRow) -> PromptRow:
        """A row from a row or a bare prompt text.

        Args:
            value: a :class:`PromptRow` or a prompt string.

        Returns:
            The row.
        """
        return value if isinstance(value, PromptRow) else cls(prompt=value)

    def uses_chat(self, default: bool) -> bool:
        """Whether this row is rendered as a chat turn, given the run's ``--chat``."""
        return default if self.chat is None else self.chat


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as error:
        raise EvaluationError(
            f"{path}: cannot read the prompt file ({error.strerror or error})"
        ) from error
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise EvaluationError(
            f"{path}:{line}: the prompt file is not UTF-8; re-encode it"
        ) from error


def _row(item: Any, path: Path, number: int, line: str) -> PromptRow:
    prompt = item.get("prompt") if isinstance(item, dict) else None
    if not isinstance(prompt, str) or not prompt:
        raise EvaluationError(
            f'{path}:{number}: expected an object with a non-empty string "prompt", '
            f"received {line.strip()[:60]}"
        )
    prefill, chat = item.get("prefill"), item.get("chat")
    if prefill is not None and (not isinstance(prefill, str) or not prefill):
        raise EvaluationError(
            f'{path}:{number}: expected "prefill" to be a non-empty string, received '
            f"{json.dumps(prefill)[:60]}; remove the key for no prefill"
        )
    if chat is not None and not isinstance(chat, bool):
        raise EvaluationError(
            f'{path}:{number}: expected "chat" to be true or false, received '
            f"{json.dumps(chat)[:60]}"
        )
    return PromptRow(prompt=prompt, prefill=prefill, chat=chat)


def load_prompt_rows(path: Path) -> tuple[PromptRow, ...]:
    """The rows of a ``.txt`` file (one prompt a line) or a ``.jsonl`` file (one object a line).

    Blank lines are skipped; the prompt index is the position among the rows read.

    Args:
        path: the prompt file.

    Returns:
        The rows, in file order.

    Raises:
        EvaluationError: an unreadable file, an unknown extension, a line that is not a JSON
            object with a non-empty string ``prompt``, a ``prefill`` that is not a non-empty
            string or a ``chat`` that is not a boolean (the message gives ``FILE:LINE``), or no
            prompts at all.

    Example:
        >>> load_prompt_rows(Path("data/prefill_attacks_dev.jsonl"))[0].prefill  # doctest: +SKIP
    """
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl"):
        raise EvaluationError(
            f'{path}: expected a .txt (one prompt a line) or .jsonl ({{"prompt": ...}} a line) '
            f"file, received a {suffix or 'extension-less'} file"
        )
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        if suffix == ".txt":
            rows.append(PromptRow(prompt=line))
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvaluationError(
                f"{path}:{number}: invalid JSON ({error.msg} at column {error.colno})"
            ) from error
        rows.append(_row(item, path, number, line))
    if not rows:
        raise EvaluationError(f"{path}: the prompt file holds no prompts")
    return tuple(rows)


def load_prompts(path: Path) -> tuple[str, ...]:
    """The prompt texts of a prompt file (see :func:`load_prompt_rows` for the format).

    Raises:
        EvaluationError: as :func:`load_prompt_rows`.
    """
    return tuple(row.prompt for row in load_prompt_rows(path))
