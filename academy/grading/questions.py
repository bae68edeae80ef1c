"""Questions named as the notebook names them, for the pages that list a submission's cells.

A graded cell is known to the grader by its nbgrader ``grade_id`` (``test_add_defect_rate``),
an internal code no learner should read.  The learner knows the question by what the
released notebook says above it: the nearest heading (``## 문제 1. 불량률 열 추가하기``), or,
in a notebook without headings, the first line of the instructions (markdown) above it.

Names are read from the stored release (``releases.py``), which never changes once
written, so they are cached per release folder and notebook.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from academy.grading.models import AssignmentRelease

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\([^)]*\)")
_MAX_LENGTH = 120


def _plain(line: str) -> str:
    """One line of markdown as plain text: no heading marks, bullets, emphasis, code ticks or links."""
    line = _LINK.sub(lambda m: m.group("text"), line)
    line = re.sub(r"^\s*(?:#{1,6}|[-*+>]|\d+[.)])\s+", "", line)
    line = re.sub(r"(\*\*|__|`|~~)", "", line)
    line = re.sub(r"(?<![\w*])[*_](?=\S)(.+?)(?<=\S)[*_](?![\w*])", r"\1", line)
    line = " ".join(line.split())
    return line if len(line) <= _MAX_LENGTH else line[: _MAX_LENGTH - 1].rstrip() + "…"


def _source(cell: dict[str, object]) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else str(text or "")


def names_in_notebook(notebook: dict[str, object]) -> dict[str, str]:
    """``grade_id`` → question name for every graded cell of a notebook (its parsed JSON).

    The name is the nearest markdown heading above the cell; without one, the first line of the
    nearest instructions (a markdown cell that is not itself an answer) above it.  A cell with
    neither is left out.  When several graded cells share a name, the later ones get `` (2)``,
    `` (3)`` so that each row of a table still reads differently.
    """
    names: dict[str, str] = {}
    heading: str | None = None
    instruction: str | None = None
    seen: dict[str, int] = {}
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict):
            continue
        metadata = cell.get("metadata")
        meta = (metadata.get("nbgrader") if isinstance(metadata, dict) else None) or {}
        if not isinstance(meta, dict):
            meta = {}
        grade_id = meta.get("grade_id")
        if meta.get("grade") and isinstance(grade_id, str):
            name = heading or instruction
            if name:
                seen[name] = seen.get(name, 0) + 1
                names[grade_id] = name if seen[name] == 1 else f"{name} ({seen[name]})"
        if cell.get("cell_type") != "markdown" or meta.get("grade") or meta.get("solution"):
            continue
        lines = [line for line in _source(cell).splitlines() if line.strip()]
        headings = [m.group("text") for m in map(_HEADING.match, lines) if m]
        if headings:
            heading = _plain(headings[-1]) or heading
        elif lines:
            instruction = _plain(lines[0]) or instruction
    return names


@functools.lru_cache(maxsize=512)
def _cached_names(release_path: str, slug: str, notebook: str) -> dict[str, str]:
    # The grader names notebooks by their stem ("production_log"); the release holds the file.
    path = Path(release_path) / "release" / slug / (notebook if notebook.endswith(".ipynb") else f"{notebook}.ipynb")
    try:
        return names_in_notebook(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def question_names(release: AssignmentRelease, notebooks: list[str]) -> dict[tuple[str, str], str]:
    """``(notebook, grade_id)`` → question name, read from ``release``'s student notebooks.

    A notebook missing from the release (or unreadable) contributes nothing; callers fall back to
    a numbered "Question N".  With more than one notebook the name starts with the notebook's name,
    since two notebooks may both have a "문제 1".
    """
    found: dict[tuple[str, str], str] = {}
    several = len(set(notebooks)) > 1
    for notebook in dict.fromkeys(notebooks):
        for grade_id, name in _cached_names(release.path, release.assignment.slug, notebook).items():
            found[(notebook, grade_id)] = f"{notebook.removesuffix('.ipynb')} · {name}" if several else name
    return found
