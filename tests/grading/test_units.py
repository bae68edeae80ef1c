"""Plain functions of the grading domain: the blob store, deadlines and penalties, preflight."""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path

import nbformat
import pytest

from academy.errors import NotFound, ValidationFailed
from academy.grading.deadlines import apply_penalty, counting_score, lateness
from academy.grading.preflight import check_notebook, restore_missing_cells
from academy.grading.storage import BlobStore, sha256_hex
from tests.support import ROOT

SAMPLE = ROOT / "courses" / "python-data" / "source" / "01-pandas-basics" / "production_log.ipynb"


# --- the store --------------------------------------------------------------------


def test_store_is_content_addressed_write_once_and_read_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"notebook bytes")
    assert digest == sha256_hex(b"notebook bytes")
    assert store.put(b"notebook bytes") == digest  # the same bytes are one file
    path = store.path_for(digest)
    assert path.read_bytes() == b"notebook bytes"
    assert not os.stat(path).st_mode & 0o222, "stored files must be read-only"
    assert store.get(digest) == b"notebook bytes"
    assert not list(path.parent.glob(".incoming-*")), "no temporary files are left behind"


def test_store_refuses_bad_digests_and_detects_corruption(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(NotFound):
        store.get("../../etc/passwd")
    with pytest.raises(NotFound):
        store.get("0" * 64)
    digest = store.put(b"original")
    path = store.path_for(digest)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match="corrupted"):
        store.get(digest)


# --- deadlines and penalties --------------------------------------------------------

DUE = dt.datetime(2026, 12, 8, 14, 59, tzinfo=dt.UTC)
PENALTY = {"late_policy": "penalty", "late_penalty_per_day": 10.0, "late_penalty_cap": 30.0}


def test_on_time_costs_nothing() -> None:
    assert lateness(DUE, DUE, PENALTY).late_days == 0
    assert lateness(DUE - dt.timedelta(hours=1), DUE, PENALTY).penalty_percent == 0


def test_each_started_day_counts_up_to_the_cap() -> None:
    assert lateness(DUE + dt.timedelta(minutes=1), DUE, PENALTY) == lateness(DUE + dt.timedelta(hours=23), DUE, PENALTY)
    assert lateness(DUE + dt.timedelta(minutes=1), DUE, PENALTY).penalty_percent == 10
    assert lateness(DUE + dt.timedelta(days=1, minutes=1), DUE, PENALTY).late_days == 2
    assert lateness(DUE + dt.timedelta(days=9), DUE, PENALTY).penalty_percent == 30


def test_refusing_policy_refuses_late_work() -> None:
    with pytest.raises(ValidationFailed):
        lateness(DUE + dt.timedelta(seconds=1), DUE, {"late_policy": "refuse"})


def test_penalty_and_counting_score() -> None:
    assert apply_penalty(9.0, 10.0) == 8.1
    assert counting_score([(1, 3.0), (2, 9.0), (3, 5.0)], "best") == 9.0
    assert counting_score([(1, 3.0), (2, 9.0), (3, 5.0)], "last") == 5.0
    assert counting_score([(1, 3.0), (2, None)], "last") == 3.0
    assert counting_score([(1, None)], "best") is None


# --- preflight ------------------------------------------------------------------------


def _nb() -> nbformat.NotebookNode:
    return nbformat.read(str(SAMPLE), as_version=4)


def _graded(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if (c.metadata.get("nbgrader") or {}).get("grade_id")]


def test_an_untouched_notebook_passes() -> None:
    report = check_notebook("production_log.ipynb", _nb(), _nb())
    assert report.ok and not report.issues


def test_deleted_cell_is_found_and_can_be_restored_in_place() -> None:
    released = _nb()
    mine = copy.deepcopy(released)
    index = _graded(mine)[2]
    deleted = mine.cells.pop(index)
    report = check_notebook("production_log.ipynb", mine, released)
    assert not report.ok and report.restorable
    assert [i.code for i in report.issues] == ["missing"]
    assert deleted.metadata.nbgrader.grade_id in report.issues[0].message
    restored = restore_missing_cells(mine, released)
    assert check_notebook("production_log.ipynb", restored, released).ok
    ids = [(c.metadata.get("nbgrader") or {}).get("grade_id") for c in restored.cells]
    expected = [(c.metadata.get("nbgrader") or {}).get("grade_id") for c in released.cells]
    assert [i for i in ids if i] == [i for i in expected if i], "restored cells keep their order"


def test_duplicated_and_retyped_cells_block_and_cannot_be_auto_restored() -> None:
    released = _nb()
    mine = copy.deepcopy(released)
    graded = _graded(mine)
    mine.cells.insert(graded[0], copy.deepcopy(mine.cells[graded[0]]))
    target = mine.cells[graded[1] + 1]
    target.cell_type = "markdown" if target.cell_type == "code" else "code"
    report = check_notebook("production_log.ipynb", mine, released)
    codes = sorted(i.code for i in report.issues)
    assert codes == ["duplicated", "type_changed"]
    assert not report.ok and not report.restorable


def test_a_different_notebook_is_called_the_wrong_file() -> None:
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    report = check_notebook("production_log.ipynb", other, _nb())
    assert [i.code for i in report.issues] == ["wrong_file"]


def test_foreign_graded_cells_are_only_noted() -> None:
    mine = _nb()
    extra = nbformat.v4.new_code_cell("x = 1")
    extra.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "forged", "points": 100}
    mine.cells.append(extra)
    report = check_notebook("production_log.ipynb", mine, _nb())
    assert report.ok and [i.code for i in report.issues] == ["unknown_cell"]
