"""Streaming committed text: only what no rewind can take back, as ``shield generate --stream`` does.

The release rule is the reference machine's (:meth:`shield.reference.Machine.release`): a prefix
is final when it lies further behind the cursor than the remaining discard budget, ends at a
checkpoint and a classifier-window boundary, and passes the END check (and nothing is released
early under ``on_exhausted = "refuse"``, since a refusal replaces the whole text). The loop hands
each final piece to a sink; this module turns what a user passes into that sink:

- a callable ``(row, text)``;
- a transformers streamer with ``on_finalized_text(text, stream_end)`` (``TextStreamer``,
  ``TextIteratorStreamer``), batch 1 only, as transformers' own streamers are;
- a :class:`CommittedTextStreamer`, an iterator over the committed pieces (read it from another
  thread while ``generate`` runs, like ``TextIteratorStreamer``, without needing a tokenizer).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any

from shield.errors import DecoderError

__all__ = ["CommittedTextStreamer", "text_sink"]

_END = object()


class CommittedTextStreamer:
    """An iterator over committed text pieces, filled by a shielded generation.

    ``model.generate`` hands every streamer the prompt's token ids first (``put``); this streamer
    ignores token ids: it receives text only through :meth:`on_finalized_text`.

    Args:
        timeout: seconds to wait for the next piece when iterating (None: wait forever).

    Example:
        >>> streamer = CommittedTextStreamer()
        >>> streamer.on_finalized_text("Hello", stream_end=False)
        >>> streamer.on_finalized_text("", stream_end=True)
        >>> list(streamer)
        ['Hello']
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self._queue: queue.Queue[object] = queue.Queue()

    def put(self, value: Any) -> None:
        """Token ids (the prompt, from ``model.generate``): ignored, they are not response text."""

    def end(self) -> None:
        """Close the stream (also done by ``on_finalized_text(..., stream_end=True)``)."""
        self._queue.put(_END)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Receive a committed piece; ``stream_end`` closes the stream."""
        if text:
            self._queue.put(text)
        if stream_end:
            self._queue.put(_END)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        item = self._queue.get(timeout=self.timeout)
        if item is _END:
            raise StopIteration
        return str(item)


def text_sink(stream: Any, row: int, rows: int) -> Callable[[str], None] | None:
    """The sink of one row's committed pieces for what the caller passed as ``stream``.

    Args:
        stream: None, a callable ``(row, text)``, or an object with ``on_finalized_text``.
        row: the row. rows: the batch size.

    Returns:
        ``sink(text)``, or None when nothing streams.

    Raises:
        DecoderError: a streamer object with a batch of several rows, or an unusable ``stream``.
    """
    if stream is None:
        return None
    if hasattr(stream, "on_finalized_text"):
        if rows != 1:
            raise DecoderError(
                f"a transformers streamer takes one row; received a batch of {rows}. Pass "
                "stream=callable(row, text) to stream a batch."
            )
        return _FinalizingSink(stream)
    if callable(stream):
        return lambda text: stream(row, text)
    raise DecoderError(
        f"stream: expected a callable (row, text) or a streamer with on_finalized_text, received "
        f"{type(stream).__name__}."
    )


class _FinalizingSink:
    """Forwards committed pieces to a transformers streamer, and ends it when the row ends."""

    def __init__(self, streamer: Any) -> None:
        self.streamer = streamer

    def __call__(self, text: str) -> None:
        self.streamer.on_finalized_text(text, stream_end=False)

    def close(self) -> None:
        self.streamer.on_finalized_text("", stream_end=True)
