"""Reading an nbgrader source notebook: its total points, and the checks nbgrader makes only at release."""

from __future__ import annotations

import json
from pathlib import Path

from academy.catalog.manifest.errors import ManifestError
from academy.catalog.manifest.toml_source import show_value


def source_notebook_points(path: Path, display: str) -> float:
    """Total nbgrader points of a source notebook (graded cells and task cells).

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
    grade_ids: set[str] = set()
    for index, cell in enumerate(cells):
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
        if not isinstance(nbgrader, dict):
            continue
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
    return total


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
