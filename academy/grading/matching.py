"""Which released notebook each uploaded file is: decided by its content, not its file name.

Browsers rename downloads (``production_log (1).ipynb``), learners rename files, and the
files of a multi-notebook assignment get swapped.  nbgrader grades cells by ``grade_id``,
so each uploaded notebook is compared with every released notebook of the current
release and taken for the one whose nbgrader cells it holds; it is then stored under
that notebook's name.

Evidence.  A released nbgrader cell (one whose nbgrader metadata carries a ``grade_id``)
is *found* in an upload when a cell of the upload has the same ``grade_id`` or the same
cell ``id``.  For a cell the learner cannot edit (locked cells, test cells) the text must
be the same too: courses reuse plain ids such as ``intro``, ``setup`` or ``q1_text`` in
every notebook, and the instructor's text is what tells those notebooks apart.  Answer
cells count by id alone, since the learner rewrites them.  A notebook's score is the
share of its nbgrader cells found in the file.

Rules.

* A file in which no cell of any notebook is found (a blank notebook, a notebook of
  another assignment) is refused, naming the file and listing the expected notebooks by
  title and name.
* A file that two notebooks score equally on (for example one holding the cells of both)
  is refused as ambiguous.
* Two files taken for the same notebook are refused, naming both.
* Otherwise a file is taken for its best-scoring notebook whatever its name: a renamed
  download is accepted, and a file named like one notebook but holding another (two
  notebooks swapped) is taken for the one it holds; the answer says so.
* Deleted cells only lower the score: a file still matches by the cells that remain,
  and preflight then offers to put the deleted ones back.
* A notebook of the assignment that no file was taken for is asked for ("Also
  submit: ..."), by its title.

Nothing is stored unless every rule passes; refusals raise ``ValidationFailed`` with a
message for the learner.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from flask_babel import gettext as _

from academy.errors import ValidationFailed
from academy.grading.preflight import grade_id_of, notebook_label


@dataclass(frozen=True)
class Match:
    """One uploaded file and the released notebook it was taken for."""

    received_as: str
    notebook: str
    title: str
    by_content: bool = False  # the file bears another notebook's name: its content decided


def notebook_title(nb: Any) -> str:
    """The notebook's title: the first Markdown heading of its first Markdown cell, or ''."""
    for cell in nb.get("cells") or []:
        if cell.get("cell_type") != "markdown":
            continue
        for line in _text(cell).splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
        return ""
    return ""


def _text(cell: Any) -> str:
    source = cell.get("source", "")
    text = "".join(source) if isinstance(source, list) else str(source)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _read_only(cell: Any) -> bool:
    meta = (cell.get("metadata") or {}).get("nbgrader") or {}
    return bool(meta.get("locked")) or (bool(meta.get("grade")) and not meta.get("solution"))


def _fingerprint(nb: Any) -> list[tuple[str, str | None, str | None]]:
    """The released notebook's nbgrader cells: (grade_id, cell id, text that must match or None)."""
    marks = []
    for cell in nb.get("cells") or []:
        grade_id = grade_id_of(cell)
        if grade_id is None:
            continue
        cell_id = cell.get("id") if isinstance(cell.get("id"), str) else None
        marks.append((grade_id, cell_id, _text(cell) if _read_only(cell) else None))
    return marks


def _score(marks: list[tuple[str, str | None, str | None]], upload: Any) -> Fraction:
    """The share of the released notebook's nbgrader cells found in ``upload``."""
    if not marks:
        return Fraction(0)
    by_grade_id: dict[str, list[str]] = {}
    by_cell_id: dict[str, list[str]] = {}
    for cell in upload.get("cells") or []:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if isinstance(grade_id, str):
            by_grade_id.setdefault(grade_id, []).append(_text(cell))
        if isinstance(cell.get("id"), str):
            by_cell_id.setdefault(cell["id"], []).append(_text(cell))
    found = 0
    for grade_id, cell_id, text in marks:
        candidates = by_grade_id.get(grade_id, []) + (by_cell_id.get(cell_id, []) if cell_id else [])
        if candidates and (text is None or text in candidates):
            found += 1
    return Fraction(found, len(marks))


def match_files(uploads: dict[str, Any], released: dict[str, Any]) -> list[Match]:
    """Take each uploaded notebook (parsed, by file name) for one released notebook (parsed, by name).

    Returns one ``Match`` per upload, sorted by notebook name.  Raises ValidationFailed for
    a file that matches no notebook or two equally, for two files taken for one notebook,
    and for a notebook no file was taken for (see the module's rules).
    """
    titles = {name: notebook_title(nb) for name, nb in released.items()}
    labels = {name: notebook_label(name, titles[name]) for name in released}
    expected = ", ".join(labels.values())
    fingerprints = {name: _fingerprint(nb) for name, nb in released.items()}
    taken: dict[str, str] = {}
    for upload_name in sorted(uploads):
        scores = {name: _score(marks, uploads[upload_name]) for name, marks in fingerprints.items()}
        best = max(scores.values(), default=Fraction(0))
        if best == 0:
            raise ValidationFailed(_(
                "'%(name)s' is not a notebook of this assignment: none of its graded cells are in it. "
                "Expected: %(expected)s. Nothing was submitted.", name=upload_name, expected=expected))
        leaders = [name for name in released if scores[name] == best]
        if len(leaders) > 1:
            raise ValidationFailed(_(
                "'%(name)s' holds the cells of several notebooks (%(notebooks)s), so it is not clear which one "
                "it is. Submit each notebook as its own file. Nothing was submitted.",
                name=upload_name, notebooks=", ".join(labels[n] for n in leaders)))
        [notebook] = leaders
        if notebook in taken:
            raise ValidationFailed(_(
                "'%(first)s' and '%(second)s' are both the notebook %(notebook)s. Submit it only once. "
                "Nothing was submitted.",
                first=taken[notebook], second=upload_name, notebook=labels[notebook]))
        taken[notebook] = upload_name
    missing = [name for name in released if name not in taken]
    if missing:
        raise ValidationFailed(_("Also submit: %(names)s", names=", ".join(labels[n] for n in missing)))
    return [Match(received_as=taken[name], notebook=name, title=titles[name],
                  by_content=taken[name] != name and taken[name] in released) for name in sorted(taken)]
