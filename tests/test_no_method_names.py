"""No code outside the registries and the grids keys anything by a method's name.

What a method is (sparse, the labels it reads, its networks, its colour, whether Table 2 shows
it test-chosen...) lives in its ``MethodInfo`` (``trainables/methods/<name>.py``); the trial
core, the launcher, the planners and the analysis read it from there. This test parses their
sources (``ast``: docstrings and comments are left alone, as prose may name methods) and fails
on any string literal that is a registered method's name (``method == "rest"``, a dict keyed by
method names, a name in a tuple), except in the grid definitions and the few places listed in
:data:`ALLOWED`, each with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

from trainables.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("trainables/train", "rest_sweep", "search_spaces", "analysis")
# Grid definitions: naming the methods a grid runs is what they are for.
GRID_FILES = {
    "search_spaces/catalog.py": "the registered grids (paper tables, baselines, demo)",
    "search_spaces/sdd.py": "the Sparse Double Descent grids (the prune method's)",
    "search_spaces/references.py": "each grid's reference: which method the seed code ran",
}
# (file, enclosing function / class / module-level assignment, literal) -> why it may name it.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("rest_sweep/commands/train.py", "TRAIN_DEFAULTS", "rest"): (
        "`rest-sweep train`'s own default method (the paper's; kept from earlier releases, "
        "shown in its --help): a command-line default, like a grid's method list"
    ),
    **{
        ("analysis/synthetic.py", "grid_configs", name): (
            "the default method list of the made-up test grid: a grid definition"
        )
        for name in ("erm", "rigl", "rest")
    },
}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


class _Finder(ast.NodeVisitor):
    """Every string constant equal to a method name, with its enclosing scope's name."""

    def __init__(self, names: set[str], skip: set[int]) -> None:
        self.names, self.skip = names, skip
        self.scope: list[str] = []
        self.hits: list[tuple[str, str, int]] = []  # (scope, literal, line)

    def _scoped(self, name: str, node: ast.AST) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node.name, node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node.name, node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node.name, node)

    def _assign(self, targets: list[ast.expr], node: ast.AST) -> None:
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if self.scope or not names:
            self.generic_visit(node)
        else:  # a module-level constant: scoped by its name
            self._scoped(names[0], node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assign(node.targets, node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assign([node.target], node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value in self.names and id(node) not in self.skip:
            self.hits.append((".".join(self.scope) or "<module>", node.value, node.lineno))


def _hits() -> list[tuple[str, str, str, int]]:
    names = set(METHODS.names())
    out = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in GRID_FILES:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            finder = _Finder(names, _docstrings(tree))
            finder.visit(tree)
            out += [(rel, scope, literal, line) for scope, literal, line in finder.hits]
    return out


def test_no_method_name_outside_registries_and_grids() -> None:
    found = [h for h in _hits() if h[:3] not in ALLOWED]
    listed = "\n".join(
        f"  {rel}:{line} ({scope}): {literal!r}" for rel, scope, literal, line in found
    )
    assert not found, (
        "method names used as values outside the registries and grids; read the fact from the "
        f"method's MethodInfo instead (or list a narrow exception in ALLOWED):\n{listed}"
    )


def test_every_exception_is_still_needed() -> None:
    used = {h[:3] for h in _hits()}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED entries that no longer match anything, remove them: {stale}"
    for rel in GRID_FILES:
        assert (ROOT / rel).is_file(), rel


def test_the_finder_sees_comparisons_and_keys_not_prose() -> None:
    source = '''
"""Module docstring naming rest and rigl."""
COLOURS = {"rest": "#d62728"}  # a comment naming "rigl"


def pick(method):
    """A docstring: 'erm'."""
    if method == "erm":
        return f"{method} vs rest"
    return method in ("lff", "disent")
'''
    tree = ast.parse(source)
    finder = _Finder(set(METHODS.names()), _docstrings(tree))
    finder.visit(tree)
    assert [(scope, literal) for scope, literal, _ in finder.hits] == [
        ("COLOURS", "rest"),
        ("pick", "erm"),
        ("pick", "lff"),
        ("pick", "disent"),
    ]
