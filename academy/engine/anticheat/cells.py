"""What the defences share about cells: their kind, their Python source, what they read and bind.

Also the constants and helpers every part of ``academy.engine.anticheat`` uses: the
modules tests rely on (``CRITICAL_MODULES``) and fresh nonces.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CRITICAL_MODULES = frozenset({
    "builtins", "math", "cmath", "operator", "numbers", "decimal", "fractions", "statistics", "functools",
    "unittest", "numpy", "pandas", "torch", "sklearn", "academy_checks",
})
"""Modules whose functions tests rely on: a notebook function found in them zeroes the later tests."""


def new_nonce() -> str:
    """A fresh unguessable token (never written anywhere the kernel can read)."""
    return secrets.token_hex(12)


# --- cells --------------------------------------------------------------------------


def _nbgrader(cell: Any) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def is_test_cell(cell: Any) -> bool:
    """An autograded test: an nbgrader grade cell with code that is not an answer."""
    meta = _nbgrader(cell)
    return (cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")
            and bool(meta.get("grade_id")))


def is_instructor_cell(cell: Any) -> bool:
    """A code cell whose source nbgrader restores from the gradebook (read-only or test cell)."""
    meta = _nbgrader(cell)
    if cell.get("cell_type") != "code" or not meta.get("grade_id") or meta.get("solution"):
        return False
    return bool(meta.get("grade") or meta.get("locked"))


def is_learner_cell(cell: Any) -> bool:
    """A code cell the learner wrote: an answer (``solution``) or a cell without nbgrader marks."""
    return cell.get("cell_type") == "code" and not is_instructor_cell(cell)


def cell_label(cell: Any, index: int) -> str:
    """How a cell is named in a finding: its quoted nbgrader ``grade_id``, else its 1-based position."""
    grade_id = _nbgrader(cell).get("grade_id")
    return repr(grade_id) if grade_id else str(index + 1)

# --- Python source of a cell -----------------------------------------------------------


_MAGIC_LINE = re.compile(r"^\s*(%|!)")


def python_source(source: str) -> str:
    """The cell as plain Python: IPython's own transformation, else magics and shell lines blanked."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - fall back to a plain textual clean-up
        return "\n".join("" if _MAGIC_LINE.match(line) else line for line in source.splitlines()) + "\n"


def parse_tolerant(source: str, *, attempts: int = 20) -> ast.Module | None:
    """``ast.parse`` that blanks the offending line of a syntax error and tries again."""
    lines = source.splitlines()
    for _ in range(attempts):
        try:
            return ast.parse("\n".join(lines) + "\n")
        except SyntaxError as exc:
            number = (exc.lineno or 0) - 1
            if not 0 <= number < len(lines) or not lines[number].strip():
                return None
            lines[number] = ""
        except (ValueError, RecursionError, MemoryError):
            return None
    return None


def top_level_names(tree: ast.Module | None) -> set[str]:
    """Names a cell binds at module level (assignments, definitions, imports)."""
    names: set[str] = set()
    if tree is None:
        return names

    def targets(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Tuple | ast.List):
            for elt in node.elts:
                targets(elt)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                targets(target)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets(node.target)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith | ast.If | ast.Try):
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    names.add(child.id)
                elif isinstance(child, ast.FunctionDef | ast.ClassDef):
                    names.add(child.name)
    return names


@dataclass(frozen=True)
class CellFacts:
    """What the grader knows about an instructor cell before running it."""

    loads: tuple[str, ...]  # global names it reads
    mentions: frozenset[str]  # every identifier and attribute name in it
    binds: tuple[str, ...]  # names it binds at top level
    trailing_expression: bool | None  # whether it ends with an expression (None: unknown)
    cell_magic: bool  # starts with %% (no canary: appending code would change the magic's body)


def cell_facts(source: str) -> CellFacts:
    """Static facts about an instructor cell (used for the probe, canary and partial credit)."""
    cell_magic = source.lstrip().startswith("%%")
    tree = parse_tolerant(python_source(source))
    if tree is None:
        return CellFacts((), frozenset(), (), None, cell_magic)
    loads: list[str] = []
    mentions: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            mentions.add(node.id)
            if isinstance(node.ctx, ast.Load) and node.id not in loads:
                loads.append(node.id)
        elif isinstance(node, ast.Attribute):
            mentions.add(node.attr)
        elif isinstance(node, ast.alias):
            mentions.update(node.name.split("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            mentions.update(node.module.split("."))
    trailing = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    return CellFacts(tuple(loads), frozenset(mentions), tuple(sorted(top_level_names(tree))), trailing, cell_magic)


def solution_names(source_notebook: Path) -> set[str]:
    """Names the instructor's own notebook binds at top level (answers included): never "shadows"."""
    names: set[str] = set()
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(source_notebook.read_text(encoding="utf-8"))
        for cell in data.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            names |= top_level_names(parse_tolerant(python_source(source)))
    return names
