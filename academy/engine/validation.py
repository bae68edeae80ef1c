"""Checks that a submission can be graded at all, before anything runs.

Every check here is cheap and runs in the trusted process on bytes the learner sent:
size, encoding, JSON shape and depth, nbformat 4 schema and duplicate cell ids.  A failure
raises ``UngradableInput`` with a one-line message fit for a command line or an HTTP 4xx
answer (research notes N19-N21).  Damaged nbgrader metadata is not refused here: the
pipeline restores it from the released version of the assignment.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import warnings
from collections import Counter
from typing import Any

from academy.engine.errors import EngineError

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
"""Largest notebook file accepted (bytes); bigger files are refused before parsing."""

MAX_JSON_DEPTH = 100
"""Deepest nesting of JSON arrays and objects accepted; real notebooks stay near 10."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")


class UngradableInput(EngineError):
    """The input cannot be graded (not a notebook, wrong assignment, unreadable, ...).

    The message is one line and names what is wrong; nothing was run.
    """

    code = "ungradable"


class NotValidText(UngradableInput):
    """The file is not valid text: not UTF-8, or JSON escapes that decode to no character (``"\\ud800"``)."""


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a safe single path component (an id or a file stem).

    Raises ``UngradableInput`` for empty names, separators, ``..`` and odd characters,
    because these names become directory names inside the grading job.
    """
    if not _NAME.fullmatch(value or "") or value.endswith("."):
        raise UngradableInput(f"{what} {value!r} is not a valid name (letters, digits, '_', '.', '@', '-')")
    return value


def _depth_ok(value: Any, limit: int) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a notebook")


def load_notebook(data: bytes, name: str) -> Any:
    """Parse and validate notebook bytes; returns the ``nbformat.NotebookNode``.

    ``name`` is used in messages only.  Raises ``UngradableInput`` when the bytes are
    empty, too large, not strict UTF-8, not JSON, nested too deeply, not nbformat 4,
    invalid against the nbformat schema, or carry duplicate cell ids.  Duplicate ids are
    refused rather than repaired (nbformat would silently renumber them, N19).
    """
    import nbformat
    from nbformat.v4.nbjson import JSONReader

    if not data.strip():
        raise UngradableInput(f"{name}: the file is empty")
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise UngradableInput(f"{name}: the file is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise NotValidText(f"{name}: not valid text: not UTF-8 (byte {exc.start})") from None
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UngradableInput(f"{name}: JSON nested too deeply") from None
    except ValueError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UngradableInput(f"{name}: not a JSON notebook ({first_line})") from None
    _check_encodable(text, raw, name)
    if not _depth_ok(raw, MAX_JSON_DEPTH):
        raise UngradableInput(f"{name}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise UngradableInput(f"{name}: not a Jupyter notebook (no nbformat version)")
    if raw.get("nbformat") != 4:
        raise UngradableInput(f"{name}: notebook format {raw.get('nbformat')!r} is not supported (nbformat 4 only)")
    if not isinstance(raw.get("cells"), list):
        raise UngradableInput(f"{name}: not a Jupyter notebook (no list of cells)")
    ids = Counter(str(cell["id"]) for cell in raw["cells"] if isinstance(cell, dict) and "id" in cell)
    duplicates = sorted(cell_id for cell_id, count in ids.items() if count > 1)
    if duplicates:
        raise UngradableInput(f"{name}: duplicate cell ids: {', '.join(duplicates[:5])}")

    with warnings.catch_warnings():
        # nbformat warns (rather than fails) about ids it would add or repair; we decide above.
        warnings.simplefilter("ignore")
        try:
            nbformat.validate(raw)
        except nbformat.ValidationError as exc:
            message = str(getattr(exc, "message", exc)).splitlines()[0][:200]
            raise UngradableInput(f"{name}: not a valid nbformat 4 notebook ({message})") from None
        # The v4 reader's own step: multi-line strings joined, transient fields dropped.
        nb = JSONReader().to_notebook(raw)
    return nb


def _check_encodable(text: str, raw: Any, name: str) -> None:
    """``NotValidText`` when the JSON escapes a lone surrogate (``"\\ud800"``): valid JSON, but no text.

    Strict UTF-8 cannot hold a surrogate, so only a ``\\uD800``-``\\uDFFF`` escape brings one in;
    the full check runs only when the text has such an escape.
    """
    if not _SURROGATE_ESCAPE.search(text):
        return
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NotValidText(f"{name}: not valid text (it escapes a lone surrogate such as \"\\ud800\")") from None
    except (RecursionError, ValueError):
        return  # the depth check that follows names the problem


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

_CORE_KEYS = ("grade", "solution", "locked", "task", "points")


def _nbgrader_meta(cell: Any) -> Any:
    return cell.get("metadata", {}).get("nbgrader")


def _core(meta: dict[str, Any]) -> tuple[Any, ...]:
    values = [bool(meta.get(key)) for key in _CORE_KEYS[:4]]
    try:
        points = float(meta.get("points") or 0)
    except (TypeError, ValueError):
        points = None
    return (*values, points)


def reconcile_with_release(nb: Any, release: Any, name: str) -> list[str]:
    """Compare a submitted notebook with its released version and repair its nbgrader metadata.

    nbgrader keys everything on ``grade_id`` and trusts the metadata inside the file, which
    the learner controls (N17, N18).  Here, in place:

    * a cell whose ``grade_id`` the release knows gets the release's nbgrader metadata back
      (points, flags, checksum), so tampered or damaged metadata cannot crash or fool nbgrader;
    * nbgrader metadata with a ``grade_id`` the release does not know (a cell pasted from
      another notebook) is removed, because nbgrader stops on it with a validation error.

    Returns short notes for ``problems``: read-only or test cells changed, deleted or
    duplicated, cell types changed, metadata changed, unknown nbgrader cells.  Deleted
    nbgrader cells are put back from the release; nbgrader itself then restores the source
    of locked cells from the gradebook (with the hidden tests).  The
    comparison is with the release (hidden tests stripped), so it does not raise nbgrader's
    spurious checksum warning for hidden-test cells (nbgrader issue #1961).
    """
    from nbgrader.utils import is_grade, is_locked, is_solution

    reference: dict[str, Any] = {}
    for cell in release.cells:
        meta = _nbgrader_meta(cell)
        if isinstance(meta, dict) and meta.get("grade_id"):
            reference[meta["grade_id"]] = cell

    problems: list[str] = []
    # A grade_id seen several times counts only in its last cell (as nbgrader's DeduplicateIds
    # intends); the others lose their nbgrader metadata here, because DeduplicateIds leaves an
    # empty dict that nbgrader's own schema check then refuses (the whole job fails).
    last: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        meta = _nbgrader_meta(cell)
        if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
            last[meta["grade_id"]] = index
    seen: Counter[str] = Counter()
    unknown: list[str] = []
    for index, cell in enumerate(nb.cells):
        meta = _nbgrader_meta(cell)
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if not isinstance(grade_id, str) or grade_id not in reference:
            del cell.metadata["nbgrader"]
            if isinstance(meta, dict) and any(meta.get(key) for key in ("grade", "solution", "locked", "task")):
                unknown.append(repr(str(grade_id)[:60]))
            continue
        seen[grade_id] += 1
        if index != last[grade_id]:
            del cell.metadata["nbgrader"]
            continue
        ref = reference[grade_id]
        ref_meta = ref.metadata["nbgrader"]
        if _core(meta) != _core(ref_meta):
            problems.append(f"{name}: nbgrader metadata of cell {grade_id!r} was changed (restored)")
        cell.metadata["nbgrader"] = copy.deepcopy(ref_meta)
        kind = "test cell" if is_grade(ref) and not is_solution(ref) else "read-only cell"
        if cell.cell_type != ref.cell_type:
            problems.append(f"{name}: cell {grade_id!r} was turned into a {cell.cell_type} cell (restored)")
        elif is_locked(ref) and cell.source != ref.source:
            problems.append(f"{name}: {kind} {grade_id!r} was changed (the original was restored)")

    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        problems.append(f"{name}: unknown nbgrader cell{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown[:3])}{more} ignored")
    if reference and not any(seen.values()):
        problems.append(f"{name}: none of the assignment's cells were found (is this the right notebook?); "
                        "they were restored from the assignment")
        _restore_deleted(nb, reference, seen)
        return problems
    for grade_id, ref in reference.items():
        if seen[grade_id] > 1:
            problems.append(f"{name}: cell {grade_id!r} appears {seen[grade_id]} times (only the last one is graded)")
        elif seen[grade_id] == 0:
            what = "test cell" if is_grade(ref) and not is_solution(ref) else "cell"
            problems.append(f"{name}: {what} {grade_id!r} was deleted (restored from the assignment)")
    _restore_deleted(nb, reference, seen)
    return problems


def _restore_deleted(nb: Any, reference: dict[str, Any], seen: Counter[str]) -> None:
    """Put each deleted nbgrader cell back from the release, after its nearest surviving predecessor.

    nbgrader's own ``add_missing_cells`` only restores grade cells and fails with a KeyError
    when the cell before a deleted test was deleted too; restoring here covers both.
    """
    order = list(reference)
    with_ids = any("id" in cell for cell in nb.cells) or (nb.nbformat_minor >= 5 and not nb.cells)
    used_ids = {cell.get("id") for cell in nb.cells}
    for index, grade_id in enumerate(order):
        if seen[grade_id]:
            continue
        positions = {}
        for position, cell in enumerate(nb.cells):
            meta = _nbgrader_meta(cell)
            if isinstance(meta, dict) and meta.get("grade_id"):
                positions[meta["grade_id"]] = position
        insert_at = next((positions[prev] + 1 for prev in reversed(order[:index]) if prev in positions), 0)
        restored = copy.deepcopy(reference[grade_id])
        if not with_ids:
            restored.pop("id", None)
        elif restored.get("id") in used_ids or "id" not in restored:
            restored["id"] = hashlib.sha256(f"restored:{grade_id}".encode()).hexdigest()[:16]
        used_ids.add(restored.get("id"))
        nb.cells.insert(insert_at, restored)
        seen[grade_id] = 1
