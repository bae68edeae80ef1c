"""nbgrader's gradebook schema head, read in-process (``academy.engine.course.gradebook_schema_head``), is the one
its own ``alembic heads`` command gives, and nbgrader's gradebooks use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from academy.engine import course as engine_course


def test_the_head_read_in_process_is_the_one_the_alembic_command_gives(tmp_path: Path) -> None:
    import nbgrader.api
    from nbgrader.dbutil import _temp_alembic_ini

    head = engine_course.gradebook_schema_head()
    assert nbgrader.api.get_alembic_version is engine_course.gradebook_schema_head
    # nbgrader's own way, as its get_alembic_version does it: the alembic command of this environment.
    with _temp_alembic_ini(f"sqlite:///{tmp_path / 'gradebook.db'}") as ini:
        out = subprocess.check_output([str(Path(sys.executable).parent / "alembic"), "-c", ini, "heads"],
                                      env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert out.decode().split("\n")[0].split(" ")[0] == head


def test_a_new_gradebook_is_stamped_with_that_head(tmp_path: Path) -> None:
    import sqlite3

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}", "c") as gradebook:
        gradebook.add_assignment("a")
    with sqlite3.connect(tmp_path / "gradebook.db") as db:
        assert db.execute("select version_num from alembic_version").fetchall() == [
            (engine_course.gradebook_schema_head(),)]
