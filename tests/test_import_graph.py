"""The modules of ``academy/`` import each other without a cycle, counting imports inside functions.

A cycle hidden in a function-level import still ties the modules together: neither can be
understood, tested or moved without the other, and the order of first use decides which
half-initialised module the other sees.  The graph is built from the source (``ast``), so
an import is counted wherever it stands: at the top, in a function, under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from tests.support import ROOT

PACKAGE = "academy"


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by dotted name (a package by its own name)."""
    modules = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path, modules: dict[str, Path]) -> Iterable[str]:
    """The dotted names ``path`` imports, wherever the import statement stands, relative ones resolved.

    ``from package import submodule`` names the submodule; ``from module import name`` the module.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                origin = ".".join(here[: len(here) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                yield f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name resolves to the longest module it starts with).

    Importing ``academy.x.y`` runs ``academy/__init__.py`` and ``academy/x/__init__.py`` too; those
    implicit parent imports are not counted, or every module would form a cycle with its package.
    """
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported in imported_names(name, path, modules):
            target = resolve(imported)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    """One line per module of a cycle: what it imports inside the cycle."""
    members = set(component)
    return "\n".join(f"  {m} -> {', '.join(sorted(graph[m] & members))}" for m in component)


def test_academy_has_no_import_cycle() -> None:
    graph = import_graph(module_files(ROOT))
    found = cycles(graph)
    assert not found, "import cycles in academy/ (imports inside functions count):\n" + "\n\n".join(
        describe(c, graph) for c in found)


def test_the_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from academy.sub import b\n")
    (package / "sub" / "b.py").write_text("def later():\n    from ..c import thing\n    return thing\n")
    (package / "c.py").write_text("import os\n\n\ndef thing():\n    from academy import a\n    return a\n")
    (package / "d.py").write_text("from academy import a\n")  # imports into the cycle, not part of it
    graph = import_graph(module_files(tmp_path))
    assert cycles(graph) == [["academy.a", "academy.c", "academy.sub.b"]]
