"""No import cycles inside the ``taskqueue`` package.

The graph is read from the source (``ast``), not by importing: an edge ``a -> b``
is an ``import`` / ``from ... import`` in ``a`` that loads ``b``. Imports under
``if TYPE_CHECKING:`` never run and are left out. Two graphs are checked:

* the module-level graph (what runs when a module is imported) has no cycle;
* the graph with the imports deferred into functions as well: a deferred import
  hides a cycle from the interpreter but not from the reader (the two modules
  still need each other), so it must have no cycle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "taskqueue"


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The modules one module imports: at module level only, or deferred ones as well."""

    def __init__(self, module: str, is_package: bool, modules: dict[str, Path], deferred: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = modules
        self.deferred = deferred
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        if self.deferred:
            self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._function(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        submodules = [
            f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in self.modules
        ]
        self.found.update(submodules)
        if len(submodules) < len(node.names):
            self._add(base)  # names defined in the module (or package) itself

    def _add(self, name: str) -> None:
        if name in self.modules:
            self.found.add(name)


def import_graph(*, deferred: bool) -> dict[str, set[str]]:
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", modules, deferred)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        graph[name] = visitor.found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path that returns to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_path_within(graph, component) for component in components]


def _path_within(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    queue: list[list[str]] = [[start]]
    seen = {start}
    while queue:  # breadth first: the shortest way back to the start
        path = queue.pop(0)
        for nxt in sorted(graph[path[-1]] & component):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                queue.append([*path, nxt])
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def describe(cycle: list[str]) -> str:
    return " -> ".join(cycle)


def test_the_graph_sees_the_package() -> None:
    graph = import_graph(deferred=False)
    assert "taskqueue.queue" in graph and "taskqueue.broker.redis" in graph
    assert "taskqueue.producer" in graph["taskqueue.queue"]
    assert "taskqueue.broker" in graph["taskqueue.queue"]  # from the package's own names
    assert "taskqueue.monitor.render" in graph["taskqueue.monitor.widget"]  # from a package import a module
    # Under TYPE_CHECKING: not an edge. Deferred into a function: an edge of the deferred graph only.
    assert "taskqueue.queue" not in graph["taskqueue.health"]
    assert "taskqueue.display" not in graph["taskqueue.health"]
    assert "taskqueue.display" in import_graph(deferred=True)["taskqueue.health"]


def test_cycles_are_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert [describe(c) for c in cycles(graph)] == ["a -> b -> c -> a"]


def test_no_module_level_import_cycle() -> None:
    found = [describe(c) for c in cycles(import_graph(deferred=False))]
    assert found == [], "runtime import cycles:\n" + "\n".join(found)


def test_no_import_cycle_hidden_in_a_function() -> None:
    found = [describe(c) for c in cycles(import_graph(deferred=True))]
    assert found == [], "import cycles through imports inside functions:\n" + "\n".join(found)
