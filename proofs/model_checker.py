"""A small-scope exhaustive model checker for shielded decoding.

It drives the reference decoder's transition system (:class:`shield.reference.Machine`, the same
code the JAX decoder replays at every event) with *every* token at every choice, which covers the
behaviour of every possible model at once — adversarial ones included — on small instances: a
vocabulary of a few one-byte tokens plus EOS, small specs (automaton and classifier rules), small
bounds, an optional prefill. The configurations and transitions form a directed graph (networkx).
Every check below holds on every node or every edge of that graph, so on every path:

* termination: the measure ``(B - D, L - |K|)`` (budget left, room left; ``D`` the tokens
  discarded so far as read off the rollback events, ``L = |P| + N``) is non-negative at every
  configuration and decreases lexicographically on every transition between configurations; the
  graph of decoder *states* (configurations without their step counters and event log, which make
  the configuration graph acyclic by construction) is acyclic; every sink is a finished generation;
  the longest path produces at most ``|P| + N + B`` tokens (at most ``N + B`` model steps, also
  after a rollback into the prefill) and takes at most ``Machine.fuel`` transitions (the exploration stops at
  the first path longer than that: a buggy machine's graph may be infinite);
* bounded rollback: every rewind keeps ``continuation[:t]``, with ``end - t <= R`` and
  ``t >= 0`` (``backtrack``) or ``t = 0`` (``reset``);
* soundness (``backtrack``, ``reset``): no kept text contains a match, its stored monitor states
  are those of re-reading it, every closed classifier window of it is safe; every finished text
  passes the spec as a finished text (automaton rules with END, every classifier window); a
  refusal happens only after an ``exhausted`` event; an exhaustion happens only when every
  position within ``R`` tokens has used its retries or a rewind to one of them would overrun the
  budget (a weaker condition than the controller's own choice of target);
* progress (``backtrack``): along every path, no continuation extends a failed continuation's
  prefix up to and including its token at the rewind target (computed over all paths at once,
  by propagating the set of failed prefixes in topological order); no position is retried more
  than ``M`` times while its prefix is unchanged (counted from the rollback events, not the
  controller's trace);
* transparency: for ``none``, and for ``reset`` and ``backtrack`` before their first rewind,
  nothing is blocked beyond the never-produced tokens (so a sampler draws what plain decoding
  draws: every-token exploration cannot see a distribution, only the logit processing); for
  ``none`` nothing is rewound; for ``mask`` nothing is rewound and its graph is a subgraph of the ``none`` graph (the
  only difference is blocked tokens); for ``mask``, ``reset`` and ``backtrack``, every plain path
  that never makes the shield reject is a path of the strategy with the same tokens, the same
  finish reason and no rewind.

Delayed classifier verdicts (``Instance.verdict_delay = d > 0``, the overlapped classifier path of
the JAX decoder): a closed window's verdict may be delivered at any time from when it closes until
``d`` tokens later, and before any event; the exploration adds an edge for every early delivery
(kind ``verdict``), so every delivery schedule within the bound is a path. The checks above then
hold with: the measure extended by the pending windows, ``(B - D, L - |K|, |pending|)``; at most
``|P| + N + (d + 1) B`` tokens produced; a rewind removes at most ``R + d`` kept tokens (its planned
rollback, from the window's end, is still at most ``R``); kept text may hold an unsafe window only
while that window is pending, and no finished generation has a pending window.

Each exploration also counts what it reached (:class:`Coverage`: rewinds, positions retried twice,
stuck rows, exhaustion, refusals, rollbacks into the prefill, classifier failures, END-confirmed
failures, violations that plain decoding lets through, clean plain paths), so that a test can
assert a scenario happened before it trusts the absence of problems.

Run ``python -m proofs.model_checker`` for the default instances; ``tests/proofs`` runs it too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any

import networkx as nx

import shield
from shield.judge import Judge
from shield.policy import BacktrackPolicy
from shield.reference import Choose, Config, Finished, Machine, ReferenceSettings
from shield.result import REWINDING_STRATEGIES, STRATEGIES, Event
from shield.rules import ClassifierRule, LiteralRule, MatchOptions, RegexRule, Rule, WordsRule

__all__ = [
    "CONTAINS_B",
    "POSSIBLE",
    "SCENARIOS",
    "VOCABULARY",
    "Coverage",
    "Instance",
    "Report",
    "check",
    "contains_b",
    "default_instances",
    "explore",
    "main",
]

#: The default vocabulary: one-byte tokens plus EOS (id 0, no bytes).
VOCABULARY: tuple[bytes, ...] = (b"", b"a", b"b", b" ")
EOS = 0

#: The scorer of the classifier rules below, by the name a spec gives it (``module:function``).
CONTAINS_B = "proofs.model_checker:contains_b"


def contains_b(texts: list[str]) -> list[float]:
    """A deterministic classifier: 1.0 for a text that contains the letter ``b``, else 0.0.

    Args:
        texts: the windows to score.

    Returns:
        One score per text.
    """
    return [1.0 if "b" in text else 0.0 for text in texts]


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One small decoding problem.

    Attributes:
        name: a short name (test ids, output).
        rules: the spec's rules, automaton and classifier.
        policy: the backtracking policy.
        strategy: ``none``, ``mask``, ``reset`` or ``backtrack``.
        max_new_tokens: N.
        prefill: forced response start (token ids).
        vocabulary: token byte strings; id 0 must be EOS (``b""``).
        expect: the :data:`SCENARIOS` this instance was built to reach; a test asserts each is
            reached before it trusts the absence of problems.
        verdict_delay: d, the most tokens a classifier verdict may arrive after its window
            closed (0: synchronous).
        narrow_windows: an unsafe window fails from the piece that made it unsafe
            (``ReferenceSettings.narrow_windows``; False: from the window's start).
    """

    name: str
    rules: tuple[Rule, ...]
    policy: BacktrackPolicy
    strategy: str = "backtrack"
    max_new_tokens: int = 3
    prefill: tuple[int, ...] = ()
    vocabulary: tuple[bytes, ...] = VOCABULARY
    expect: frozenset[str] = frozenset()
    verdict_delay: int = 0
    narrow_windows: bool = True


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """What one exploration reached: counts over the nodes or edges of the configuration graph.

    Attributes:
        rewinds: transitions that rewound the row.
        retried_twice: configurations where some position has been rewound to at least twice while
            its prefix stayed the same (under ``reset``: two restarts).
        stuck: transitions taken because every token was banned at the row's position.
        budget: finished generations that stopped on exhaustion (``on_exhausted = "stop"``).
        refused: finished generations that returned the refusal.
        prefill_rollbacks: rewinds whose target lies inside the prefill.
        classifier_failures: rewinds or exhaustions caused by a classifier rule.
        end_confirmed: rewinds or exhaustions caused by an automaton rule at the END check (EOS
            or the length limit): whole-word matches confirmed by the end of the text.
        plain_violations: finished generations of ``none``/``mask`` that report a violation.
        clean_paths: plain (``none``) paths that never make the shield reject, checked for
            transparency.
        late_rollbacks: rewinds for a classifier verdict delivered after the row had read
            tokens past the window (delayed verdicts).
    """

    rewinds: int = 0
    retried_twice: int = 0
    stuck: int = 0
    budget: int = 0
    refused: int = 0
    prefill_rollbacks: int = 0
    classifier_failures: int = 0
    end_confirmed: int = 0
    plain_violations: int = 0
    clean_paths: int = 0
    late_rollbacks: int = 0

    def __add__(self, other: Coverage) -> Coverage:
        """Field-wise sum (to aggregate instances)."""
        return Coverage(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Coverage)}
        )

    def reached(self) -> frozenset[str]:
        """The names of the scenarios counted at least once."""
        return frozenset(f.name for f in fields(Coverage) if getattr(self, f.name) > 0)


