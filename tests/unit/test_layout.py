"""The layout by layer holds: no import cycle, SQLAlchemy in the store only, few top modules.

docs/design.md §8: arrows point inward and nothing imports back, not even under
``TYPE_CHECKING``; only :mod:`mailflow.store` imports SQLAlchemy.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mailflow

ROOT = Path(mailflow.__file__).parent

MAX_TOP_LEVEL_MODULES = 5


def module_name(path: Path) -> str:
    """Return the dotted name of a module file under mailflow/."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Return every module of mailflow by its dotted name."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported(name: str, path: Path) -> Iterator[str]:
    """Yield every name ``path`` imports, wherever the import stands (TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, base] if base else kept)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Return, for each mailflow module, the mailflow modules it imports."""
    found = modules()
    return {
        name: {dep for dep in imported(name, path) if dep in found and dep != name}
        for name, path in found.items()
    }


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle of ``graph`` as a path of module names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_back_into_what_imports_it() -> None:
    assert cycle_in(import_graph()) is None


def test_only_the_store_imports_sqlalchemy() -> None:
    offenders = sorted(
        name
        for name, path in modules().items()
        if any(dep.split(".")[0] == "sqlalchemy" for dep in imported(name, path))
        and not any(
            name == package or name.startswith(f"{package}.") for package in ("mailflow.store",)
        )
    )
    assert offenders == []


def test_the_package_keeps_few_top_level_modules() -> None:
    top = sorted(path.name for path in ROOT.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


# What each layer may import of mailflow (docs/architecture.md): arrows point inward.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "core": frozenset({"errors"}),
    "config": frozenset({"core", "errors"}),
    "mail": frozenset({"core", "errors"}),
    "store": frozenset({"core", "errors", "mail"}),
    "transport": frozenset({"config", "errors", "mail"}),
    "app": frozenset({"config", "core", "errors", "mail", "store", "transport"}),
    "jobs": frozenset({"app", "config", "core", "errors", "mail", "store"}),
    "reports": frozenset({"app", "config", "core", "errors", "mail", "store"}),
    "ops": frozenset({"app", "config", "core", "errors", "jobs", "mail", "store", "transport"}),
    "daemon": frozenset(
        {"app", "config", "core", "errors", "jobs", "mail", "ops", "reports", "store", "transport"}
    ),
    "cli": frozenset({"app", "config", "core", "daemon", "errors", "ops"}),
}


def layer_of(name: str) -> str:
    """Return the layer of a module: its package under mailflow, or its own name at the top."""
    return name.split(".")[1] if name.count(".") else "__init__"


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = sorted(
        f"{name} → {dep}"
        for name, deps in import_graph().items()
        if layer_of(name) in MAY_IMPORT
        for dep in deps
        if layer_of(dep) not in {layer_of(name), "__init__"}
        and layer_of(dep) not in MAY_IMPORT[layer_of(name)]
    )
    assert wrong == []


def test_every_layer_has_its_rule() -> None:
    layers = {layer_of(name) for name in modules()} - {"__init__"}
    assert layers == set(MAY_IMPORT)
