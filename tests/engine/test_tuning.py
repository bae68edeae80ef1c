"""What the grader does once per process instead of once per submission gives the same results as nbgrader.

``academy.engine.tuning`` (compiled feedback templates kept, nbgrader's metadata schema checked
once) and ``academy.deferred_imports`` (rfc3987_syntax imported on first use).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.nbgraderformat import MetadataValidator, SchemaTooNewError, SchemaTooOldError, ValidationError
from nbgrader.preprocessors import CheckCellMetadata as NbgraderCheckCellMetadata

from academy.engine import tuning


def _grade_meta(**changes: Any) -> dict[str, Any]:
    meta = {"grade": True, "grade_id": "test_a", "locked": True, "points": 2, "schema_version": 3,
            "solution": False}
    meta.update(changes)
    return {key: value for key, value in meta.items() if value is not None}


BAD_METADATA = {
    "points-is-text": _grade_meta(points="two"),
    "unknown-type-of-grade": _grade_meta(grade="yes"),
    "no-points": _grade_meta(points=None),
    "empty-grade-id": _grade_meta(grade_id=""),
    "schema-too-old": _grade_meta(schema_version=1),
    "schema-too-new": _grade_meta(schema_version=9),
}


def _notebook(meta: dict[str, Any]) -> Any:
    return new_notebook(cells=[new_markdown_cell("intro"), new_code_cell("assert True", metadata={"nbgrader": meta})])


def _error(validate: Any, nb: Any) -> tuple[type, str]:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the very exception nbgrader raises is compared
        validate(nb)
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_metadata_check_fails_exactly_like_nbgraders(case: str) -> None:
    nb = _notebook(BAD_METADATA[case])
    ours = _error(tuning._MetadataValidator().validate_nb, nb)
    assert ours == _error(MetadataValidator().validate_nb, nb)
    if case.startswith("schema-too"):
        assert ours[0] in (SchemaTooOldError, SchemaTooNewError)
    else:
        assert issubclass(ours[0], ValidationError)


def test_metadata_check_accepts_what_nbgrader_accepts_and_preprocessor_reports_the_same() -> None:
    nb = _notebook(_grade_meta())
    tuning._MetadataValidator().validate_nb(nb)
    MetadataValidator().validate_nb(nb)
    bad = _notebook(_grade_meta(points="two"))
    for cls in (tuning.CheckCellMetadata, NbgraderCheckCellMetadata):
        with pytest.raises(ValidationError, match="the nbgrader metadata may be corrupted"):
            cls().preprocess(bad, {})


def test_replace_checks_swaps_only_nbgraders_metadata_check() -> None:
    others = ["nbgrader.preprocessors.ClearOutput", HTMLExporter]
    swapped = tuning.replace_checks([*others, NbgraderCheckCellMetadata, "nbgrader.preprocessors.CheckCellMetadata"])
    assert swapped == [*others, tuning.CheckCellMetadata, tuning.CheckCellMetadata]


@pytest.fixture()
def compiled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    """Names of the templates Jinja compiles (rather than loads as bytecode) during the test."""
    names: list[str | None] = []
    original = jinja2.Environment.compile

    def counting(self: Any, source: Any, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        names.append(name)
        return original(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    tuning.TEMPLATE_BYTECODE.clear()
    saved = tuning.TEMPLATE_BYTECODE.directory
    tuning.TEMPLATE_BYTECODE.directory = None
    yield names
    tuning.TEMPLATE_BYTECODE.directory = saved
    tuning.TEMPLATE_BYTECODE.clear()


NOTEBOOK = new_notebook(cells=[new_markdown_cell("# 제목 *title*"), new_code_cell("print(1)")])


def _render(exporter: type = tuning.FeedbackExporter) -> str:
    return exporter(template_name="lab").from_notebook_node(NOTEBOOK)[0]


def test_feedback_templates_are_compiled_once_per_process_with_the_same_html(compiled: list[str | None]) -> None:
    first = _render()
    assert compiled, "the first exporter compiles the templates"
    compiled.clear()
    assert _render() == first
    assert compiled == [], "a second exporter in the process must reuse the compiled templates"
    assert _render(HTMLExporter) == first


def test_compiled_templates_on_disk_serve_the_next_process_and_bad_entries_are_compiled_again(
        compiled: list[str | None], tmp_path: Path) -> None:
    tuning.use_template_cache(tmp_path / "templates")
    first = _render()
    entries = sorted((tmp_path / "templates").glob("*.jinja-bytecode"))
    assert entries and not list((tmp_path / "templates").glob(".tmp-*"))
    tuning.TEMPLATE_BYTECODE.clear()  # as in a new process
    compiled.clear()
    assert _render() == first
    assert compiled == []
    for entry in entries:
        entry.write_bytes(b"not bytecode")
    tuning.TEMPLATE_BYTECODE.clear()
    assert _render() == first
    assert compiled, "unusable entries are compiled again"


def test_rfc3987_syntax_is_imported_on_first_use_only() -> None:
    """The grader's processes import nbformat (and so jsonschema) without compiling rfc3987_syntax's grammars;
    jsonschema's iri checks still work, by importing it then."""
    code = (
        "import importlib.util, sys, academy, nbformat, jsonschema\n"
        "print('rfc3987_syntax.syntax_helpers' in sys.modules)\n"
        "print(importlib.util.find_spec('rfc3987_syntax').name)\n"
        "checker = jsonschema.FormatChecker()\n"
        "print(checker.conforms('https://예시.kr/경로', 'iri'), checker.conforms('http://[not-ip', 'iri'))\n"
        "print('rfc3987_syntax.syntax_helpers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "rfc3987_syntax", "True", "False", "True"], out.stderr


def _gradebook_with(path: Path, student: str) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{path}", "course") as gradebook:
        gradebook.add_student(student)


def test_jobs_share_one_gradebook_engine_and_each_sees_only_its_own_gradebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbgrader import api

    # nbgrader runs `alembic` by name to create a gradebook; a job puts it on PATH (joblog.job_environment),
    # these gradebooks are made outside one, whatever ran before in this process.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    original = api.create_engine
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    _gradebook_with(first, "alice")  # outside a job: nbgrader's own engine
    _gradebook_with(second, "bob")
    engines = []
    for path, student in ((first, "alice"), (second, "bob")):
        with tuning.shared_gradebook_engine(path):
            assert api.create_engine is not original
            for _ in range(2):
                with api.Gradebook(f"sqlite:///{path}", "course") as gradebook:
                    engines.append(gradebook.engine)
                    assert [s.id for s in gradebook.students] == [student]
            with api.Gradebook(f"sqlite:///{path}", "course") as gradebook:
                gradebook.add_student(f"{student}-2")  # written to this job's file
            other = tmp_path / "other.db"
            with api.Gradebook(f"sqlite:///{other}", "course") as gradebook:
                assert gradebook.engine is not engines[0]  # another database: an engine of its own
        assert api.create_engine is original
    assert all(engine is engines[0] for engine in engines)
    with api.Gradebook(f"sqlite:///{first}", "course") as gradebook:
        assert gradebook.engine is not engines[0]
        assert sorted(s.id for s in gradebook.students) == ["alice", "alice-2"]


def test_one_job_at_a_time_and_the_engine_is_put_back_after_a_failure(tmp_path: Path) -> None:
    from nbgrader import api

    original = api.create_engine
    with pytest.raises(ZeroDivisionError), tuning.shared_gradebook_engine(tmp_path / "a.db"):
        with pytest.raises(RuntimeError, match="one grading job at a time"), \
                tuning.shared_gradebook_engine(tmp_path / "b.db"):
            pass
        1 / 0  # noqa: B018 - a job that fails
    assert api.create_engine is original


def test_warm_up_builds_the_feedback_templates_without_failing(compiled: list[str | None],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """The warm-up swallows its errors (an optimisation must not stop grading): make sure it has none."""
    from nbgrader.converters import GenerateFeedback
    from traitlets.config import Config

    caplog.set_level("DEBUG", logger="academy.engine.tuning")
    tuning.warm_up()
    tuning.warm_up_feedback()
    assert "warm-up failed" not in caplog.text
    assert compiled, "the warm-up compiles the feedback templates"
    compiled.clear()
    resources = {"nbgrader": {"notebook": "n", "assignment": "a", "student": "s", "score": 1, "max_score": 2,
                              "late_penalty": 0}}
    tuning.FeedbackExporter(config=GenerateFeedback(config=Config()).config).from_notebook_node(NOTEBOOK, resources)
    assert compiled == []  # what a worker forked after the warm-up would find


def test_a_parent_of_grading_workers_freezes_what_it_built_for_its_forks() -> None:
    """The fork server's preload ends with ``gc.freeze()``: workers' collections skip the inherited objects."""
    import subprocess
    import sys

    code = ("import gc; before = gc.get_freeze_count(); import academy.engine.prewarm_feedback; "
            "print(before, gc.get_freeze_count() > 100000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["0", "True"]
