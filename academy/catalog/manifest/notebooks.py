"""Reading an nbgrader source notebook: its points, graded cells and imports, and the checks nbgrader makes only
at release."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from academy.catalog.manifest.errors import ManifestError
from academy.catalog.manifest.toml_source import show_value


@dataclass(frozen=True)
class SourceNotebook:
    """What the loader reads from a source notebook: total points, graded cells, and the modules it imports."""

    points: float  # nbgrader points of graded and task cells
    graded: int  # cells with nbgrader ``grade: true`` (autograded tests and written answers)
    imports: tuple[tuple[str, str], ...]  # (cell: its grade_id or "cell N", top-level module), in order


def source_notebook_points(path: Path, display: str) -> float:
    """Total nbgrader points of a source notebook (graded cells and task cells); see :func:`read_source_notebook`."""
    return read_source_notebook(path, display).points


def read_source_notebook(path: Path, display: str) -> SourceNotebook:
    """Points, graded cells and imports of a source notebook.

    Checks what the loader relies on and what nbgrader would otherwise reject only at
    release time: JSON, nbformat 4, a ``points`` value on every graded cell, and unique
    ``grade_id`` values.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        notebook = json.loads(text)
    except UnicodeDecodeError as exc:
        raise ManifestError(display, "not valid UTF-8 text", line=raw[: exc.start].count(b"\n") + 1) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(display, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(notebook, dict):
        raise ManifestError(display, "not a Jupyter notebook (the JSON is not an object)", line=1)
    if notebook.get("nbformat") != 4:
        raise ManifestError(
            display,
            f"must be 4 (found {show_value(notebook.get('nbformat'))}); "
            "upgrade it with 'jupyter nbconvert --to notebook --inplace'",
            line=_json_line(text, '"nbformat"'),
            field="nbformat",
        )
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise ManifestError(display, "must be a list of cells", line=_json_line(text, '"cells"'), field="cells")

    total = 0.0
    graded = 0
    imports: list[tuple[str, str]] = []
    grade_ids: set[str] = set()
    for index, cell in enumerate(cells):
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            name = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
            label = name if isinstance(name, str) and name else f"cell {index + 1}"
            imports.extend((label, module) for module in _imported_modules(cell.get("source", "")))
        if not isinstance(nbgrader, dict):
            continue
        graded += bool(nbgrader.get("grade"))
        grade_id = nbgrader.get("grade_id")
        field = f"cells[{index}].metadata.nbgrader"
        if nbgrader.get("grade") or nbgrader.get("solution") or nbgrader.get("locked"):
            if not isinstance(grade_id, str) or not grade_id:
                raise ManifestError(display, "grade_id is missing", line=_cell_line(text, index), field=field)
            if grade_id in grade_ids:
                raise ManifestError(
                    display,
                    f"grade_id '{grade_id}' is used by two cells",
                    line=_json_line(text, f'"grade_id": "{grade_id}"', last=True),
                    field=f"{field}.grade_id",
                )
            grade_ids.add(grade_id)
        if nbgrader.get("grade") or nbgrader.get("task"):
            points = nbgrader.get("points", None if nbgrader.get("grade") else 0)
            try:
                value = float(points)  # nbgrader itself accepts numeric strings
            except (TypeError, ValueError):
                value = -1.0
            if isinstance(points, bool) or not value >= 0:
                raise ManifestError(
                    display,
                    f"graded cell '{grade_id}' needs non-negative points (found {show_value(points)})",
                    line=_json_line(text, f'"grade_id": "{grade_id}"'),
                    field=f"{field}.points",
                )
            total += value
    return SourceNotebook(points=total, graded=graded, imports=tuple(imports))


_MAGIC = re.compile(r"^\s*[%!?]")


def _imported_modules(source: object) -> list[str]:
    """Top-level modules a code cell imports (absolute imports; IPython magics and shell lines skipped).

    A cell that does not parse (learner stubs, IPython syntax) yields what the lines that do parse import.
    """
    text = "".join(source) if isinstance(source, list) else str(source or "")
    if "import" not in text:  # every import statement has the word: most cells are not parsed at all
        return []
    lines = ["" if _MAGIC.match(line) else line for line in text.splitlines()]
    try:
        trees = [ast.parse("\n".join(lines))]
    except SyntaxError:
        trees = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                try:
                    trees.append(ast.parse(stripped))
                except SyntaxError:
                    continue
    found: list[str] = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in found:
                    found.append(name.split(".")[0])
    return found


def _json_line(text: str, needle: str, *, last: bool = False) -> int:
    """The line of the first (or last) occurrence of ``needle``, else 1."""
    position = text.rfind(needle) if last else text.find(needle)
    return 1 if position < 0 else text.count("\n", 0, position) + 1


def _cell_line(text: str, index: int) -> int:
    """Roughly the line where cell ``index`` starts (its ``cell_type`` key)."""
    position = -1
    for _ in range(index + 1):
        position = text.find('"cell_type"', position + 1)
        if position < 0:
            return 1
    return text.count("\n", 0, position) + 1
