"""The host-side judge: a compiled shield seen through a tokenizer's vocabulary.

A :class:`Judge` answers the questions a decoder asks between model steps: does this token make an
automaton rule violate (and where did the violating match start), may the text end here, which
classifier windows closed with the last token and are they safe, where is the last accepted state
to stop at, and what did a finished text violate (for the strategies that only report).

Monitor states are the tuple of the components' DFA states (the implicit product); they are
stepped by the :class:`~shield.lifting.TokenShield`'s own walkers over the same ``[C, S, 257]``
tables the JAX decoder puts on the device, so the host and the device walk identical automata.
Exact match starts come from ``Shield.first_violation`` over the response's bytes, which runs only
when a violation has happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shield.checkpoints import closes_sentence, is_checkpoint
from shield.classifiers import judge as judge_windows
from shield.classifiers import score
from shield.controller import Failure
from shield.lifting import MonitorState, TokenShield
from shield.monitor import Shield, Violation
from shield.policy import BacktrackPolicy
from shield.result import Event
from shield.rules import ClassifierRule

__all__ = ["Judge", "Window", "token_index"]


@dataclass(frozen=True, kw_only=True)
class Window:
    """A classifier window of the response: tokens ``[start, end)`` judged by ``rule``."""

    rule: ClassifierRule
    start: int
    end: int
    text: str


class Judge:
    """A compiled shield bound to a vocabulary.

    Args:
        shield: the compiled :class:`shield.Shield`.
        token_shield: its :class:`shield.TokenShield` for this vocabulary (``shield.lift(...)``).
        decode: turns token ids into text; by default the UTF-8 decoding of their bytes.

    Example:
        >>> judge = Judge(compiled, compiled.lift(tokenizer))  # doctest: +SKIP
        >>> state, violation = judge.feed(judge.initial(), token_id)  # doctest: +SKIP
    """

    def __init__(
        self,
        shield: Shield,
        token_shield: TokenShield,
        decode: Callable[[Sequence[int]], str] | None = None,
    ) -> None:
        self.shield = shield
        self.tables = token_shield
        self.token_bytes: tuple[bytes, ...] = tuple(token_shield.token_bytes)
        self.policy: BacktrackPolicy = shield.policy
        self.classifier_rules: tuple[ClassifierRule, ...] = shield.classifiers
        self._initial: MonitorState = _state(token_shield.initial)
        self._decode = decode
        special = np.asarray(token_shield.special, dtype=bool)
        empty = np.array([len(piece) == 0 for piece in self.token_bytes], dtype=bool)
        self._scores: dict[tuple[str, str], float] = {}
        self._never = special | empty
        self._never.setflags(write=False)

    def never(self, eos_ids: Sequence[int]) -> np.ndarray:
        """``[V]`` bool: ids that are never produced as response text: special tokens and tokens
        without bytes, except the end-of-sequence ids (which end the text)."""
        mask = self._never.copy()
        for eos_id in eos_ids:
            if 0 <= eos_id < mask.shape[0]:
                mask[eos_id] = False
        return mask

    # -- automaton rules --------------------------------------------------------------------------

    def initial(self) -> MonitorState:
        """The monitor state at the start of the response."""
        return self._initial

    def token_bytes_of(self, tokens: Sequence[int]) -> list[bytes]:
        """The byte strings of ``tokens``."""
        return [self.token_bytes[t] for t in tokens]

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``."""
        if self._decode is not None:
            return self._decode(tokens)
        return b"".join(self.token_bytes_of(tokens)).decode("utf-8", errors="replace")

    def locate(self, tokens: Sequence[int], *, final: bool) -> Violation:
        """The first violation in the text of ``tokens``, with byte offsets.

        Returns:
            The violated rule, its match's start and end and the matched text; when the tables
            and the exact scan disagree, rule ``"<monitor>"`` over the whole text (fail closed:
            the longest rollback).
        """
        data = b"".join(self.token_bytes_of(tokens))
        found = self.shield.first_violation(data, final=final)
        if found is None:
            return Violation("<monitor>", 0, len(data), data.decode("utf-8", "replace"))
        return found

    def feed(
        self, state: MonitorState, token: int, prefix: Sequence[int] = ()
    ) -> tuple[MonitorState, Violation | None]:
        """Read one token from ``state``.

        Args:
            state: the monitor state after ``prefix``.
            token: the token id read next.
            prefix: the response tokens before ``token`` (used only to locate a violation).

        Returns:
            The next state, and the violation (rule, match span in bytes and text) when the
            token made an automaton rule fire.
        """
        after = self.tables.step_token(_array(state), token)
        nxt = _state(after)
        if not self.tables.violates(after):
            return nxt, None
        return nxt, self.locate([*prefix, token], final=False)

    def end_violation(self, tokens: Sequence[int], state: MonitorState) -> Violation | None:
        """Whether ending the text after ``tokens`` (in ``state``) makes a rule fire (e.g. whole word)."""
        if not self.tables.end_violates(_array(state)):
            return None
        return self.locate(tokens, final=True)

    def allowed(self, state: MonitorState, eos_ids: Sequence[int]) -> np.ndarray:
        """``[V]`` bool: tokens that do not make an automaton rule fire from ``state`` (EOS: END)."""
        mask = np.asarray(self.tables.allowed_mask(_array(state)), dtype=bool).copy()
        may_end = not self.tables.end_violates(_array(state))
        for eos_id in eos_ids:
            if 0 <= eos_id < mask.shape[0]:
                mask[eos_id] = may_end
        return mask

    # -- classifier rules -------------------------------------------------------------------------

    def closed_windows(self, tokens: Sequence[int]) -> list[Window]:
        """Classifier windows that the last token of ``tokens`` closed."""
        if not tokens:
            return []
        last = len(tokens) - 1
        windows = []
        for rule in self.classifier_rules:
            if rule.scope == "sentence" and closes_sentence(self.token_bytes[tokens[last]]):
                start = self._sentence_start(tokens, last)
            elif (
                rule.scope == "window"
                and rule.window_tokens
                and len(tokens) % rule.window_tokens == 0
            ):
                start = len(tokens) - rule.window_tokens
            else:
                continue
            windows.append(
                Window(
                    rule=rule, start=start, end=len(tokens), text=self.detokenize(tokens[start:])
                )
            )
        return windows

    def open_windows(self, tokens: Sequence[int]) -> list[Window]:
        """The windows still open at the end of ``tokens`` (judged when the text ends)."""
        windows = []
        for rule in self.classifier_rules:
            if rule.scope == "sentence":
                start = self._sentence_start(tokens, len(tokens))
            elif rule.scope == "window" and rule.window_tokens:
                start = len(tokens) - len(tokens) % rule.window_tokens
            else:
                start = 0
            if start < len(tokens):
                windows.append(
                    Window(
                        rule=rule,
                        start=start,
                        end=len(tokens),
                        text=self.detokenize(tokens[start:]),
                    )
                )
        return windows

    def window_boundary(self, tokens: Sequence[int], position: int) -> bool:
        """Whether ``position`` ends a window of every classifier rule (always, without classifier rules)."""
        for rule in self.classifier_rules:
            if rule.scope == "response" and position > 0:
                return False
            if rule.scope == "window" and rule.window_tokens and position % rule.window_tokens:
                return False
            if (
                rule.scope == "sentence"
                and position > 0
                and not closes_sentence(self.token_bytes[tokens[position - 1]])
            ):
                return False
        return True

    def _sentence_start(self, tokens: Sequence[int], before: int) -> int:
        for index in range(before - 1, -1, -1):
            if closes_sentence(self.token_bytes[tokens[index]]):
                return index + 1
        return 0

    def prefetch(self, windows: Sequence[Window]) -> None:
        """Score many windows at once (one scorer call per rule), for the next :meth:`unsafe` calls.

        Decoders call this with the windows of every row that waits at a scope boundary, so a
        batch is scored together; :meth:`unsafe` then reads the stored scores. :meth:`forget`
        drops them.
        """
        by_rule: dict[str, list[Window]] = {}
        for window in windows:
            if (window.rule.id, window.text) not in self._scores and window.text.strip():
                by_rule.setdefault(window.rule.id, []).append(window)
        for pending in by_rule.values():
            rule = pending[0].rule
            texts = list(dict.fromkeys(w.text for w in pending))
            for text, value in zip(texts, score(rule.scorer, texts), strict=True):
                self._scores[(rule.id, text)] = value

    def remember(self, window: Window, value: float) -> None:
        """Store a score computed elsewhere (a worker thread) for the next :meth:`unsafe` calls.

        Args:
            window: the window that was scored.
            value: its score, already checked by :func:`shield.classifiers.score`.
        """
        self._scores[(window.rule.id, window.text)] = value

    def forget(self) -> None:
        """Drop the scores stored by :meth:`prefetch` and :meth:`remember`."""
        self._scores.clear()

    def unsafe(self, windows: Sequence[Window]) -> Window | None:
        """The first window whose score reaches its rule's threshold, or None.

        Whitespace-only windows are safe without scoring. Scores stored by :meth:`prefetch` are
        used; others are computed now.

        Raises:
            ClassifierError: a scorer failed (fail closed: the caller must not return the text).
        """
        for window in windows:
            if not window.text.strip():
                continue
            key = (window.rule.id, window.text)
            value = self._scores.get(key)
            if value is None:
                value = score(window.rule.scorer, [window.text])[0]
            if value >= window.rule.threshold:
                return window
        return None

    # -- what decoders need -----------------------------------------------------------------------

    def closed_window_failure(self, tokens: Sequence[int]) -> Failure | None:
        """A failure when a window closed by the last token of ``tokens`` is unsafe."""
        bad = self.unsafe(self.closed_windows(tokens))
        if bad is None:
            return None
        return Failure(
            tokens=tuple(tokens), start=min(bad.start, len(tokens) - 1), rule=bad.rule.id
        )

    def end_failure(
        self, kept: Sequence[int], state: MonitorState, extra: Sequence[int]
    ) -> Failure | None:
        """A failure when the text may not end after ``kept`` (END check, then open windows).

        ``extra`` holds the token that ended the text (EOS), which is discarded with the failure.
        """
        tokens = (*kept, *extra)
        if not tokens:  # the empty response: nothing to rewind and nothing let through
            return None
        violation = self.end_violation(kept, state)
        if violation is not None:
            start = token_index(self.token_bytes, kept, violation.start)
            return Failure(tokens=tokens, start=start, rule=violation.rule)
        bad = self.unsafe(self.open_windows(kept))
        if bad is not None:
            return Failure(tokens=tokens, start=bad.start, rule=bad.rule.id)
        return None

    def safe_prefix(
        self, kept: Sequence[int], states: Sequence[MonitorState], *, limit: int
    ) -> int:
        """The longest checkpoint prefix ``kept[:t]``, ``t <= limit``, that may end the text.

        Position 0 (the empty response) always qualifies, so this never fails.
        """
        for t in range(min(limit, len(kept)), 0, -1):
            if t < len(kept) and not is_checkpoint(
                self.token_bytes_of(kept), t, self.policy.checkpoint
            ):
                continue
            if (
                self.end_violation(kept[:t], states[t]) is None
                and self.unsafe(self.open_windows(kept[:t])) is None
            ):
                return t
        return 0

    def refusal_passes(self) -> bool:
        """Whether the spec's refusal text passes the classifier rules (automaton rules are checked at compile)."""
        refusal = self.policy.refusal
        return (
            all(v is None for v in judge_windows(self.classifier_rules, [refusal]))
            if self.classifier_rules
            else True
        )

    def report(self, tokens: Sequence[int]) -> list[Event]:
        """Violation events of a finished text (strategies ``none`` and ``mask`` only report)."""
        data = b"".join(self.token_bytes_of(tokens))
        text = data.decode("utf-8", errors="replace")
        events = []
        for found in self.shield.scan(text):
            start = token_index(self.token_bytes, tokens, len(text[: found.start].encode("utf-8")))
            end = (
                token_index(
                    self.token_bytes, tokens, max(len(text[: found.end].encode("utf-8")) - 1, 0)
                )
                + 1
            )
            events.append(Event(kind="violation", rule=found.rule, from_token=end, to_token=start))
        windows: list[Window] = []
        for index in range(1, len(tokens) + 1):
            windows.extend(self.closed_windows(tokens[:index]))
        windows.extend(
            w for w in self.open_windows(tokens) if w.rule.scope != "response" or w.start == 0
        )
        for window in windows:
            if judge_windows([window.rule], [window.text])[0] is not None:
                events.append(
                    Event(
                        kind="violation",
                        rule=window.rule.id,
                        from_token=window.end,
                        to_token=window.start,
                    )
                )
        return events


def token_index(token_bytes: Sequence[bytes], tokens: Sequence[int], byte_offset: int) -> int:
    """Index of the token of ``tokens`` that holds byte ``byte_offset`` of their concatenation."""
    position = 0
    for index, token in enumerate(tokens):
        position += len(token_bytes[token])
        if byte_offset < position:
            return index
    return max(len(tokens) - 1, 0)


def _array(state: MonitorState) -> np.ndarray:
    """A judge's state as the token shield's ``int32 [C]`` array (the typed empty one when C = 0)."""
    return np.asarray(state, dtype=np.int32)


def _state(states: np.ndarray) -> MonitorState:
    """The token shield's ``[C]`` array as a judge's hashable state of plain ints."""
    return tuple(np.asarray(states).tolist())