#: The scenario names an :class:`Instance` may expect (the fields of :class:`Coverage`).
SCENARIOS: tuple[str, ...] = tuple(f.name for f in fields(Coverage))


@dataclass(frozen=True, kw_only=True)
class Report:
    """What the exploration found.

    Attributes:
        nodes: configurations (and finished generations) reached.
        finished: finished generations reached.
        longest_path: the most transitions on one path.
        most_tokens: the most tokens produced (sampled or forced) on one path.
        coverage: the scenarios reached.
        problems: the violated properties, as ``"property: message"`` (the first five messages
            per property; empty when every property holds).
    """

    nodes: int
    finished: int
    longest_path: int
    most_tokens: int
    coverage: Coverage
    problems: tuple[str, ...]


# -- building and exploring ------------------------------------------------------------------------


def _machine(instance: Instance, strategy: str | None = None) -> tuple[Machine, shield.Shield]:
    """The transition system of ``instance`` (with another strategy when one is given)."""
    spec = SimpleNamespace(name="model-check", rules=instance.rules, policy=instance.policy)
    compiled = shield.compile(spec)
    vocabulary = instance.vocabulary
    judge = Judge(compiled, compiled.lift(vocabulary))
    settings = ReferenceSettings(
        strategy=strategy or instance.strategy,
        max_new_tokens=instance.max_new_tokens,
        verdict_delay=instance.verdict_delay,
        narrow_windows=instance.narrow_windows,
    )

    def encode(text: str) -> tuple[int, ...]:
        # The refusal is spelled with the one-byte tokens of the vocabulary.
        return tuple(vocabulary.index(bytes([byte])) for byte in text.encode())

    return Machine(judge, EOS, settings, instance.prefill, encode=encode), compiled


def _successors(
    machine: Machine, config: Config
) -> list[tuple[str, tuple[int, ...], Config | Finished]]:
    """Every next configuration, with the kind of transition and the continuation it judged.

    Returns:
        ``(kind, continuation, successor)`` triples; ``kind`` is ``forced``, ``sampled`` (a
        token read), ``end`` (the length limit), ``stuck`` (every token banned) or ``verdict``
        (the oldest pending classifier verdict delivered before it is due);
        ``continuation`` is the kept tokens plus the token read — the failed continuation when
        the transition is a rewind.
    """
    early = [("verdict", config.kept, machine.verdict(config))] if config.pending else []
    return early + _actions(machine, config)


