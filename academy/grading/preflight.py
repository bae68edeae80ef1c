"""Preflight: compare a learner's notebook with the released version before accepting it.

nbgrader grades by ``grade_id``: a graded or answer cell that was deleted, copied or
turned into another cell type makes grading fail or go wrong (nbgrader issue #1941
counts 5% of notebooks broken this way).  Catching it at upload time lets the learner
fix it while they still can, in plain language, and offers to put missing cells back
from the released version.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _


@dataclass(frozen=True)
class Issue:
    """One thing wrong with the notebook; ``code`` is stable, ``message`` is for people."""

    code: str  # missing | duplicated | type_changed | unknown_cell | wrong_file
    grade_id: str | None
    message: str


@dataclass
class PreflightReport:
    """What preflight found for one notebook.

    ``name`` is the released notebook the file was taken for (see ``academy.grading.matching``);
    ``received_as`` the name the file came with, ``title`` the notebook's heading, and
    ``by_content`` is True when the file's name is another notebook's (content won).
    """

    name: str
    issues: list[Issue] = field(default_factory=list)
    received_as: str = ""
    title: str = ""
    by_content: bool = False

    @property
    def renamed(self) -> bool:
        """True when the file came under another name than the notebook it was taken for."""
        return bool(self.received_as) and self.received_as != self.name

    @property
    def taken_as(self) -> str:
        """For the learner: which notebook the file was taken for (``a (1).ipynb → a.ipynb``)."""
        if self.by_content:
            return _("%(file)s → %(notebook)s (recognised by its content, not its file name)",
                     file=self.received_as, notebook=self.name)
        return f"{self.received_as or self.name} → {self.name}"

    @property
    def ok(self) -> bool:
        """True when nothing blocks grading."""
        return not any(issue.code != "unknown_cell" for issue in self.issues)

    @property
    def restorable(self) -> bool:
        """True when the only blocking problems are missing cells, which can be put back."""
        blocking = [i for i in self.issues if i.code != "unknown_cell"]
        return bool(blocking) and all(i.code == "missing" for i in blocking)


def notebook_label(name: str, title: str) -> str:
    """How a notebook is named to the learner: its title with its file name, or the file name alone."""
    return f"{title} ({name})" if title else name


def grade_id_of(cell: Any) -> str | None:
    """The ``grade_id`` of an nbgrader cell (graded, answer, locked or task), else None."""
    meta = (cell.get("metadata") or {}).get("nbgrader") or {}
    if not isinstance(meta, dict):
        return None
    if not (meta.get("grade") or meta.get("solution") or meta.get("locked") or meta.get("task")):
        return None
    grade_id = meta.get("grade_id")
    return grade_id if isinstance(grade_id, str) and grade_id else None


def _cells_by_grade_id(nb: Any) -> dict[str, list[tuple[int, Any]]]:
    found: dict[str, list[tuple[int, Any]]] = {}
    for index, cell in enumerate(nb.get("cells") or []):
        grade_id = grade_id_of(cell)
        if grade_id is not None:
            found.setdefault(grade_id, []).append((index, cell))
    return found


def _label(cell: Any) -> str:
    kind = cell.get("cell_type")
    meta = (cell.get("metadata") or {}).get("nbgrader") or {}
    if meta.get("grade") and not meta.get("solution") and kind == "code":
        return _("test cell")
    if meta.get("solution"):
        return _("answer cell")
    return _("graded cell")


def check_notebook(name: str, submitted: Any, released: Any) -> PreflightReport:
    """Compare a submitted notebook with its released version, cell by ``grade_id``."""
    report = PreflightReport(name=name)
    mine = _cells_by_grade_id(submitted)
    theirs = _cells_by_grade_id(released)
    if theirs and not (set(mine) & set(theirs)):
        report.issues.append(Issue(
            "wrong_file", None,
            _("This does not look like the notebook '%(name)s' of this assignment: none of its graded cells "
              "are in it. Check that you chose the right file.", name=name),
        ))
        return report
    for grade_id, originals in theirs.items():
        _index, original = originals[0]
        copies = mine.get(grade_id, [])
        if not copies:
            report.issues.append(Issue(
                "missing", grade_id,
                _("The %(kind)s '%(id)s' was deleted. It can be put back from the original.",
                  kind=_label(original), id=grade_id),
            ))
        elif len(copies) > 1:
            report.issues.append(Issue(
                "duplicated", grade_id,
                _("The %(kind)s '%(id)s' appears %(n)d times (a copied cell?). Delete the copies and keep one.",
                  kind=_label(original), id=grade_id, n=len(copies)),
            ))
        elif copies[0][1].get("cell_type") != original.get("cell_type"):
            report.issues.append(Issue(
                "type_changed", grade_id,
                _("The %(kind)s '%(id)s' was changed from %(old)s to %(new)s. Change it back.",
                  kind=_label(original), id=grade_id, old=original.get("cell_type"),
                  new=copies[0][1].get("cell_type")),
            ))
    for grade_id in mine.keys() - theirs.keys():
        report.issues.append(Issue(
            "unknown_cell", grade_id,
            _("The cell '%(id)s' is not part of this assignment and will be ignored.", id=grade_id),
        ))
    return report


def restore_missing_cells(submitted: Any, released: Any) -> Any:
    """A copy of ``submitted`` with deleted graded cells put back from ``released``.

    Each restored cell goes right after the cell that precedes it in the released
    version (by grade_id), or at the top when none does; the learner's other cells
    stay as they are.
    """
    result = copy.deepcopy(submitted)
    present = set(_cells_by_grade_id(result))
    previous: str | None = None
    for cell in released.get("cells") or []:
        grade_id = grade_id_of(cell)
        if grade_id is None:
            continue
        if grade_id not in present:
            position = 0
            if previous is not None:
                for index, existing in enumerate(result["cells"]):
                    if grade_id_of(existing) == previous:
                        position = index + 1
            result["cells"].insert(position, copy.deepcopy(cell))
            present.add(grade_id)
        previous = grade_id
    return result
