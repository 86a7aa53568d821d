"""A compiled spec's automaton rules as one llguidance Lark grammar (mask-only enforcement).

The grammar has one lexeme, ``SAFE``: the valid UTF-8 texts that violate no carried rule, written
as the complement of the union of every rule's *violating* language (a byte language, so that
truncated and malformed characters around a match are judged as our automata judge them),
intersected with valid UTF-8 (llguidance's EOS check needs it; see :func:`export_lark`). Each violating language is built
from the rule's pattern ASTs (after normalisation, case folding and whole-word wrapping, exactly
what the compiler determinises) through the detection languages of :mod:`shield.export.kinds`:

- words / regex / literal: a detection somewhere, ``D·ANY | E`` (``D`` ends at a detecting
  byte, ``E`` is detected by END);
- after: a trigger detection, then a detection of the forbidden pattern from a matcher restarted
  after the trigger's detecting byte (its kind decides the forbidden pattern's first ``\\b``);
- at most N: N + 1 *successive first* detections, each from a matcher restarted after the
  previous one's detecting byte (``first = D & ~(D·NONEMPTY)``), as our matchers count;
- max length N: N + 1 bytes.

What a grammar cannot hold is reported, never dropped: classifier rules (a model scores text on
the host), and any rule whose pattern needs more than a stated export bound. A word rule that is
carried only in part is carried *and* reported (reason starting with :data:`PARTLY`): its exempt
words (:mod:`shield.automata.exemptions`; the grammar forbids them, stricter than the shield),
and for a staged rule (:func:`shield.automata.compiler.is_staged`) its invisible characters,
which the shield drops and the grammar reads as characters (a word or a repeat across one, such
as ``fu\u200buuck``, is forbidden by the shield and not by the grammar; ``x\u200bfuck`` the
other way round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shield.automata.compiler import _pattern_ast, _word_chars, is_staged
from shield.automata.exemptions import repeat_exemptions
from shield.automata.limits import DEFAULT_LIMITS, CompileLimits
from shield.automata.syntax import PREV_BEGIN, PREV_OTHER, PREV_WORD, Node
from shield.export import terms
from shield.export.kinds import Detections, NotExpressible, detections
from shield.export.regex_text import Facts
from shield.export.terms import Boundaries, Term
from shield.monitor import Shield
from shield.rules import (
    AfterRule,
    AtMostRule,
    ClassifierRule,
    LiteralRule,
    MaxLengthRule,
    Pattern,
    RegexRule,
    Rule,
    WordsRule,
    rule_kind,
)

__all__ = ["PARTLY", "LarkExport", "NotCarried", "export_lark"]

#: How the reason of a rule carried only in part begins (the rule is in ``carried`` too).
PARTLY = "carried only in part: "

_CLASSIFIER_REASON = (
    "a classifier rule is scored by a model on the host at scope boundaries; a grammar cannot"
    " call a model, so only the backtracking decoders enforce it"
)


@dataclass(frozen=True)
class NotCarried:
    """A rule the grammar does not enforce, or enforces only in part (reason starting with
    :data:`PARTLY`; the rule is then carried too), and why.

    Attributes:
        rule_id: the rule's id.
        kind: the rule's kind (``classifier``, ``regex``, ...).
        reason: why the grammar cannot carry it.
    """

    rule_id: str
    kind: str
    reason: str


@dataclass(frozen=True)
class LarkExport:
    """The grammar of a spec and what it carries.

    Attributes:
        spec_name: the spec's name.
        grammar: the llguidance Lark grammar text (starts with ``%llguidance {}``).
        carried: ids of the rules the grammar enforces, in spec order.
        not_carried: the rules it does not enforce, in spec order.
    """

    spec_name: str
    grammar: str
    carried: tuple[str, ...]
    not_carried: tuple[NotCarried, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"spec", "format", "grammar", "carried", "not_carried"}``.

        Returns:
            The dict; ``not_carried`` is a list of ``{"rule", "kind", "reason"}``.
        """
        return {
            "spec": self.spec_name,
            "format": "lark",
            "grammar": self.grammar,
            "carried": list(self.carried),
            "not_carried": [
                {"rule": n.rule_id, "kind": n.kind, "reason": n.reason} for n in self.not_carried
            ],
        }


