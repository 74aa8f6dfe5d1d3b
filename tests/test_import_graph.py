"""No import circle in ``trainables``: its modules form layers (issue 22).

Declarations (errors, registries, steps, parameter groups, ``MethodInfo``, the dataset and
model catalogues, the config) are the lowest layer; the code that trains (``Method`` classes,
the sparse engine, ``train/``) sits above it; planning imports declarations only. A circle
hides that layering and makes the import order matter, so every import counts here, deferred
ones inside functions included; only those under ``if TYPE_CHECKING:`` (never run) are left
out. The graph is read from the source with :mod:`ast`, nothing is imported.

Resolution: ``import a.b`` and ``from a.b import name`` are an edge to ``a.b``, or to
``a.b.name`` when that is a submodule; a package's ``__init__`` is a node of its own (importing
``a.b.c`` is an edge to ``a.b.c`` only). Registries that import their entries by name count
too: a ``"module:function"`` string naming a ``trainables`` module (a model's builder) is an
edge to that module; in a module that calls ``importlib.import_module`` or ``lazy_module``, so
is a string constant naming a ``trainables`` module, and an f-string starting
``"trainables.<package>."`` is an edge to every module directly in that package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "trainables"
DYNAMIC_CALLS = {"import_module", "lazy_module", "__import__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.append(node.test)
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _called_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` (at ``path``) imports, at run time."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    dynamic = False
    literals: list[ast.AST] = []
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1 packages
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Call) and _called_name(node) in DYNAMIC_CALLS:
            dynamic = True
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            module, colon, _ = node.value.partition(":")
            if colon:  # "module:function", resolved lazily by a registry
                found.add(module)
            literals.append(node)
        elif isinstance(node, ast.JoinedStr):
            literals.append(node)
    if dynamic:
        for node in literals:
            if isinstance(node, ast.Constant):
                found.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values:
                head = node.values[0]
                prefix = head.value if isinstance(head, ast.Constant) else ""
                if (
                    isinstance(prefix, str)
                    and prefix.startswith(f"{PACKAGE}.")
                    and prefix[-1] == "."
                ):
                    parent = prefix[:-1]
                    found.update(m for m in known if m.rpartition(".")[0] == parent)
    found.discard(name)
    return {m for m in found if m in known}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        state[start] = 1
        stack = [iter(sorted(graph[start]))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_graph_reader_sees_deferred_and_registry_imports() -> None:
    graph = import_graph()
    assert "trainables.methods" in graph["trainables.config"]  # a module-level import
    # the registries: methods by f-string, models by "module:function" builder strings
    assert "trainables.methods.rigl" in graph["trainables.methods"]
    assert "trainables.models.resnet" in graph["trainables.models"]
    # a deferred import inside a function counts
    assert "trainables.models" in graph["trainables.config"]


def test_find_cycle_reports_the_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_trainables() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in trainables: " + " -> ".join(cycle or [])