def _actions(
    machine: Machine, config: Config
) -> list[tuple[str, tuple[int, ...], Config | Finished]]:
    """The successors by the machine's next action (see :func:`_successors`)."""
    action = machine.action(config)
    if action == "end":
        return [("end", config.kept, machine.end(config))]
    if isinstance(action, int):
        return [("forced", (*config.kept, action), machine.read(config, action, forced=True))]
    allowed = [t for t in range(len(action.blocked)) if not action.blocked[t]]
    if not allowed:
        return [("stuck", config.kept, machine.stuck(config))]
    return [
        ("sampled", (*config.kept, token), machine.read(config, token, forced=False))
        for token in allowed
    ]


def explore(machine: Machine, max_nodes: int = 5_000) -> nx.DiGraph:
    """The graph of every configuration reachable under every choice of tokens.

    Nodes are integers (hashing a configuration with a long event log is slow, so each one is
    hashed once, here); ``graph.graph["values"][n]`` is node ``n``'s :class:`Config` or
    :class:`Finished`, ``graph.graph["ids"]`` the inverse map, node 0 the initial configuration.
    Edges carry ``kind`` and ``continuation`` (see :func:`_successors`) and ``tokens``: 1 when
    the transition produced a token (sampled or forced), else 0.

    Args:
        machine: the transition system.
        max_nodes: fuel: the most configurations expanded; the graph's ``complete`` attribute
            is False when it ran out, or when a path longer than ``machine.fuel`` transitions
            was found (its last node is then ``graph.graph["overlong"]``; such a run breaks
            termination, and the rest of the graph may be infinite).

    Returns:
        The DiGraph.
    """
    graph = nx.DiGraph()
    start = machine.initial()
    values: list[Config | Finished] = [start]
    ids: dict[Config | Finished, int] = {start: 0}
    depth = [0]  # transitions on the path that found each node
    overlong: Config | Finished | None = None
    graph.add_node(0)
    frontier = [0]
    for _ in range(max_nodes):  # fuel: each round expands one configuration
        if not frontier or overlong is not None:
            break
        node = frontier.pop()
        config = values[node]
        assert isinstance(config, Config)
        for kind, continuation, successor in _successors(machine, config):
            known = ids.get(successor)
            if known is None:
                known = ids[successor] = len(values)
                values.append(successor)
                depth.append(depth[node] + 1)
                graph.add_node(known)
                if depth[known] > machine.fuel:
                    # A run longer than the reference loop's fuel is already a counterexample
                    # to termination; a buggy machine's graph may be infinite, so stop here.
                    overlong = successor
                elif isinstance(successor, Config):
                    frontier.append(known)
            produced = 1 if kind in ("forced", "sampled") else 0
            graph.add_edge(node, known, kind=kind, continuation=continuation, tokens=produced)
    complete = not frontier and overlong is None
    graph.graph.update(values=values, ids=ids, complete=complete, overlong=overlong)
    return graph


# -- what the events say, independently of the controller's bookkeeping ---------------------------


def _observed(events: Sequence[Event]) -> tuple[dict[int, int], int]:
    """Retries per position and tokens discarded, read off the rollback events.

    A rewind to ``t`` is a retry at ``t``; it discards the retries counted at later positions
    (their prefix is gone) and keeps those at ``t`` and before (their prefix is unchanged).

    Returns:
        ``(retries, discarded)``.
    """
    retries: dict[int, int] = {}
    discarded = 0
    for event in events:
        if event.kind != "rollback":
            continue
        retries = {p: n for p, n in retries.items() if p <= event.to_token}
        retries[event.to_token] = retries.get(event.to_token, 0) + 1
        discarded += event.from_token - event.to_token
    return retries, discarded


def _config(node: Config | Finished) -> Config:
    return node.config if isinstance(node, Finished) else node


def _new_event(before: Config, after: Config | Finished) -> Event | None:
    """The event a transition added (a rollback or an exhaustion), if any."""
    events = _config(after).events
    if len(events) > len(before.events) and events[-1].kind in ("rollback", "exhausted"):
        return events[-1]
    return None


def _is_rewind(before: Config, after: Config | Finished) -> bool:
    return isinstance(after, Config) and after.attempt > before.attempt


def _state_key(node: Config | Finished) -> tuple[object, ...]:
    """A configuration without what only grows (step counters, event log, rewind count beyond 0).

    Two configurations with the same key have the same successors' keys (the machine reads
    ``attempt`` only to know whether the row has rewound), so a cycle among keys is a run that can
    go on for ever.
    """
    if isinstance(node, Finished):
        return ("finished", node.tokens, node.reason)
    trace = node.trace
    return (
        node.kept,
        node.states,
        trace.bans,
        trace.retries,
        trace.discarded,
        node.attempt > 0,
        node.repair_until,
        node.released,
        node.pending,
    )


