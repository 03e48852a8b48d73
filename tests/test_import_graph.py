"""The architecture's layers, read from the source: no two subpackages import each other
(directly or through others), the base layer imports nothing above it, and each layer
imports only the layers below it (function-local imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "flowkit"
BASE = "<base>"  # flowkit's top-level modules: files, distributed, lazy namespaces
ENTRY_POINTS = ("__init__.py", "__main__.py")  # flowkit.load and python -m flowkit: on top
LAYERS = [
    {BASE},
    {"paths", "couplings", "data"},
    {"solvers"},
    {"models", "objectives", "mcmc"},
    {"pipelines"},
    {"loading"},
    {"reflow", "distill", "rl", "training", "evaluation"},
    {"cli", "experiments"},
]


def _unit(module: str) -> str:
    """The subpackage of a dotted ``flowkit....`` module, or the base layer."""
    parts = module.split(".")
    if len(parts) == 1:
        return BASE
    return parts[1] if (PACKAGE / parts[1]).is_dir() else BASE


def import_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the files that import it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for file in PACKAGE.rglob("*.py"):
        relative = file.relative_to(PACKAGE)
        if str(relative) in ENTRY_POINTS:
            continue
        source = relative.parts[0] if len(relative.parts) > 1 else BASE
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "flowkit":
                    names = [f"flowkit.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name == "flowkit" or not name.startswith("flowkit."):
                    continue
                target = _unit(name)
                if target != source:
                    edges = graph.setdefault(source, {})
                    edges.setdefault(target, set()).add(str(relative))
    return graph


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_subpackages_import_each_other() -> None:
    graph = import_graph()
    found = cycles(graph)
    detail = [
        f"{a} -> {b}: {sorted(graph[a][b])}"
        for component in found
        for a in component
        for b in component
        if b in graph.get(a, {})
    ]
    assert not found, f"import cycles {found}:\n" + "\n".join(detail)


def test_each_layer_imports_only_the_layers_below() -> None:
    layer_of = {unit: k for k, layer in enumerate(LAYERS) for unit in layer}
    graph = import_graph()
    assert set(graph) <= set(layer_of), f"units without a layer: {set(graph) - set(layer_of)}"
    upward = [
        f"{source} -> {target}: {sorted(files)}"
        for source, targets in graph.items()
        for target, files in targets.items()
        if layer_of[target] > layer_of[source]
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_checker_sees_a_cycle() -> None:
    graph = {"a": {"b": {"x"}}, "b": {"c": {"y"}}, "c": {"a": {"z"}}, "d": {"a": {"w"}}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": {"x"}}, "b": {}}) == []
