"""A registry is the only list of what it holds (issue 22).

A config field that picks a registered thing takes its choices from the registry, and no
module retypes a registry's names: a hand-written tuple that the next registration does not
update is how a choice goes missing (or an unknown name gets through) in one place only.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import fields
from pathlib import Path

import pytest

from trainables.config import TrialConfig
from trainables.datasets import AUGMENT_PRESETS, DATASETS
from trainables.models.catalog import STEMS
from trainables.models.init import INITS
from trainables.optimizers import OPTIMIZERS
from trainables.registry import Registry
from trainables.sparse.densities import DENSITY_RULES
from trainables.sparse.schedules import DROP_ROUNDING, SCHEDULES
from trainables.sparse.updaters import GROWTH

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trainables"

# config field -> the registry (or the one catalogue list) its choices come from
FIELD_SOURCES = {
    "dataset": DATASETS,
    "init": INITS,
    "sparse_init": DENSITY_RULES,
    "growth": GROWTH,
    "drop_schedule": SCHEDULES,
    "drop_rounding": DROP_ROUNDING,
    "optimizer": OPTIMIZERS,
    "augment": AUGMENT_PRESETS,
    "stem": STEMS,
}


def _choices(name: str) -> tuple:
    (field,) = [f for f in fields(TrialConfig) if f.name == name]
    return field.metadata["choices"]


@pytest.mark.parametrize("name", sorted(FIELD_SOURCES))
def test_field_choices_are_the_registry(name: str) -> None:
    assert _choices(name) == tuple(FIELD_SOURCES[name])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defines_registry(tree: ast.Module) -> bool:
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Registry":
            return True
    return False


def registries() -> dict[str, Registry]:
    """Every module-level ``Registry`` of the package, by ``module.NAME`` (found in the source,
    so a new registry is covered without an edit here)."""
    found: dict[int, tuple[str, Registry]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if not _defines_registry(ast.parse(path.read_text())):
            continue
        module = importlib.import_module(_module_name(path))
        for attr, value in vars(module).items():
            if isinstance(value, Registry):  # a re-exported one is kept once
                found.setdefault(id(value), (f"{module.__name__}.{attr}", value))
    return dict(found.values())


def test_every_registry_is_found() -> None:
    found = {id(r) for r in registries().values()}
    for registry in (DATASETS, INITS, DENSITY_RULES, GROWTH, SCHEDULES, DROP_ROUNDING, OPTIMIZERS):
        assert id(registry) in found


def _string_tuple(node: ast.expr | None) -> list[str] | None:
    if not isinstance(node, ast.Tuple | ast.List | ast.Set) or not node.elts:
        return None
    if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]  # type: ignore[attr-defined]
    return None


def hand_written_lists(tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """(line, what, names) of every module-level ``NAME = ("a", ...)`` and every
    ``choices=("a", ...)`` of the module."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            names = _string_tuple(node.value)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if names is not None:
                label = ", ".join(ast.unparse(t) for t in targets)
                out.append((node.lineno, label, names))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                names = _string_tuple(keyword.value) if keyword.arg == "choices" else None
                if names is not None:
                    out.append((keyword.value.lineno, "choices=", names))
    return out


def retyped_lists(registry_names: dict[str, set[str]]) -> list[str]:
    """Every hand-written list in the package that equals, or is part of, a registry's names."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for line, what, names in hand_written_lists(tree):
            for registry, known in registry_names.items():
                if set(names) <= known:
                    where = f"{path.relative_to(ROOT)}:{line}"
                    problems.append(f"{where}: {what} {tuple(names)} retypes {registry}")
    return problems


def test_no_module_retypes_a_registry() -> None:
    names = {key: set(registry) for key, registry in registries().items()}
    problems = retyped_lists(names)
    assert not problems, "derive these from the registry:\n" + "\n".join(problems)


def test_the_scan_catches_a_retyped_list() -> None:
    source = (
        'GROWTHS = ("gradient", "random")\n'
        'x = param("erk", "rule", choices=("erk", "er", "uniform"))\n'
        'OTHER = ("gradient", "magnitude")\n'
    )
    found = hand_written_lists(ast.parse(source))
    assert [(line, names) for line, _, names in found] == [
        (1, ["gradient", "random"]),
        (3, ["gradient", "magnitude"]),
        (2, ["erk", "er", "uniform"]),
    ]
    known = {"GROWTH": set(GROWTH), "DENSITY_RULES": set(DENSITY_RULES)}
    hits = [
        (line, registry)
        for line, _, names in found
        for registry, names_of in known.items()
        if set(names) <= names_of
    ]
    assert hits == [(1, "GROWTH"), (2, "DENSITY_RULES")]