# -- the checks ------------------------------------------------------------------------------------


class _Problems:
    """Collects problem messages; keeps the first few of each property."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.per_kind: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        count = self.per_kind.get(kind, 0)
        self.per_kind[kind] = count + 1
        if count < 5:
            self.messages.append(f"{kind}: {message}")


def _edges(graph: nx.DiGraph) -> Iterator[tuple[Config, Config | Finished, dict[str, Any]]]:
    """Every edge as ``(before, after, data)`` values."""
    values = graph.graph["values"]
    for u, v, data in graph.edges(data=True):
        yield values[u], values[v], data


def _check_termination(
    instance: Instance, machine: Machine, graph: nx.DiGraph, problems: _Problems
) -> tuple[int, int]:
    """The measure, the state graph, the sinks and the path bounds.

    Returns:
        The most transitions and the most tokens on one path (-1 when the graph is incomplete).
    """
    values: list[Config | Finished] = graph.graph["values"]
    budget = instance.policy.max_discarded_tokens
    limit = len(instance.prefill) + instance.max_new_tokens
    # A late verdict also discards the (at most d) tokens read after its window.
    wasted = instance.verdict_delay * budget
    token_bound = limit + budget + wasted
    overlong = graph.graph["overlong"]
    if overlong is not None:
        problems.add(
            "termination",
            f"a run takes more than {machine.fuel} transitions (at {_config(overlong).kept})",
        )
    elif not graph.graph["complete"]:
        problems.add("termination", f"exploration ran out of fuel at {len(values)} nodes")
    # The configuration graph is acyclic by construction (steps and the event log only grow),
    # so its acyclicity proves nothing; the graph of decoder states can have a cycle.
    keys: dict[tuple[object, ...], int] = {}
    states = nx.DiGraph()
    key_of = [keys.setdefault(_state_key(value), len(keys)) for value in values]
    states.add_edges_from((key_of[u], key_of[v]) for u, v in graph.edges)
    if not nx.is_directed_acyclic_graph(states):
        problems.add("termination", "the decoder's states have a cycle (a run that never ends)")
    discarded = [_observed(_config(value).events)[1] for value in values]

    def measure(node: int) -> tuple[int, int, int]:
        config = _config(values[node])
        return budget - discarded[node], limit - len(config.kept), len(config.pending)

    for node, value in enumerate(values):
        if graph.out_degree(node) == 0 and not isinstance(value, Finished):
            if graph.graph["complete"]:
                problems.add("termination", f"configuration {value.kept} has no successor")
            continue
        if isinstance(value, Config) and min(measure(node)) < 0:
            problems.add("termination", f"measure {measure(node)} < 0 at {value.kept}")
        config = _config(value)
        produced = config.steps + config.forced
        if produced > token_bound:
            problems.add("termination", f"{produced} tokens produced > {token_bound}")
        # Also after a rollback into the prefill: the row's limit keeps the model to N kept tokens.
        if config.steps > instance.max_new_tokens + budget + wasted:
            problems.add(
                "termination",
                f"{config.steps} model steps > N + (d + 1) B = {token_bound - len(instance.prefill)}",
            )
        if isinstance(value, Finished) and value.reason not in (
            "eos",
            "length",
            "budget",
            "refused",
        ):
            problems.add("termination", f"finish reason {value.reason!r}")
    for u, v in graph.edges:
        if isinstance(values[v], Config) and not measure(v) < measure(u):
            problems.add(
                "termination",
                f"measure {measure(u)} -> {measure(v)} does not decrease "
                f"({_config(values[u]).kept} -> {_config(values[v]).kept})",
            )
    if not graph.graph["complete"] or not nx.is_directed_acyclic_graph(graph):
        return -1, -1
    longest = nx.dag_longest_path_length(graph, weight=None)
    most_tokens = nx.dag_longest_path_length(graph, weight="tokens")
    if most_tokens > token_bound:
        problems.add("termination", f"a path produces {most_tokens} tokens > {token_bound}")
    if longest > machine.fuel:
        problems.add("termination", f"a path takes {longest} transitions > fuel {machine.fuel}")
    return longest, most_tokens


def _check_rewinds(instance: Instance, graph: nx.DiGraph, problems: _Problems) -> None:
    """Bounded rollback on every rewind edge, and at most M retries per position at every node."""
    policy = instance.policy
    for before, after, data in _edges(graph):
        if not isinstance(after, Config) or not _is_rewind(before, after):
            continue
        continuation = data["continuation"]
        target = len(after.kept)
        event = _new_event(before, after)
        if event is None or event.kind != "rollback":
            problems.add("bounded rollback", f"a rewind without a rollback event at {before.kept}")
            continue
        late = event.from_token != len(continuation)
        if event.to_token != target or (
            late and not (instance.verdict_delay and event.from_token <= len(before.kept))
        ):
            problems.add(
                "bounded rollback", f"{event} does not describe {continuation} -> {after.kept}"
            )
        if after.kept != continuation[:target]:
            problems.add(
                "bounded rollback", f"{continuation} rewound to {after.kept}, not a prefix"
            )
        if instance.strategy == "reset" and target != 0:
            problems.add("bounded rollback", f"reset rewound to {target}, not 0")
        if instance.strategy == "backtrack" and (
            target < 0 or event.from_token - target > policy.max_rollback_tokens
        ):
            problems.add(
                "bounded rollback", f"{continuation} rewound to {target}: more than R tokens"
            )
        if len(before.kept) - target > policy.max_rollback_tokens + instance.verdict_delay and (
            instance.strategy == "backtrack"
        ):
            problems.add(
                "bounded rollback",
                f"{before.kept} rewound to {target}: more than R + d kept tokens removed",
            )
    if instance.strategy != "backtrack":
        return
    for value in graph.graph["values"]:
        config = _config(value)
        retries, _ = _observed(config.events)
        if retries and max(retries.values()) > policy.max_retries:
            problems.add(
                "progress", f"retries {retries} exceed M={policy.max_retries} at {config.kept}"
            )
        if isinstance(value, Config) and dict(config.trace.retries) != retries:
            problems.add("progress", f"trace retries {config.trace.retries} != observed {retries}")


def _check_progress(graph: nx.DiGraph, problems: _Problems) -> None:
    """Along every path, no continuation extends a failed prefix (``backtrack``).

    A failed prefix is read off each rewind edge: the failed continuation up to and including its
    token at the rewind target. The set of failed prefixes that some path to a node has seen is
    propagated in topological order (the union over the node's predecessors), so one pass checks
    every path. The prefixes come from the edges themselves, not from the controller's bans, so a
    controller that forgets or drops a ban is caught.
    """
    values: list[Config | Finished] = graph.graph["values"]
    seen: dict[int, frozenset[tuple[int, ...]]] = {}
    for node in nx.topological_sort(graph):
        before = values[node]
        if isinstance(before, Finished):
            continue
        failed = seen.pop(node, frozenset())
        for _, successor, data in graph.out_edges(node, data=True):
            continuation = data["continuation"]
            for prefix in failed:
                if continuation[: len(prefix)] == prefix:
                    problems.add("progress", f"{continuation} repeats the failed prefix {prefix}")
            after = values[successor]
            if isinstance(after, Finished):
                continue
            passed = failed
            if _is_rewind(before, after):
                passed = failed | {continuation[: len(after.kept) + 1]}
            seen[successor] = seen.get(successor, frozenset()) | passed


def _check_soundness(
    instance: Instance,
    machine: Machine,
    compiled: shield.Shield,
    graph: nx.DiGraph,
    problems: _Problems,
) -> None:
    """Kept texts never violate; finished texts pass as finished texts; refusals are justified."""
    judge = machine.judge
    policy = instance.policy
    for value in graph.graph["values"]:
        if isinstance(value, Finished):
            continue
        data = b"".join(judge.token_bytes_of(value.kept))
        found = compiled.first_violation(data, final=False)
        if found is not None:
            problems.add("soundness", f"kept {data!r} contains a match of {found.rule}")
        state = judge.initial()
        refed = [state]
        for index, token in enumerate(value.kept):
            state, _ = judge.feed(state, token, value.kept[:index])
            refed.append(state)
        if tuple(refed) != value.states:
            problems.add("soundness", f"stored monitor states of {value.kept} are not re-read ones")
        awaiting = {(w.rule.id, w.start, w.end) for w in value.pending}
        for end in range(1, len(value.kept) + 1):
            closed = judge.closed_windows(value.kept[:end])
            window = judge.unsafe(
                [w for w in closed if (w.rule.id, w.start, w.end) not in awaiting]
            )
            if window is not None:
                problems.add(
                    "soundness", f"kept {value.kept} holds the unsafe window {window.text!r}"
                )
        if value.pending and value.released > min(w.start for w in value.pending):
            problems.add("soundness", f"released text of {value.kept} awaits a verdict")
    for before, after, _ in _edges(graph):
        if not isinstance(after, Finished):
            continue
        events = after.config.events
        if after.config.pending:
            problems.add("soundness", f"{after.text!r} finished with a verdict pending")
        if after.reason == "refused":
            if after.text != policy.refusal or compiled.scan(after.text):
                problems.add(
                    "soundness", f"refusal {after.text!r} is not the spec's passing refusal"
                )
            if not any(event.kind == "exhausted" for event in events):
                problems.add("soundness", "refusal without exhaustion")
        else:
            reported = judge.report(after.tokens)
            if reported:
                problems.add("soundness", f"returned {after.text!r} violates {reported[0].rule}")
        event = _new_event(before, after)
        if event is not None and event.kind == "exhausted":
            _check_exhaustion(instance, before, event, problems)


def _check_exhaustion(
    instance: Instance, before: Config, event: Event, problems: _Problems
) -> None:
    """An exhaustion is justified: every position within reach has used its retries, or a rewind
    would overrun the discard budget (checked from the events, not the controller's trace)."""
    policy = instance.policy
    retries, discarded = _observed(before.events)
    end = event.from_token
    if instance.strategy == "reset":
        justified = discarded + end > policy.max_discarded_tokens
    else:
        reach = range(max(0, end - policy.max_rollback_tokens), end)
        open_positions = [p for p in reach if retries.get(p, 0) < policy.max_retries]
        justified = not open_positions or any(
            discarded + end - p > policy.max_discarded_tokens for p in open_positions
        )
    if not justified:
        problems.add("soundness", f"exhausted at {before.kept} with retries and budget left")


def _check_plain(
    instance: Instance, machine: Machine, graph: nx.DiGraph, plain: nx.DiGraph, problems: _Problems
) -> int:
    """Transparency.

    Returns:
        The number of clean plain paths (replayed by every strategy but ``none``).
    """
    never = machine.judge.never(machine.eos_ids)
    for value in graph.graph["values"]:
        if isinstance(value, Finished):
            if instance.strategy in ("none", "mask") and value.reason not in ("eos", "length"):
                problems.add("transparency", f"{instance.strategy} finished with {value.reason}")
            continue
        action = machine.action(value)
        if isinstance(action, Choose):
            # Plain decoding blocks only the never-produced tokens; so do the rewinding
            # strategies until their first rewind (the proof's lemma: before a rewind there are
            # no bans and no repair mask, so a sampler draws exactly what plain decoding draws).
            # Every-token exploration cannot see a changed distribution, only this.
            plain_processing = instance.strategy == "none" or (
                instance.strategy in REWINDING_STRATEGIES and value.attempt == 0
            )
            if plain_processing and not (action.blocked == never).all():
                problems.add("transparency", f"{instance.strategy} blocked a token at {value.kept}")
            if (never & ~action.blocked).any():
                problems.add("transparency", f"a never-produced token is allowed at {value.kept}")
    if instance.strategy in ("none", "mask"):
        plain_ids = plain.graph["ids"]
        for before, after, _ in _edges(graph):
            if _is_rewind(before, after) or _new_event(before, after) is not None:
                problems.add("transparency", f"{instance.strategy} rewound at {before.kept}")
            if instance.strategy == "mask" and not plain.has_edge(
                plain_ids.get(before), plain_ids.get(after)
            ):
                problems.add(
                    "transparency", f"mask took a step plain decoding cannot: {before.kept}"
                )
    clean = [
        value
        for value in plain.graph["values"]
        if isinstance(value, Finished) and not value.config.events
    ]
    if instance.strategy != "none":  # plain decoding is trivially itself
        for done in clean:
            _replay(machine, done, problems)
    return len(clean)


def _replay(machine: Machine, plain: Finished, problems: _Problems) -> None:
    """The strategy decodes ``plain``'s tokens the same way: same actions, nothing blocked, no
    rewind, the same finish."""
    current: Config | Finished = machine.initial()
    for token in (*plain.tokens, EOS if plain.reason == "eos" else None):
        if isinstance(current, Finished) or current.attempt > 0:
            break
        action = machine.action(current)
        if token is None:
            current = machine.end(current) if action == "end" else current
            break
        if isinstance(action, Choose) and not action.blocked[token]:
            current = machine.read(current, token, forced=False)
        elif action == token:
            current = machine.read(current, token, forced=True)
        else:
            problems.add("transparency", f"plain path {plain.tokens} diverges at {current.kept}")
            return
    same = (
        isinstance(current, Finished)
        and current.tokens == plain.tokens
        and current.reason == plain.reason
        and current.config.attempt == 0
        and not current.config.events
    )
    if not same:
        problems.add(
            "transparency", f"plain path {plain.tokens} ({plain.reason}) is not reproduced"
        )


def _coverage(instance: Instance, graph: nx.DiGraph, clean_paths: int) -> Coverage:
    """Count what the exploration reached (see :class:`Coverage`)."""
    classifier_ids = {rule.id for rule in instance.rules if isinstance(rule, ClassifierRule)}
    counts = dict.fromkeys(SCENARIOS, 0)
    counts["clean_paths"] = clean_paths
    for value in graph.graph["values"]:
        config = _config(value)
        retries, _ = _observed(config.events)
        if isinstance(value, Config) and retries and max(retries.values()) >= 2:
            counts["retried_twice"] += 1
        if isinstance(value, Finished):
            counts["budget"] += value.reason == "budget"
            counts["refused"] += value.reason == "refused"
            violated = any(event.kind == "violation" for event in config.events)
            counts["plain_violations"] += violated and instance.strategy in ("none", "mask")
    for before, after, data in _edges(graph):
        counts["stuck"] += data["kind"] == "stuck"
        event = _new_event(before, after)
        if isinstance(after, Config) and _is_rewind(before, after):
            counts["rewinds"] += 1
            counts["prefill_rollbacks"] += len(after.kept) < len(instance.prefill)
            counts["late_rollbacks"] += event is not None and event.from_token < len(before.kept)
        if event is None:
            continue
        counts["classifier_failures"] += event.rule in classifier_ids
        at_end = data["kind"] == "end" or (
            data["kind"] == "sampled" and data["continuation"][-1] == EOS
        )
        counts["end_confirmed"] += at_end and event.rule not in classifier_ids
    return Coverage(**counts)


def check(instance: Instance, max_nodes: int = 5_000) -> Report:
    """Explore ``instance`` and check the theorems on every node and edge of its graph.

    Args:
        instance: the problem.
        max_nodes: fuel for each exploration (running out is reported as a problem).

    Returns:
        The :class:`Report`.

    Raises:
        ValueError: the instance's strategy is unknown or its vocabulary's id 0 is not EOS.
    """
    if instance.strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(STRATEGIES)}; got {instance.strategy!r}"
        )
    if instance.vocabulary[EOS] != b"":
        raise ValueError(f"token {EOS} must be EOS (no bytes); got {instance.vocabulary[EOS]!r}")
    machine, compiled = _machine(instance)
    graph = explore(machine, max_nodes)
    plain_machine, _ = _machine(instance, "none")
    plain = graph if instance.strategy == "none" else explore(plain_machine, max_nodes)
    problems = _Problems()
    longest, most_tokens = _check_termination(instance, machine, graph, problems)
    clean_paths = 0
    if graph.graph["complete"] and plain.graph["complete"]:
        # On a graph cut short by the fuel the termination problem is the finding; the other
        # checks would only repeat it, slowly.
        _check_rewinds(instance, graph, problems)
        if instance.strategy == "backtrack":  # reset keeps no bans: progress is not claimed
            _check_progress(graph, problems)
        if instance.strategy in REWINDING_STRATEGIES:
            _check_soundness(instance, machine, compiled, graph, problems)
        clean_paths = _check_plain(instance, machine, graph, plain, problems)
    values = graph.graph["values"]
    return Report(
        nodes=len(values),
        finished=sum(isinstance(value, Finished) for value in values),
        longest_path=longest,
        most_tokens=most_tokens,
        coverage=_coverage(instance, graph, clean_paths),
        problems=tuple(problems.messages),
    )


