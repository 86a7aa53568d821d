"""The layout stays true: every import points down, nothing cycles, only ``decoders`` uses JAX
(and only ``decoders`` and ``adapters`` use torch and transformers).

The layers, lowest first (README "Layout" tells the same story):

====  ===================  ==============================================================
rank  layer                modules
====  ===================  ==============================================================
0     vocabulary           ``shield.errors``, ``shield.rules``, ``shield.policy``
1     automata             ``shield.automata.*`` (compile time)
2     runtime              the monitor, token lifting, checkpoints, classifiers, analysis,
                           the grammar export (``shield.export``),
                           ``shield.spec_compiler``, the compiled-shield cache and its store
3     semantics            the controller, the judge, the reference machine, sampling, results
4     the ``shield`` API   ``shield/__init__``
5     specs / decoders /   the spec language; the JAX decoder; the framework adapters
      adapters             (``adapters.*``, e.g. transformers; siblings: none imports another)
6     proofs               the model checker (drives the reference machine)
7     composition root     ``shield.cli`` (the command line and the evaluation harness)
====  ===================  ==============================================================

An import may point to its own layer or any lower one; only the composition root may look up
(to ``specs`` and ``decoders``). Every import counts: module level, inside functions, and under
``TYPE_CHECKING``, since each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shield", "specs", "decoders", "adapters", "proofs")
FRAMEWORKS = ("jax", "jaxlib", "flax", "torch", "transformers", "optax")

_SEMANTICS = ("controller", "judge", "machine", "machine_state", "reference", "sampling", "result")
_RUNTIME = (
    "monitor",
    "lifting",
    "checkpoints",
    "classifiers",
    "analysis",
    "spec_compiler",
    "compiled_cache",
    "store",
    "spans",
    "validators",
    "vocabulary",
    "export",
)


def layer_of(module: str) -> tuple[int, str]:
    """The rank and name of the layer ``module`` belongs to.

    Raises:
        AssertionError: the module belongs to no layer (place it, then update this table).
    """
    parts = module.split(".")
    if parts[0] == "shield":
        if parts[1:2] == ["cli"]:
            return 7, "composition root"
        if len(parts) == 1:
            return 4, "shield API"
        if parts[1] in ("errors", "rules", "policy"):
            return 0, "vocabulary"
        if parts[1] == "automata":
            return 1, "automata"
        if parts[1] in _RUNTIME:
            return 2, "runtime"
        if parts[1] in _SEMANTICS:
            return 3, "semantics"
    if parts[0] in ("specs", "decoders", "adapters"):
        return 5, parts[0]
    if parts[0] == "proofs":
        return 6, "proofs"
    raise AssertionError(
        f"module {module} belongs to no layer; add it to tests/test_layout.py's table "
        "(and to README 'Layout')"
    )


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module named by an import statement anywhere in ``path``, with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node.lineno


def _edges() -> list[tuple[str, str, int]]:
    edges = []
    for module, path in MODULES.items():
        for target, line in _imports(module, path):
            while target and target not in MODULES and target.split(".")[0] in PACKAGES:
                target = target.rpartition(".")[0]  # `import a.b.c` of a name defined in a.b
            edges.append((module, target, line))
    return edges


EDGES = _edges()


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_every_import_points_down() -> None:
    wrong = []
    for source, target, line in EDGES:
        if target.split(".")[0] not in PACKAGES:
            continue
        (rank, name), (target_rank, target_name) = layer_of(source), layer_of(target)
        sideways = rank == target_rank and name != target_name  # specs <-> decoders
        if (target_rank > rank or sideways) and name != "composition root":
            wrong.append(
                f"{MODULES[source].relative_to(ROOT)}:{line}: {source} ({name}) "
                f"imports {target} ({target_name})"
            )
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = nx.DiGraph(
        (source, target) for source, target, _ in EDGES if target in MODULES and source != target
    )
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {sorted(' -> '.join(c) for c in cycles)}"


#: The frameworks each package may import: ``adapters`` only torch and transformers.
ADAPTER_FRAMEWORKS = ("torch", "transformers")


def framework_allowed(source: str, target: str) -> bool:
    """Whether module ``source`` may import ``target`` (True for anything but a framework)."""
    framework = target.split(".")[0]
    if framework not in FRAMEWORKS:
        return True
    package = source.split(".")[0]
    return package == "decoders" or (package == "adapters" and framework in ADAPTER_FRAMEWORKS)


def test_only_decoders_import_frameworks() -> None:
    wrong = [
        f"{MODULES[source].relative_to(ROOT)}:{line}: {source} imports {target}"
        for source, target, line in EDGES
        if not framework_allowed(source, target)
    ]
    assert not wrong, (
        "JAX outside decoders/, or torch outside decoders/ and adapters/:\n" + "\n".join(wrong)
    )


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("adapters.huggingface.loop", "torch", True),
        ("adapters.huggingface.loop", "jax.numpy", False),  # JAX stays in decoders
        ("shield.judge", "torch", False),  # the core never imports a framework
        ("specs.loader", "transformers", False),
    ],
)
def test_the_framework_rule_catches_a_planted_import(
    source: str, target: str, allowed: bool
) -> None:
    assert framework_allowed(source, target) == allowed


def test_nothing_imports_tests_or_benchmarks() -> None:
    wrong = [f"{s} imports {t}" for s, t, _ in EDGES if t.split(".")[0] in ("tests", "bench")]
    assert not wrong, "\n".join(wrong)


def test_no_hidden_imports_of_our_own_packages() -> None:
    """``importlib`` may load what a user names (a scorer, a word-list package), never our code."""
    hidden = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            argument = node.args[0]
            if name in ("import_module", "__import__", "find_spec") and isinstance(
                argument, ast.Constant | ast.JoinedStr
            ):
                text = ast.unparse(argument).strip("f'\"")
                if text.split(".")[0] in PACKAGES:
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("shield.automata.dfa", "shield.monitor"),  # automata reaching the runtime
        ("shield.monitor", "specs.loader"),  # the core reaching the spec language
        ("specs.loader", "decoders.api"),  # siblings
        ("adapters.huggingface.loop", "decoders.api"),  # an adapter reaching a sibling
        ("shield.judge", "adapters.huggingface"),  # the core reaching an adapter
        ("decoders.api", "shield.cli"),  # anything but the root reaching the root
    ],
)
def test_the_rule_catches_a_planted_upward_import(source: str, target: str) -> None:
    (rank, name), (target_rank, target_name) = layer_of(source), layer_of(target)
    assert target_rank > rank or (rank == target_rank and name != target_name)
