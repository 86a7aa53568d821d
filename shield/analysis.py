"""Questions about compiled rules, asked of a networkx ``DiGraph`` view of each DFA.

One function per question: rules that can never fire, trap states (every continuation violates),
whether the refusal passes, and DOT export. :func:`analyze` gathers them into a
:class:`SpecReport` for ``shield check``.

A staged rule (a :class:`~shield.automata.composed.Composed`: normaliser × letter automaton, see
:func:`shield.automata.compiler.is_staged`) has no byte DFA to search, and its pair state space
is never built. It is analysed on its letter automaton, over the atoms that complete characters
emit (:func:`shield.automata.letter_analysis.letter_view`): between characters the normaliser is back in its initial state, and
every such atom sequence is the normal form of some text, so "can fire" is exact, and trap
states are exact for the states *between characters* (a state in the middle of a character is
not analysed; the report's ``note`` says so).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shield.automata.alphabet import END
from shield.automata.composed import Composed
from shield.automata.dfa import DFA
from shield.automata.letter_analysis import letter_prefix, letter_reach, letter_traps, letter_view
from shield.monitor import Shield

if TYPE_CHECKING:  # imported where used: ``import shield`` (every command) does not pay for it
    import networkx as nx

__all__ = [
    "AnalysisWarning",
    "RuleReport",
    "SpecReport",
    "analyze",
    "can_fire",
    "dfa_graph",
    "to_dot",
    "trap_states",
]


@dataclass(frozen=True)
class AnalysisWarning:
    """One finding about a spec.

    Attributes:
        rule_id: the rule concerned (None for the whole spec).
        code: ``never-fires``, ``always-fires``, ``trap-states`` or ``refusal-violates``.
        message: one line for the user.
    """

    rule_id: str | None
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class RuleReport:
    """One rule in a report: its id, kind, state count (DFA states; letter plus normaliser states
    for a staged rule), warnings, and a note on how it was analysed (empty for a DFA)."""

    id: str
    kind: str
    states: int
    warnings: tuple[AnalysisWarning, ...]
    note: str = ""


@dataclass(frozen=True)
class SpecReport:
    """The analysis of a spec: per automaton rule, the classifier rule ids, spec-wide warnings."""

    name: str
    rules: tuple[RuleReport, ...]
    classifiers: tuple[str, ...]
    warnings: tuple[AnalysisWarning, ...]
    refusal_passes: bool

    @property
    def ok(self) -> bool:
        """True when there is no warning at all."""
        return not self.warnings and all(not r.warnings for r in self.rules)


def dfa_graph(dfa: DFA) -> nx.DiGraph:
    """The DFA as a graph over byte transitions (END excluded).

    Args:
        dfa: the automaton.

    Returns:
        A DiGraph on state ids; node attribute ``accepting``; edge attribute ``symbols``
        (the sorted bytes labelling the edge).
    """
    import networkx as nx

    graph = nx.DiGraph()
    for s in range(dfa.n_states):
        graph.add_node(s, accepting=bool(dfa.accepting[s]))
    table = dfa.byte_table()[:, :END]  # [n, 256]
    for s in range(dfa.n_states):
        targets = table[s]
        for t in np.unique(targets).tolist():
            graph.add_edge(s, t, symbols=np.flatnonzero(targets == t).tolist())
    return graph


def can_fire(dfa: DFA) -> bool:
    """Whether some text violates (a violation state is reachable, END included).

    Args:
        dfa: a forbid automaton.

    Returns:
        True when the rule can fire.
    """
    import networkx as nx

    graph = dfa_graph(dfa)
    reach = nx.descendants(graph, dfa.initial) | {dfa.initial}
    ends = dfa.transitions[list(reach), dfa.classes[END]]
    return bool(dfa.accepting[list(reach)].any() or dfa.accepting[ends].any())


def trap_states(dfa: DFA) -> list[int]:
    """Non-violating states from which every continuation (bytes, then END) violates.

    Args:
        dfa: a forbid automaton.

    Returns:
        The trap states, sorted.
    """
    graph = dfa_graph(dfa)
    safe = graph.subgraph([s for s in graph if not dfa.accepting[s]])
    end_ok = [s for s in safe if not dfa.accepting[dfa.step(s, END)]]
    # One backward search from every state where the text may end (linear in the graph; one
    # ancestors() call per state would be quadratic on lists of thousands of words).
    can_finish: set[int] = set(end_ok)
    frontier = list(end_ok)
    while frontier:  # each state enters the frontier at most once
        state = frontier.pop()
        for before in safe.predecessors(state):
            if before not in can_finish:
                can_finish.add(before)
                frontier.append(before)
    return sorted(s for s in safe if s not in can_finish)


def _shortest_prefix(dfa: DFA, target: int) -> bytes:
    import networkx as nx

    path = nx.shortest_path(dfa_graph(dfa), dfa.initial, target)
    table = dfa.byte_table()
    return bytes(int(np.flatnonzero(table[a, :END] == b)[0]) for a, b in itertools.pairwise(path))


def to_dot(dfa: DFA, name: str = "rule") -> str:
    """Graphviz DOT text of a DFA (violation states double-circled).

    Args:
        dfa: the automaton.
        name: the graph's name.

    Returns:
        The DOT source.
    """
    graph = dfa_graph(dfa)
    lines = [
        f'digraph "{name}" {{',
        "  rankdir=LR;",
        f"  start [shape=point]; start -> {dfa.initial};",
    ]
    for s, data in graph.nodes(data=True):
        shape = "doublecircle" if data["accepting"] else "circle"
        lines.append(f"  {s} [shape={shape}];")
    for a, b, data in graph.edges(data=True):
        symbols = data["symbols"]
        label = _label(symbols)
        lines.append(f'  {a} -> {b} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines)


def _label(symbols: list[int]) -> str:
    if len(symbols) > 6:
        return f"{len(symbols)} bytes"
    parts = [
        chr(b) if 0x21 <= b < 0x7F and chr(b) not in '"\\' else f"\\\\x{b:02x}" for b in symbols
    ]
    return " ".join(parts)


def _composed_warnings(rule_id: str, composed: Composed) -> list[AnalysisWarning]:
    """The warnings of a staged rule, from its letter automaton (see the module docstring)."""
    view = letter_view(composed)
    if view.accepting[view.initial]:
        return [AnalysisWarning(rule_id, "always-fires", "the rule is violated by the empty text")]
    reach = letter_reach(view)
    if not (view.accepting[reach].any() or view.accepting[view.end[reach]].any()):
        return [AnalysisWarning(rule_id, "never-fires", "no text can violate this rule")]
    traps = np.flatnonzero(letter_traps(view) & reach)
    if view.initial in traps:
        return [AnalysisWarning(rule_id, "always-fires", "every text violates this rule")]
    if traps.size:
        prefix = letter_prefix(view, int(traps[0])).decode("utf-8", "replace")
        return [
            AnalysisWarning(
                rule_id,
                "trap-states",
                f"{traps.size} letter state(s) from which every continuation violates, "
                f"e.g. after {prefix!r}",
            )
        ]
    return []


def _dfa_warnings(rule_id: str, dfa: DFA) -> list[AnalysisWarning]:
    """The warnings of a rule with a byte DFA."""
    if dfa.accepting[dfa.initial]:
        return [AnalysisWarning(rule_id, "always-fires", "the rule is violated by the empty text")]
    if not can_fire(dfa):
        return [AnalysisWarning(rule_id, "never-fires", "no text can violate this rule")]
    traps = trap_states(dfa)
    if dfa.initial in traps:
        return [AnalysisWarning(rule_id, "always-fires", "every text violates this rule")]
    if traps:
        prefix = _shortest_prefix(dfa, traps[0]).decode("utf-8", "replace")
        return [
            AnalysisWarning(
                rule_id,
                "trap-states",
                f"{len(traps)} state(s) from which every continuation violates, "
                f"e.g. after {prefix!r}",
            )
        ]
    return []


#: How a staged rule is analysed (the report's note).
STAGED_NOTE = (
    "staged (normaliser x letter automaton): analysed on its {letters} letter states between"
    " characters; states inside a character are not searched for traps"
)


def analyze(shield: Shield) -> SpecReport:
    """Analyse a compiled spec for ``shield check``.

    Args:
        shield: the compiled shield.

    Returns:
        The report: per automaton rule its kind, state count, warnings and (for a staged rule)
        how it was analysed.

    Example:
        >>> import shield, specs
        >>> report = shield.analyze(shield.compile(specs.load_library("secrets")))  # doctest: +SKIP
        >>> report.ok  # doctest: +SKIP
        True
    """
    reports = []
    for rule in shield.compiled:
        if rule.composed is not None:
            warnings = _composed_warnings(rule.rule_id, rule.composed)
            note = STAGED_NOTE.format(letters=rule.composed.n_letters)
        else:
            assert rule.dfa is not None  # a compiled rule holds one of the two forms
            warnings, note = _dfa_warnings(rule.rule_id, rule.dfa), ""
        reports.append(RuleReport(rule.rule_id, rule.kind, rule.n_states, tuple(warnings), note))
    spec_warnings: list[AnalysisWarning] = []
    refusal = shield.first_violation(shield.policy.refusal.encode("utf-8"), final=True)
    if refusal is not None:
        spec_warnings.append(
            AnalysisWarning(
                refusal.rule,
                "refusal-violates",
                f"the refusal text violates the rule at {refusal.match!r}",
            )
        )
    return SpecReport(
        shield.name,
        tuple(reports),
        tuple(c.id for c in shield.classifiers),
        tuple(spec_warnings),
        refusal is None,
    )