# -- the default instances -------------------------------------------------------------------------


def _scenarios() -> list[Instance]:
    """One instance per scenario, for the strategy ``backtrack``; :func:`default_instances`
    runs each under every strategy."""
    token = BacktrackPolicy(
        checkpoint="token", max_rollback_tokens=1, max_retries=3, max_discarded_tokens=4
    )
    stuck_rules = (
        RegexRule(id="a-then-ab", pattern="a[ab]"),
        WordsRule(id="a-word", words=("a",), match=MatchOptions(whole_word=True)),
    )
    return [
        # Every continuation of "a" fails ("aa", "ab" by the regex, "a"+END by the whole word),
        # and R = 1 keeps every rewind at the failing position: position 1 is retried three
        # times, then the row is stuck there and rewinds to 0; the budget runs out on others.
        Instance(
            name="stuck",
            rules=stuck_rules,
            policy=token,
            max_new_tokens=3,
            vocabulary=(b"", b"a", b"b"),
            expect=frozenset({"rewinds", "retried_twice", "stuck", "budget", "end_confirmed"}),
        ),
        # The same spec with M = 2: the third failure at position 1 finds its retries spent and
        # the refusal is returned ("b" passes the spec).
        Instance(
            name="retries",
            rules=stuck_rules,
            policy=BacktrackPolicy(
                checkpoint="token",
                max_rollback_tokens=1,
                max_retries=2,
                max_discarded_tokens=6,
                on_exhausted="refuse",
                refusal="b",
            ),
            max_new_tokens=3,
            vocabulary=(b"", b"a", b"b"),
            expect=frozenset({"rewinds", "retried_twice", "refused", "end_confirmed"}),
        ),
        # A prefill "a" followed by "b" violates "ab": the rewind goes into the prefill, after
        # which the model decides every position; M = 2 retries per position.
        Instance(
            name="prefill",
            rules=(WordsRule(id="ab", words=("ab",)),),
            policy=BacktrackPolicy(
                checkpoint="token", max_rollback_tokens=2, max_retries=2, max_discarded_tokens=5
            ),
            prefill=(1,),
            # A rollback into the prefill lowers the limit to t + N: N = 4 leaves room to spend
            # the budget.
            max_new_tokens=4,
            expect=frozenset({"rewinds", "prefill_rollbacks", "budget"}),
        ),
        # A whole-word rule confirmed by END or a space, with a refusal on exhaustion, and a
        # prefill "ab" that the END check or a space rejects.
        Instance(
            name="refuse",
            rules=(
                WordsRule(id="ab-word", words=("ab",), match=MatchOptions(whole_word=True)),
                LiteralRule(id="aa", literal="aa"),
            ),
            policy=BacktrackPolicy(
                checkpoint="token",
                max_rollback_tokens=3,
                max_retries=1,
                max_discarded_tokens=6,
                on_exhausted="refuse",
                refusal="b",
            ),
            prefill=(1, 2),
            max_new_tokens=4,  # room after a rollback into the prefill (limit t + N)
            expect=frozenset({"rewinds", "refused", "prefill_rollbacks", "end_confirmed"}),
        ),
        # A classifier (any window with a "b" is unsafe) over windows of two tokens and, at the
        # end of the text, over the open sentence; the refusal passes it.
        Instance(
            name="classifier",
            rules=(
                ClassifierRule(
                    id="no-b-pair",
                    scorer=CONTAINS_B,
                    threshold=0.5,
                    scope="window",
                    window_tokens=2,
                ),
                ClassifierRule(id="no-b-sentence", scorer=CONTAINS_B, threshold=0.5),
            ),
            policy=BacktrackPolicy(
                checkpoint="word",
                max_rollback_tokens=2,
                max_retries=2,
                max_discarded_tokens=4,
                on_exhausted="refuse",
                refusal="a",
            ),
            max_new_tokens=3,
            expect=frozenset({"rewinds", "retried_twice", "classifier_failures", "refused"}),
        ),
        # The same classifier rule over sentences, its verdicts up to two tokens late: rows read
        # past an unsafe window before its verdict and roll back to before it.
        Instance(
            name="late-verdicts",
            rules=(ClassifierRule(id="no-b-sentence", scorer=CONTAINS_B, threshold=0.5),),
            policy=BacktrackPolicy(
                checkpoint="token", max_rollback_tokens=2, max_retries=2, max_discarded_tokens=3
            ),
            vocabulary=(b"", b"a", b"b", b"."),
            max_new_tokens=4,
            verdict_delay=2,
            expect=frozenset({"rewinds", "classifier_failures", "late_rollbacks", "budget"}),
        ),
    ]