def export_lark(shield: Shield, *, limits: CompileLimits = DEFAULT_LIMITS) -> LarkExport:
    """Export a compiled spec's automaton rules as an llguidance Lark grammar.

    The grammar accepts exactly the valid UTF-8 texts that violate none of the carried rules,
    END included: a text an engine may finish with EOS is one the shield finds clean. It is
    stricter than the shield in two ways: the text must be valid UTF-8 (llguidance masks a
    token that leaves bytes no character can complete), and a token that enters a state from
    which every continuation violates is masked at once (the shield's one-step mask blocks the
    next token instead).

    Args:
        shield: the compiled spec (``shield.compile(spec)``).
        limits: the compile limits the spec was compiled with (word lists are re-checked).

    Returns:
        The grammar, the carried rule ids and the rules it cannot carry, with reasons.

    Raises:
        CompileError: a word list exceeds ``limits`` (compile with the same limits).

    Example:
        >>> import shield, specs
        >>> exported = export_lark(shield.compile(specs.load_library("pii")))
        >>> exported.grammar.splitlines()[0], exported.not_carried
        ('%llguidance {}', ())
    """
    carried: list[tuple[str, Term | None]] = []
    skipped: list[NotCarried] = []
    notes: dict[str, str] = {}
    exporter = _Exporter(limits)
    for rule in shield.rules:
        kind = rule_kind(rule)
        if isinstance(rule, ClassifierRule):
            skipped.append(NotCarried(rule.id, kind, _CLASSIFIER_REASON))
            continue
        validator = getattr(rule, "validator", None)
        if validator is not None:
            notes[rule.id] = (
                f"; its validator {validator!r} is not applied: every match is a violation, as"
                " when decoding"
            )
        try:
            carried.append((rule.id, exporter.violating(rule)))
        except NotExpressible as error:
            skipped.append(NotCarried(rule.id, kind, str(error)))
            continue
        partly = _partly(rule)
        if partly:
            skipped.append(NotCarried(rule.id, kind, PARTLY + "; ".join(partly)))
    named = [*terms.NAMED]
    for bounds in exporter.bounds.values():
        named.extend(bounds.named())
    return LarkExport(
        spec_name=shield.name,
        grammar=_grammar(shield.name, carried, skipped, named, notes),
        carried=tuple(rule_id for rule_id, _ in carried),
        not_carried=tuple(skipped),
    )


def _grammar(
    name: str,
    carried: list[tuple[str, Term | None]],
    skipped: list[NotCarried],
    named: list[tuple[str, Term]],
    notes: dict[str, str],
) -> str:
    header = [
        "%llguidance {}",
        f"// shield export of spec {name!r}: the texts that violate none of the rules below.",
    ]
    roots: list[tuple[str, Term]] = []
    for index, (rule_id, bad) in enumerate(carried, start=1):
        note = notes.get(rule_id, "")
        if bad is None:
            header.append(f"// rule {rule_id}: carried (its pattern can never match){note}")
            continue
        roots.append((f"RULE_{index}", bad))
        header.append(f"// rule {rule_id}: carried as RULE_{index} (its violating texts){note}")
    for item in skipped:
        if item.reason.startswith(PARTLY):
            header.append(f"// rule {item.rule_id}: {item.reason}")
        else:
            header.append(f"// rule {item.rule_id}: NOT carried ({item.kind}): {item.reason}")
    # Intersected with valid UTF-8: llguidance's EOS check is only exact on such lexemes (its
    # mask allows EOS after a violating text when the lexeme can match malformed UTF-8).
    safe = terms.both(terms.negate(terms.alt(term for _, term in roots)), terms.UTF8)
    assert safe is not None  # neither part is the empty language
    lines = terms.render([*roots, ("SAFE", safe)], named=named)
    return "\n".join([*header, "start: SAFE", *lines, ""])


def _partly(rule: Rule) -> list[str]:
    """What the grammar of a carried rule does not carry (see the module docstring)."""
    if isinstance(rule, AfterRule):
        parts: tuple[Pattern, ...] = (rule.trigger, rule.forbid)
    elif isinstance(rule, AtMostRule):
        parts = (rule.pattern,)
    elif isinstance(rule, WordsRule | LiteralRule):
        parts = (rule,)
    else:
        return []
    out = []
    exempt: set[str] = set()
    for part in parts:
        if isinstance(part, WordsRule | LiteralRule):
            words = (part.literal,) if isinstance(part, LiteralRule) else part.words
            exempt |= repeat_exemptions(tuple(dict.fromkeys(words)), part.match)
    if exempt:
        shown = ", ".join(sorted(exempt)[:3])
        out.append(
            f"its {len(exempt)} exempt words ({shown}, ...) are forbidden by the grammar (the"
            " shield allows them: a doubled letter of a dictionary word is not a repeat)"
        )
    if is_staged(rule):  # type: ignore[arg-type]
        names = sorted(rule.match.normalize & {"zero_width", "diacritics"})  # type: ignore[union-attr]
        if names:
            out.append(
                f"the shield drops invisible characters ({', '.join(names)}) before matching, the"
                " grammar reads them as characters: a word or a repeat across one (fu\u200buuck)"
                " is not forbidden by the grammar, and one inside a word (x\u200bfuck) is"
            )
    return out


