"""A small-scope exhaustive model checker for shielded decoding.

It drives the reference decoder's transition system (:class:`shield.reference.Machine`, the same
code the JAX decoder replays at every event) with *every* token at every choice, which covers the
behaviour of every possible model at once — adversarial ones included — on small instances: a
vocabulary of a few one-byte tokens plus EOS, small specs, small bounds. The configurations and
transitions form a directed graph (networkx); the checks are the theorems of ``proofs/``:

* termination: the graph is acyclic and every sink is a finished generation, reached after at
  most ``len(prefill) + max_new_tokens + max_discarded_tokens`` produced tokens;
* bounded rollback: every rollback event discards at most ``max_rollback_tokens`` tokens and never
  goes before the response;
* soundness: every finished text (``eos``, ``length``, ``budget``) passes the spec as a finished
  text, and a refusal happens only after an ``exhausted`` event;
* progress (``backtrack``): along every path, a failed continuation is never produced again.

Run ``python -m proofs.model_checker`` for the default instances; ``tests/proofs`` runs it too.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import networkx as nx

import shield
from shield.policy import BacktrackPolicy
from shield.reference import Config, Finished, Machine, ReferenceSettings
from shield.result import REWINDING_STRATEGIES
from shield.rules import AutomatonRule, LiteralRule, MatchOptions, RegexRule, WordsRule

__all__ = ["Instance", "Report", "check", "default_instances", "explore", "main"]

#: A vocabulary of one-byte tokens plus EOS (id 0, no bytes).
VOCABULARY: tuple[bytes, ...] = (b"", b"a", b"b", b" ")
EOS = 0


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One small decoding problem: a spec (rules and policy), a strategy, bounds and a prefill."""

    rules: tuple[AutomatonRule, ...]
    policy: BacktrackPolicy
    strategy: str = "backtrack"
    max_new_tokens: int = 3
    prefill: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Report:
    """What the exploration found: graph size and every violated property (empty when all hold)."""

    nodes: int
    finished: int
    problems: tuple[str, ...]


def _machine(instance: Instance) -> tuple[Machine, shield.Shield]:
    from shield.judge import Judge

    spec = SimpleNamespace(name="model-check", rules=instance.rules, policy=instance.policy)
    compiled = shield.compile(spec)
    judge = Judge(compiled, compiled.lift(VOCABULARY))
    settings = ReferenceSettings(strategy=instance.strategy, max_new_tokens=instance.max_new_tokens)
    return Machine(judge, EOS, settings, instance.prefill, encode=lambda text: ()), compiled


def _successors(
    machine: Machine, config: Config
) -> list[tuple[tuple[int, ...], Config | Finished]]:
    """Every next configuration, each with the continuation it judged (kept tokens + token read)."""
    action = machine.action(config)
    if action == "end":
        return [(config.kept, machine.end(config))]
    if isinstance(action, int):
        return [((*config.kept, action), machine.read(config, action, forced=True))]
    allowed = [t for t in range(len(VOCABULARY)) if not action.blocked[t]]
    if not allowed:
        return [(config.kept, machine.stuck(config))]
    return [((*config.kept, token), machine.read(config, token, forced=False)) for token in allowed]


def explore(machine: Machine, max_nodes: int = 200_000) -> nx.DiGraph:
    """The graph of every configuration reachable under every choice of tokens.

    Edges carry ``continuation``: the tokens the decoder had produced when it took the edge (the
    kept tokens plus the token read), which is the failed continuation when the edge is a rewind.

    Args:
        machine: the transition system.
        max_nodes: fuel; exceeding it is reported as a problem by :func:`check`.

    Returns:
        A DiGraph whose nodes are :class:`Config` and :class:`Finished` values.
    """
    graph = nx.DiGraph()
    start = machine.initial()
    graph.add_node(start)
    frontier = [start]
    while frontier and graph.number_of_nodes() < max_nodes:
        config = frontier.pop()
        for continuation, successor in _successors(machine, config):
            if successor not in graph:
                graph.add_node(successor)
                if isinstance(successor, Config):
                    frontier.append(successor)
            graph.add_edge(config, successor, continuation=continuation)
    graph.graph["complete"] = not frontier
    return graph


