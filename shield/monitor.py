"""The runtime shield: a frozen :class:`Shield` with pure ``init``/``step``/``finish`` functions.

Like an optax transformation, a shield is a pair of pure functions over an immutable state; the
product of the rules stays implicit (a tuple of component states). A step reports the first
violation it meets, with the rule id and the **exact start** of the violating match: among the
matches whose detection happened at that symbol, the leftmost start (see :mod:`shield.automata.reverse`).
Violations are sticky: once violated, every later verdict repeats the first one.

``Shield.scan`` reports every violation in a whole text with its **full span**: the
leftmost-longest matches of the rule's pattern, as ``re`` and ``grep`` report them (see
:mod:`shield.spans`), per rule non-overlapping and in order, sorted by start, with **character**
offsets; a match whose full span fails the rule's validator (:mod:`shield.validators`) is
dropped. Which matches count is the automaton's decision, as in decoding: a rule that the
automaton never flags reports nothing, and for ``after`` and ``at_most`` rules the matches that
count start after the trigger's detecting symbol, or after the detecting symbol of the last
allowed match. ``first_violation`` gives the decoder's verdict (earliest detection, byte offsets).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from shield.automata.alphabet import END
from shield.automata.compiler import CompiledRule
from shield.automata.composed import Composed
from shield.lifting import TokenShield
from shield.policy import BacktrackPolicy
from shield.rules import (
    ClassifierRule,
    Rule,
)
from shield.spans import rule_spans
from shield.validators import validate

__all__ = ["Shield", "ShieldState", "Verdict", "Violation"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of a step.

    Attributes:
        ok: True when no rule is violated.
        rule_id: the violated rule (None when ok).
        start: byte offset where the violating match starts (None when ok).
        end: byte offset where it ends (None when ok).
    """

    ok: bool = True
    rule_id: str | None = None
    start: int | None = None
    end: int | None = None


OK = Verdict()
#: Host walks of at most this many symbols read a shield's numpy tables directly; a longer walk
#: first copies them into Python lists (faster per byte, but a copy of every state), once.
_ARRAY_WALK_SYMBOLS = 4096


@dataclass(frozen=True)
class Violation:
    """One violation found by a scan.

    Attributes:
        rule: the violated rule's id.
        start: start offset (characters for ``scan``, bytes for ``first_violation``).
        end: end offset (exclusive, same unit).
        match: the violating text.
    """

    rule: str
    start: int
    end: int
    match: str


@dataclass(frozen=True)
class ShieldState:
    """The state of a shield after some text.

    Attributes:
        components: one automaton state per automaton rule, in rule order.
        offset: bytes read so far.
        text: the bytes read so far (reverse scans need them to find match starts).
        ended: END has been read (``finish``); no more input is accepted.
        verdict: the first violation, or ok.
    """

    components: tuple[int, ...]
    offset: int = 0
    text: bytes = b""
    ended: bool = False
    verdict: Verdict = field(default=OK)