class _Exporter:
    """The violating language of each rule, with the boundary terms shared across rules."""

    def __init__(self, limits: CompileLimits) -> None:
        self.limits = limits
        self.bounds: dict[frozenset[int], Boundaries] = {frozenset(): terms.BYTES}

    def pattern(self, pattern: Pattern, rule_id: str) -> _Pattern:
        extra = _word_chars(pattern)
        if extra not in self.bounds:
            self.bounds[extra] = terms.boundaries(extra)
        return _Pattern(_pattern_ast(pattern, rule_id, self.limits), self.bounds[extra])

    def counted(self, pattern: Pattern, rule_id: str) -> _Pattern:
        """A pattern whose detections are counted or restarted from (after, at most).

        Raises:
            NotExpressible: the pattern can match the empty text.
        """
        found = self.pattern(pattern, rule_id)
        if found.facts.nullable(found.node):
            raise NotExpressible(
                "its pattern can match the empty text (assertions aside), which our matchers"
                " detect at restarts in a way the export does not model; make the pattern read"
                " at least one character"
            )
        return found

    def violating(self, rule: Rule) -> Term | None:
        """The byte strings that violate ``rule`` (None: none do).

        Raises:
            NotExpressible: the rule cannot be written as a grammar (the message says why).
        """
        if isinstance(rule, WordsRule | RegexRule | LiteralRule):
            return self.pattern(rule, rule.id).at(PREV_BEGIN).contained()
        if isinstance(rule, AfterRule):
            trigger = self.counted(rule.trigger, rule.id).at(PREV_BEGIN).at_byte()
            forbidden = self.counted(rule.forbid, rule.id)
            if not forbidden.looks_back:
                return terms.seq(trigger, forbidden.at(PREV_OTHER).contained())
            ends = {PREV_WORD: terms.BYTES.ends_word, PREV_OTHER: terms.BYTES.ends_other}
            return terms.alt(
                terms.seq(terms.both(trigger, ends[kind]), forbidden.at(kind).contained())
                for kind in (PREV_WORD, PREV_OTHER)
            )
        if isinstance(rule, AtMostRule):
            return _more_than(self.counted(rule.pattern, rule.id), rule.count)
        assert isinstance(rule, MaxLengthRule)
        n = rule.max_bytes + 1
        return terms.seq(terms.repeat(terms.ONE, n, n), terms.ANY)


class _Pattern:
    """One pattern's AST and its detection languages per restart kind (built once each)."""

    def __init__(self, node: Node, bounds: Boundaries) -> None:
        self.node = node
        self.bounds = bounds
        self.facts = Facts()
        self.looks_back = self.facts.reaches_prev_assert(node)
        self._at: dict[int, Detections] = {}

    def at(self, restart: int) -> Detections:
        """Where matches end from a ``restart`` kind (one kind when nothing looks back)."""
        key = restart if self.looks_back else PREV_OTHER
        if key not in self._at:
            self._at[key] = detections(self.node, key, self.facts, self.bounds)
        return self._at[key]


def _more_than(pattern: _Pattern, count: int) -> Term | None:
    """Texts with more than ``count`` successive detections (each restarts after the last)."""
    restarts = (PREV_WORD, PREV_OTHER) if pattern.looks_back else (PREV_OTHER,)
    ends = {PREV_WORD: terms.BYTES.ends_word, PREV_OTHER: terms.BYTES.ends_other}

    def first(restart: int) -> tuple[Term | None, Term | None]:
        found = pattern.at(restart)
        at_byte = found.at_byte()
        byte = terms.both(at_byte, terms.negate(terms.seq(at_byte, terms.NONEMPTY)))
        end = terms.both(found.at_end(), terms.negate(terms.seq(at_byte, terms.ANY)))
        return byte, end

    firsts = {kind: first(kind) for kind in {PREV_BEGIN, *restarts}}
    # beyond[k]: texts with at least j more detections from restart kind k, for j = 0, 1, ...
    beyond: dict[int, Term | None] = {kind: terms.ANY for kind in restarts}
    for j in range(1, count + 2):  # count + 1 detections make a violation
        kinds = (PREV_BEGIN,) if j == count + 1 else restarts
        step: dict[int, Term | None] = {}
        for kind in kinds:
            byte, end = firsts[kind]
            if pattern.looks_back:
                then = terms.alt(terms.seq(terms.both(byte, ends[k]), beyond[k]) for k in restarts)
            else:
                then = terms.seq(byte, beyond[PREV_OTHER])
            step[kind] = terms.alt([then, end if j == 1 else None])
        beyond = step
    return beyond[PREV_BEGIN]