#: What each strategy can reach at all: ``reset`` keeps no bans (never stuck); ``none`` and
#: ``mask`` never rewind, and only they report violations of a finished text.
POSSIBLE: dict[str, frozenset[str]] = {
    "backtrack": frozenset(SCENARIOS) - {"plain_violations"},
    "reset": frozenset(SCENARIOS) - {"plain_violations", "stuck"},
    "mask": frozenset({"plain_violations", "clean_paths"}),
    "none": frozenset({"plain_violations", "clean_paths"}),
}


#: Scenarios where ``mask`` lets a violation through (its documented limits): a whole word that
#: the length limit's END confirms ("a" at the end), and classifier rules, which it only reports.
#: In the others it blocks every violating token, EOS included where END would violate.
MASK_LEAKS = frozenset({"stuck", "retries", "classifier", "late-verdicts"})


def default_instances() -> list[Instance]:
    """Every scenario of :func:`_scenarios` under every strategy.

    Returns:
        The instances; each one's ``expect`` is its scenario's, restricted to what its strategy
        can reach (see :data:`POSSIBLE`), plus ``clean_paths`` (transparency is checked on at
        least one clean plain path) and, for ``none`` and ``mask``, ``plain_violations`` where
        the strategy lets one through (so the clean paths are not all paths).
    """
    instances = []
    for scenario in _scenarios():
        for strategy in ("backtrack", "reset", "mask", "none"):
            expect = (scenario.expect & POSSIBLE[strategy]) | {"clean_paths"}
            if strategy == "none" or (strategy == "mask" and scenario.name in MASK_LEAKS):
                expect |= {"plain_violations"}
            instances.append(
                Instance(
                    name=f"{scenario.name}-{strategy}",
                    rules=scenario.rules,
                    policy=scenario.policy,
                    strategy=strategy,
                    max_new_tokens=scenario.max_new_tokens,
                    prefill=scenario.prefill,
                    vocabulary=scenario.vocabulary,
                    expect=frozenset(expect),
                    verdict_delay=scenario.verdict_delay,
                )
            )
    return instances


def main(argv: Sequence[str] | None = None) -> int:
    """Check every default instance and print one line each; exit 1 when a property fails."""
    del argv
    failed = 0
    total: dict[str, Coverage] = {}
    for index, instance in enumerate(default_instances()):
        report = check(instance)
        missing = instance.expect - report.coverage.reached()
        status = "ok" if not report.problems and not missing else "FAIL"
        reached = ",".join(
            f"{name}={getattr(report.coverage, name)}" for name in sorted(report.coverage.reached())
        )
        sys.stdout.write(
            f"{index:2d} {status:4s} {instance.name:22s} nodes={report.nodes:6d} "
            f"longest={report.longest_path:2d} tokens={report.most_tokens:2d} {reached}\n"
        )
        for problem in report.problems:
            sys.stdout.write(f"     {problem}\n")
        if missing:
            sys.stdout.write(f"     not reached: {', '.join(sorted(missing))}\n")
        failed += status == "FAIL"
        total[instance.strategy] = total.get(instance.strategy, Coverage()) + report.coverage
    for strategy, coverage in total.items():
        sys.stdout.write(f"{strategy:9s} {coverage}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
