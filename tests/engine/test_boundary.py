"""The grading engine (``academy/engine/``) stands apart: no Flask, no portal (docs/architecture.md).

The static check reads every module of the package (imports inside functions included); the run-time
check imports ``academy grade``'s engine in a fresh interpreter and looks at what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

ENGINE = ROOT / "academy" / "engine"
FORBIDDEN_ROOTS = ("flask", "werkzeug")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (module ``module``), at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, name))
            # ``from academy import grading`` imports the module academy.grading
            found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return found


def _forbidden(name: str) -> bool:
    root = name.split(".")[0]
    if root in FORBIDDEN_ROOTS or root.startswith("flask_"):
        return True
    return root == "academy" and name != "academy" and not (name == "academy.engine"
                                                            or name.startswith("academy.engine."))


def test_engine_modules_import_neither_flask_nor_the_portal() -> None:
    modules = sorted(ENGINE.rglob("*.py"))
    assert len(modules) > 20, "the engine package was not found where expected"
    offences = [f"{path.relative_to(ROOT)}:{line}: imports {name}"
                for path in modules for line, name in _imports(path, _module_name(path)) if _forbidden(name)]
    assert offences == []


def test_the_boundary_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check itself: imports hidden in a function, relative ones, flask_* and the portal are caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("import json\n\n\ndef late():\n    from academy.grading import models\n    import flask_babel\n"
                     "    from .. import errors\n    from . import results\n    from academy import labs\n"
                     "    import werkzeug.utils\n")
    names = [name for _line, name in _imports(probe, "academy.engine.sandbox.probe")]
    assert "academy.engine.errors" in names and "academy.engine.sandbox.results" in names
    assert sorted(name for name in names if _forbidden(name)) == [
        "academy.grading", "academy.grading.models", "academy.labs", "flask_babel", "werkzeug.utils"]


def test_importing_the_grade_command_loads_no_flask() -> None:
    code = ("import sys, academy.engine.grade, academy.engine.pipeline; "
            "loaded = sorted(m for m in sys.modules if m in ('flask', 'werkzeug') or m.startswith('flask_')); "
            "portal = sorted(m for m in sys.modules if m.startswith('academy.') and not m.startswith('academy.engine')"
            " and m != 'academy.deferred_imports'); "
            "assert not loaded and not portal, (loaded, portal)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