@dataclass(frozen=True, eq=False)
class Shield:
    """A compiled spec.

    Attributes:
        name: the spec's name.
        rules: every source rule, in spec order (automaton and classifier rules).
        compiled: the compiled automaton rules, in spec order (one automaton component each).
        policy: the backtracking policy.
    """

    name: str
    rules: tuple[Rule, ...]
    compiled: tuple[CompiledRule, ...]
    policy: BacktrackPolicy
    _tables: tuple[Any, ...] | None = field(init=False, repr=False, default=None)

    @property
    def classifiers(self) -> tuple[ClassifierRule, ...]:
        """The classifier rules (validated, carried through untouched), in spec order."""
        return tuple(r for r in self.rules if isinstance(r, ClassifierRule))

    def _walk_tables(self, symbols: int) -> tuple[Any, ...]:
        """The automata for a host walk of ``symbols`` symbols: Python lists (made on the first
        long walk), or the numpy tables themselves for a short walk before that, so a start that
        only checks its refusal text (``shield generate`` decodes on the device) does not pay for
        copying tens of thousands of states into lists. A staged rule is its
        :class:`~shield.automata.composed.Composed` (which keeps its own lists)."""
        tables = self._tables
        if tables is None and symbols <= _ARRAY_WALK_SYMBOLS:
            return tuple(
                r.composed or (r.dfa.transitions, r.dfa.classes, r.dfa.accepting)  # type: ignore[union-attr]
                for r in self.compiled
            )
        if tables is None:
            tables = tuple(
                r.composed
                or (
                    r.dfa.transitions.tolist(),  # type: ignore[union-attr]
                    r.dfa.classes.tolist(),  # type: ignore[union-attr]
                    r.dfa.accepting.tolist(),  # type: ignore[union-attr]
                )
                for r in self.compiled
            )
            object.__setattr__(self, "_tables", tables)
        return tables

    # -- pure runtime --------------------------------------------------------------------------
    def init(self) -> ShieldState:
        """The state before any text.

        Returns:
            The initial state (violated already if a rule matches the empty text).
        """
        state = ShieldState(tuple(_initial(r) for r in self.compiled))
        for rule, initial in zip(self.compiled, state.components, strict=True):
            if _violating(rule, initial):
                return replace(state, verdict=Verdict(False, rule.rule_id, 0, 0))
        return state

    def step(self, state: ShieldState, data: bytes) -> tuple[ShieldState, Verdict]:
        """Read ``data``.

        Args:
            state: the current state.
            data: the next bytes of the text.

        Returns:
            The new state and its verdict (the first violation, sticky).

        Raises:
            ValueError: ``state`` has already read END.
        """
        if state.ended:
            raise ValueError(
                "the shield state has already read END (finish); start again from init()"
            )
        text = state.text + data
        return self._feed(state, text, [*data], len(text))

    def finish(self, state: ShieldState) -> tuple[ShieldState, Verdict]:
        """Read END (the end of the text).

        Args:
            state: the current state.

        Returns:
            The final state and its verdict.
        """
        if state.ended:
            return state, state.verdict
        new_state, verdict = self._feed(state, state.text, [END], state.offset)
        return replace(new_state, ended=True), verdict

    def _feed(
        self, state: ShieldState, text: bytes, symbols: list[int], offset: int
    ) -> tuple[ShieldState, Verdict]:
        comps = list(state.components)
        tables = self._walk_tables(len(symbols))
        verdict = state.verdict
        position = state.offset
        for symbol in symbols:  # bounded by len(data) + 1
            newly = []
            for i, entry in enumerate(tables):
                before = comps[i]
                if isinstance(entry, Composed):
                    after = comps[i] = entry.step(before, symbol)[0]
                    if entry.violating(after) and not entry.violating(before):
                        newly.append(i)
                    continue
                table, classes, accepting = entry
                after = int(table[before][classes[symbol]])
                comps[i] = after
                if accepting[after] and not accepting[before]:
                    newly.append(i)
            if newly and verdict.ok:
                candidates = [self._violation(i, text, position) for i in newly]
                verdict = min(candidates, key=lambda v: v.start or 0)  # ties: rule order
            if symbol != END:
                position += 1
        return ShieldState(tuple(comps), offset, text, state.ended, verdict), verdict

    def _violation(self, index: int, text: bytes, position: int) -> Verdict:
        rule = self.compiled[index]
        start, end = rule.span(text, position)
        return Verdict(False, rule.rule_id, start, end)

    # -- host helpers ----------------------------------------------------------------------------
    def first_violation(self, data: bytes, *, final: bool) -> Violation | None:
        """The first violation in ``data`` (byte offsets).

        Args:
            data: the text's bytes.
            final: ``data`` is the whole text (END is read after it).

        Returns:
            The violation, or None.
        """
        state, verdict = self.step(self.init(), data)
        if verdict.ok and final:
            state, verdict = self.finish(state)
        if verdict.ok:
            verdict = state.verdict
        if verdict.ok:
            return None
        assert verdict.rule_id is not None and verdict.start is not None and verdict.end is not None
        return Violation(
            verdict.rule_id,
            verdict.start,
            verdict.end,
            data[verdict.start : verdict.end].decode("utf-8", "replace"),
        )

    def scan(self, text: str, *, validators: bool = True) -> list[Violation]:
        """Every violation in a whole text, each with its full span, in character offsets.

        Args:
            text: the text (END is read after it).
            validators: drop the matches that fail their rule's validator (False reports every
                match the automaton counts, as decoding does).

        Returns:
            Violations sorted by (start, rule order); per rule they do not overlap.

        Raises:
            CompileError: an ``after`` trigger or an ``at_most`` pattern, compiled again to find
                where its rule starts to count, exceeds the default compile limits (only for a
                spec compiled with raised limits).

        Example:
            >>> import specs
            >>> guard = specs.shield_for(specs.load_library("pii"))  # doctest: +SKIP
            >>> [v.match for v in guard.scan("mail john.doe@example.com")]  # doctest: +SKIP
            ['john.doe@example.com']
        """
        data = text.encode("utf-8")
        char_of = _char_offsets(text, data)
        found: list[tuple[int, int, Violation]] = []
        for order, rule in enumerate(self.compiled):
            validator = getattr(rule.rule, "validator", None) if validators else None
            for start, end in rule_spans(rule, data):
                cs = int(char_of[start])
                ce = int(char_of[end]) + (0 if _is_char_start(data, end) else 1)
                if validator is not None and not validate(validator, text[cs:ce]):
                    continue
                found.append((cs, order, Violation(rule.rule_id, cs, ce, text[cs:ce])))
        return [v for _, _, v in sorted(found, key=lambda x: (x[0], x[1]))]

    def refusal_passes(self) -> bool:
        """Whether the policy's refusal text passes every automaton rule.

        Returns:
            True when the refusal (followed by END) violates nothing.
        """
        return self.first_violation(self.policy.refusal.encode("utf-8"), final=True) is None

    def lift(self, source: Any, *, special: Any = None) -> TokenShield:
        """Lift onto a token vocabulary (see :mod:`shield.lifting`).

        Args:
            source: a ``tokenizers.Tokenizer`` or a sequence of token byte strings.
            special: optional bool per token (special tokens carry no text).

        Returns:
            The token shield.
        """
        return TokenShield.build(self.compiled, source, special=special)


def _initial(rule: CompiledRule) -> int:
    """The rule's automaton state before any text."""
    if rule.composed is not None:
        return rule.composed.initial
    assert rule.dfa is not None  # a compiled rule holds one of the two forms
    return rule.dfa.initial


def _violating(rule: CompiledRule, state: int) -> bool:
    """Whether ``state`` of the rule's forbid automaton is a violation."""
    if rule.composed is not None:
        return rule.composed.violating(state)
    assert rule.dfa is not None  # a compiled rule holds one of the two forms
    return bool(rule.dfa.accepting[state])


def _char_offsets(text: str, data: bytes) -> np.ndarray:
    """int [len(data) + 1]: the index of the character containing each byte (len(text) at the end)."""
    lengths = np.fromiter((len(c.encode("utf-8")) for c in text), dtype=np.int64, count=len(text))
    return np.append(np.repeat(np.arange(len(text)), lengths), len(text))


def _is_char_start(data: bytes, pos: int) -> bool:
    return pos >= len(data) or (data[pos] & 0xC0) != 0x80