def check(instance: Instance, max_nodes: int = 200_000) -> Report:
    """Explore ``instance`` and check the theorems on its graph.

    Args:
        instance: the problem.
        max_nodes: fuel for the exploration.

    Returns:
        The :class:`Report`.
    """
    machine, compiled = _machine(instance)
    graph = explore(machine, max_nodes)
    problems: list[str] = []
    if not graph.graph["complete"]:
        problems.append(f"exploration stopped at {max_nodes} nodes")
    if not nx.is_directed_acyclic_graph(graph):
        problems.append("termination: the configuration graph has a cycle")
    policy = instance.policy
    step_bound = len(instance.prefill) + instance.max_new_tokens + policy.max_discarded_tokens
    finished = [node for node in graph if isinstance(node, Finished)]
    for node in graph:
        if graph.out_degree(node) == 0 and not isinstance(node, Finished):
            problems.append(f"termination: stuck configuration {node.kept}")
    for done in finished:
        config = done.config
        produced = config.steps + config.forced
        if produced > step_bound or (not instance.prefill and config.steps > step_bound):
            problems.append(
                f"termination: {produced} tokens produced > {step_bound} for {done.tokens}"
            )
        for event in config.events:
            within = (
                event.to_token >= 0
                and event.from_token - event.to_token <= policy.max_rollback_tokens
            )
            if event.kind == "rollback" and instance.strategy == "backtrack" and not within:
                problems.append(f"bounded rollback: {event}")
        shielded = instance.strategy in REWINDING_STRATEGIES
        if shielded and done.reason != "refused":
            text = b"".join(VOCABULARY[t] for t in done.tokens).decode()
            found = compiled.scan(text)
            if found:
                problems.append(f"soundness: returned {text!r} violates {found[0].rule}")
        if done.reason == "refused" and not any(e.kind == "exhausted" for e in config.events):
            problems.append("soundness: refusal without exhaustion")
    if instance.strategy == "backtrack":  # reset keeps no bans: progress is not claimed for it
        for path_end in finished:
            _check_progress(graph, machine.initial(), path_end, problems)
    return Report(
        nodes=graph.number_of_nodes(), finished=len(finished), problems=tuple(problems[:20])
    )


def _check_progress(graph: nx.DiGraph, start: Config, done: Finished, problems: list[str]) -> None:
    """Along the path to ``done``, no continuation re-enters a failed continuation's banned prefix.

    The failed prefixes are read off the rewind edges themselves (the continuation up to and
    including its token at the rewind target), not from the controller's bans, so a controller
    that forgot a ban is caught.
    """
    path = nx.shortest_path(graph, start, done)
    failed: list[tuple[int, ...]] = []
    for before, after in itertools.pairwise(path):
        after_config = after.config if isinstance(after, Finished) else after
        for prefix in failed:
            if after_config.kept[: len(prefix)] == prefix:
                problems.append(f"progress: {after_config.kept} repeats failed prefix {prefix}")
                return
        if after_config.attempt > before.attempt and after_config.trace.bans is not None:
            continuation = graph.edges[before, after]["continuation"]
            target = len(after_config.kept)
            if target < len(continuation):
                failed.append(continuation[: target + 1])


def default_instances() -> list[Instance]:
    """A grid of small instances: word, literal and regex rules, whole-word or not, every strategy."""
    rule_sets: list[tuple[AutomatonRule, ...]] = [
        (WordsRule(id="ab", words=("ab",)),),
        (WordsRule(id="ab-word", words=("ab",), match=MatchOptions(whole_word=True)),),
        (LiteralRule(id="aa", literal="aa"), RegexRule(id="b-run", pattern="bb+")),
        (RegexRule(id="a-then-b", pattern="a[ ]?b"),),
    ]
    policies = [
        BacktrackPolicy(
            checkpoint="token", max_rollback_tokens=2, max_retries=2, max_discarded_tokens=4
        ),
        BacktrackPolicy(
            checkpoint="word", max_rollback_tokens=3, max_retries=1, max_discarded_tokens=5
        ),
        BacktrackPolicy(
            checkpoint="word",
            max_rollback_tokens=2,
            max_retries=2,
            max_discarded_tokens=3,
            on_exhausted="refuse",
            refusal="no",
        ),
    ]
    instances = []
    for rules, policy, strategy in itertools.product(rule_sets, policies, REWINDING_STRATEGIES):
        instances.append(Instance(rules=rules, policy=policy, strategy=strategy))
    instances.append(Instance(rules=rule_sets[0], policy=policies[0], prefill=(1, 2)))
    return instances


def main(argv: Sequence[str] | None = None) -> int:
    """Check every default instance and print one line each; exit 1 when a property fails."""
    del argv
    failed = 0
    for index, instance in enumerate(default_instances()):
        report = check(instance)
        rules = ",".join(rule.id for rule in instance.rules)
        status = "ok" if not report.problems else "FAIL"
        sys.stdout.write(
            f"{index:2d} {status:4s} {instance.strategy:9s} rules={rules:14s} "
            f"checkpoint={instance.policy.checkpoint:5s} nodes={report.nodes} finished={report.finished}\n"
        )
        for problem in report.problems:
            sys.stdout.write(f"     {problem}\n")
        failed += bool(report.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
