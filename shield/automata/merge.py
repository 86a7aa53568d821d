"""Merging small components of the implicit product into one automaton.

The monitor keeps one automaton per rule (an implicit product), so a spec of many small regexes
walks many small tables per token. Where the reachable product of two components stays small, one
table does the same work: :func:`merge_components` greedily merges the smallest components while
their product stays within ``MERGE_STATE_LIMIT`` states.

A merged component only has to answer "does some rule violate?": which rule, and where its match
starts, is computed exactly by ``Shield.first_violation`` from the text. So the product is built
with every violating state collapsed into one absorbing state (:func:`shield.automata.dfa.product`
with ``absorb``), which keeps it small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shield.automata.dfa import DFA
from shield.automata.dfa import product as dfa_product
from shield.errors import CompileError

__all__ = ["MERGE_STATE_LIMIT", "Component", "merge_components", "product"]

#: The largest merged component (states); a product that would be larger is not formed.
MERGE_STATE_LIMIT = 16384
#: Pairs whose full product (states times states) exceeds this multiple of the limit are not
#: tried: the reachable part of such a product is almost never small enough.
_TRY_FACTOR = 64


@dataclass(frozen=True)
class Component:
    """One automaton of the implicit product.

    Attributes:
        rule_ids: the rules it monitors (several once merged).
        dfa: the automaton; its accepting states are the violating states.
    """

    rule_ids: tuple[str, ...]
    dfa: DFA

    @property
    def n_states(self) -> int:
        """Number of states."""
        return self.dfa.n_states

    @property
    def table(self) -> np.ndarray:
        """int32 [S, 257]: the transition table over bytes and END."""
        return self.dfa.byte_table()

    @property
    def violating(self) -> np.ndarray:
        """bool [S]: the violating states."""
        return self.dfa.accepting

    @property
    def initial(self) -> int:
        """The initial state."""
        return self.dfa.initial


def product(a: Component, b: Component, limit: int = MERGE_STATE_LIMIT) -> Component | None:
    """The reachable product of ``a`` and ``b`` with violations collapsed, or None past ``limit``.

    Args:
        a: a component.
        b: another component.
        limit: the most states the product may have.

    Returns:
        The merged component, or None when more than ``limit`` states are reachable or the text
        violates before its first byte (the monitor reports that case itself).
    """
    if a.dfa.accepting[a.initial] or b.dfa.accepting[b.initial]:
        return None
    try:
        joint = dfa_product([a.dfa, b.dfa], any, max_states=limit, absorb=True, what="merge")
    except CompileError:  # over the limit: keep the two components apart
        return None
    return Component(rule_ids=a.rule_ids + b.rule_ids, dfa=joint)


def merge_components(
    components: list[Component], limit: int = MERGE_STATE_LIMIT
) -> list[Component]:
    """Merge the smallest components pairwise while the product stays within ``limit`` states.

    Args:
        components: the components, in rule order.
        limit: the most states of a merged component.

    Returns:
        Components with the same "some rule violates" language, usually fewer.
    """
    pending = sorted(components, key=lambda c: c.n_states)
    done: list[Component] = []
    while pending:  # every round removes one component from `pending` or merges two into one
        smallest = pending.pop(0)
        merged = None
        for i, other in enumerate(pending):
            if smallest.n_states * other.n_states > _TRY_FACTOR * limit:
                break  # sorted by size: every later product is at least as large
            merged = product(smallest, other, limit)
            if merged is not None:
                pending.pop(i)
                pending.append(merged)
                pending.sort(key=lambda c: c.n_states)
                break
        if merged is None:
            done.append(smallest)
    return done
