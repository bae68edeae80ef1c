"""The learner-facing wording of the grader's problem lines (``academy.grading.problem_text``).

The problem lines are produced by the grader's own code wherever it can run without a
kernel (``reconcile_with_release``, ``GuardedExecute`` around a stand-in cell runner,
``NotebookDefence``, ``_truncated_cells``, ``_grader_error``), so a changed wording fails
here instead of silently falling back to English on the submission page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.mofile import write_mo
from flask import Flask
from flask_babel import Babel, force_locale
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.preprocessors import Execute

from academy.engine.anticheat import CellFacts, NotebookDefence
from academy.engine.execute import GuardedExecute
from academy.engine.joblog import JobLog
from academy.engine.pipeline import _grader_error
from academy.engine.scores import _truncated_cells
from academy.engine.validation import reconcile_with_release
from academy.grading import problem_text
from academy.grading.problem_text import describe_problem
from academy.i18n import TRANSLATIONS_DIR, ensure_catalogs_compiled

HANGUL = re.compile(r"[\uac00-\ud7a3]")

# --- real problem lines ----------------------------------------------------------------------


def _graded(cell: Any, grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
            points: float = 0) -> Any:
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "grade": grade, "solution": solution, "locked": locked,
                                 "points": points, "schema_version": 3}
    return cell


def _release() -> Any:
    return new_notebook(cells=[
        _graded(new_markdown_cell("# Mean"), "intro", locked=True),
        _graded(new_code_cell("import math"), "setup", locked=True),
        _graded(new_code_cell("def mean(xs):\n    raise NotImplementedError"), "answer", solution=True),
        _graded(new_code_cell("assert mean([1, 3]) == 2"), "test_mean", grade=True, locked=True, points=2),
        _graded(new_code_cell("assert mean([2]) == 2"), "test_one", grade=True, locked=True, points=1),
    ])


def _reconciled(change: Any) -> list[str]:
    submitted = _release()
    change(submitted)
    return reconcile_with_release(submitted, _release(), "hw1")


def _cell(nb: Any, grade_id: str) -> Any:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _unknown(count: int) -> Any:
    def change(nb: Any) -> None:
        for index in range(count):
            nb.cells.append(_graded(new_code_cell("x = 1"), f"extra{index}", grade=True, points=9))
    return change


def _validation_problems() -> dict[str, str]:
    def metadata(nb: Any) -> None:
        _cell(nb, "test_mean").metadata["nbgrader"]["points"] = 50

    def retyped(nb: Any) -> None:
        _cell(nb, "setup").cell_type = "markdown"

    def test_edited(nb: Any) -> None:
        _cell(nb, "test_mean").source = "pass"

    def read_only_edited(nb: Any) -> None:
        _cell(nb, "setup").source = "import os"

    def duplicated(nb: Any) -> None:
        nb.cells.insert(2, _graded(new_code_cell("def mean(xs): return 0"), "answer", solution=True))

    def deleted_test(nb: Any) -> None:
        nb.cells.remove(_cell(nb, "test_one"))

    def deleted_cell(nb: Any) -> None:
        nb.cells.remove(_cell(nb, "answer"))

    def wrong_notebook(nb: Any) -> None:
        nb.cells[:] = [new_code_cell("print('hello')")]

    lines = {
        "metadata": _reconciled(metadata),
        "retyped": _reconciled(retyped),
        "test_edited": _reconciled(test_edited),
        "read_only_edited": _reconciled(read_only_edited),
        "unknown_one": _reconciled(_unknown(1)),
        "unknown_two": _reconciled(_unknown(2)),
        "unknown_five": _reconciled(_unknown(5)),
        "duplicated": _reconciled(duplicated),
        "deleted_test": _reconciled(deleted_test),
        "deleted_cell": _reconciled(deleted_cell),
        "wrong_notebook": _reconciled(wrong_notebook),
    }
    for key, found in lines.items():
        assert len(found) == 1, (key, found)
    return {key: found[0] for key, found in lines.items()}


class _StandInRun(Execute):
    """What nbgrader's Execute would do with a cell, chosen by ``outcome`` (no kernel)."""

    outcome = ""

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> Any:
        if self.outcome == "dead":
            raise DeadKernelError("the kernel died")
        if self.outcome == "stuck":
            raise CellTimeoutError("the cell did not stop")
        if self.outcome in ("timeout", "deadline"):
            self._timed_out = 30
            if self.outcome == "deadline":
                self.job_deadline = time.monotonic() - 1
        return cell, resources


class _Guarded(GuardedExecute, _StandInRun):
    """``GuardedExecute`` whose cells are "run" by ``_StandInRun`` and whose problems are kept in a list."""

    def _problem(self, text: str, *, learner_failed: bool) -> None:
        self.problems.append(text)


async def _no_shutdown(now: bool = False) -> None:
    return None


def _guarded_problem(outcome: str, *, grade_id: str | None = "squares", oom: bool = False,
                     deadline_passed: bool = False) -> str:
    guard = _Guarded(integrity_checks=False)
    guard.problems = []
    guard.outcome = outcome
    guard._notebook = "hw1"
    guard.km = SimpleNamespace(oom_killed=lambda: oom, shutdown_kernel=_no_shutdown)
    if deadline_passed:
        guard.job_deadline = time.monotonic() - 1
    cell = new_code_cell("x = 1")
    if grade_id:
        _graded(cell, grade_id, solution=True)
    guard.preprocess_cell(cell, {}, 2)
    assert len(guard.problems) == 1, guard.problems
    return guard.problems[0]


def _output_problem() -> str:
    guard = _Guarded(integrity_checks=False, max_output_bytes=10)
    guard.problems = []
    guard._label_now, guard._cell_truncated = "hw1: cell 'squares'", False
    guard.output([], {"msg_type": "stream", "content": {"name": "stdout", "text": "x" * 100}}, None, 0)
    return guard.problems[0]


def _pipeline_problems() -> dict[str, str]:
    executed = new_notebook(cells=[new_code_cell("print(1)"), _graded(new_code_cell("x"), "squares", solution=True)])
    truncated = new_output("stream", name="stdout", text="1\n... Output truncated ...\n")
    for cell in executed.cells:
        cell.outputs = [truncated]
    by_position, by_id = _truncated_cells("hw1", executed)
    return {
        "deadline_before": _guarded_problem("", deadline_passed=True),
        "deadline_in": _guarded_problem("deadline"),
        "dead": _guarded_problem("dead"),
        "out_of_memory": _guarded_problem("dead", oom=True),
        "stuck": _guarded_problem("stuck"),
        "timeout": _guarded_problem("timeout"),
        "timeout_numbered": _guarded_problem("timeout", grade_id=None),
        "output": _output_problem(),
        "truncated_numbered": by_position,
        "truncated": by_id,
        "grader_error": _grader_error("the gradebook has no notebook 'hw1'", JobLog()).problems[0],
        # Inline in pipeline._run_job and worker.requeue_stale (nothing to call without a job).
        "not_submitted": "hw1: not submitted (0 points)",
        "worker_stopped": "the grading worker stopped repeatedly",
    }


def _defence() -> tuple[NotebookDefence, list[str]]:
    problems: list[str] = []
    defence = NotebookDefence(None, "hw1", workdir=None, source_dir=None, flag=lambda text: None,
                              problem=problems.append)
    return defence, problems


def _tampering(reason: str, label: str, *, canary: bool = False) -> str:
    defence, problems = _defence()
    defence.tamper(reason, label, canary=canary)
    return problems[0]


def _defence_problems() -> dict[str, str]:
    defence, problems = _defence()
    cell = _graded(new_code_cell("score()"), "test_mean", grade=True, locked=True, points=2)
    cell.outputs = [new_output("execute_result", data={"text/plain": "7"}, execution_count=1)]
    defence._fix_outputs(cell, CellFacts(("score",), frozenset(), (), True, False), "'test_mean'")
    # The reasons are NotebookDefence.run's and _inspect's wording.
    return {
        "forged_points": problems[0],
        "canary": _tampering("the check run before test 'test_mean' passed", "'test_mean'", canary=True),
        "canary_again": _tampering("test cell 4 failed when the grader checked it but passed when run", "cell 4",
                                   canary=True),
        "module": _tampering("the instructor's module helpers.py in the working directory was changed",
                             "'test_mean'"),
        "during": _tampering("builtins.len was replaced while test 'test_mean' ran", "'test_mean'"),
        "probe": _tampering("the grader's integrity probe stopped working (it did not answer within 30 s)",
                            "'test_mean'"),
        "other": _tampering("sys.displayhook was replaced", "'test_mean'"),
    }


@pytest.fixture(scope="module")
def problems() -> dict[str, str]:
    """Every kind of problem line, as the grader writes it."""
    return {**_validation_problems(), **_pipeline_problems(), **_defence_problems()}


# --- locales ---------------------------------------------------------------------------------


def _app(translations: Path) -> Flask:
    app = Flask(__name__)
    Babel(app, default_translation_directories=str(translations))
    return app


@pytest.fixture(scope="module")
def real_app() -> Flask:
    ensure_catalogs_compiled()
    return _app(TRANSLATIONS_DIR)


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """A catalogue that marks every message of problem_text: proves each line went through gettext."""
    catalog = Catalog(locale="ko")
    for _lineno, message, *_rest in extract_from_file("python", problem_text.__file__):
        msgid = message[0] if isinstance(message, tuple) else message
        catalog.add(msgid, "[ko] " + msgid)
    directory = tmp_path_factory.mktemp("translations")
    mo = directory / "ko" / "LC_MESSAGES" / "messages.mo"
    mo.parent.mkdir(parents=True)
    with mo.open("wb") as fh:
        write_mo(fh, catalog)
    return _app(directory)


@pytest.fixture
def english(real_app: Flask) -> Iterator[None]:
    with real_app.app_context(), force_locale("en"):
        yield


# --- tests -----------------------------------------------------------------------------------

ENGLISH = {
    "metadata": "hw1: the grading settings of cell 'test_mean' had been changed; the original settings were put back.",
    "retyped": "hw1: cell 'setup' had been turned into a markdown cell; it was changed back.",
    "test_edited": "hw1: test cell 'test_mean' had been edited; the original test was put back.",
    "read_only_edited": "hw1: read-only cell 'setup' had been edited; the original was put back.",
    "unknown_one": "hw1: cell 'extra0' is not part of this assignment and was ignored.",
    "unknown_two": "hw1: cells 'extra0', 'extra1' are not part of this assignment and were ignored.",
    "unknown_five": "hw1: cells 'extra0', 'extra1', 'extra2' and 2 more are not part of this assignment and were "
                    "ignored.",
    "duplicated": "hw1: cell 'answer' appears 2 times; only the last one was graded.",
    "deleted_test": "hw1: test cell 'test_one' had been deleted; it was put back from the assignment.",
    "deleted_cell": "hw1: cell 'answer' had been deleted; it was put back from the assignment.",
    "wrong_notebook": "hw1: none of the assignment's cells were found (is this the right notebook?). They were put "
                      "back from the assignment.",
    "deadline_before": "hw1: the time limit for the whole submission was reached before cell 'squares'; it and the "
                       "cells after it were not run.",
    "deadline_in": "hw1: the time limit for the whole submission was reached in cell 'squares'; the cells after it "
                   "were not run.",
    "dead": "hw1: the notebook stopped (crashed) in cell 'squares'; the cells after it were not run.",
    "out_of_memory": "hw1: cell 'squares' used more memory than allowed and the notebook stopped; the cells after "
                     "it were not run.",
    "stuck": "hw1: cell 'squares' ran too long and did not stop when asked to, so the notebook was stopped; the "
             "cells after it were not run.",
    "timeout": "hw1: cell 'squares' ran longer than 30 seconds and was stopped.",
    "timeout_numbered": "hw1: cell 3 ran longer than 30 seconds and was stopped.",
    "output": "hw1: cell 'squares' printed too much output; the rest was cut off.",
    "truncated_numbered": "hw1: cell 1 printed too much output; the rest was cut off.",
    "truncated": "hw1: cell 'squares' printed too much output; the rest was cut off.",
    "grader_error": "Grader error: the gradebook has no notebook 'hw1'",
    "not_submitted": "hw1: not submitted (0 points).",
    "worker_stopped": "Grading stopped several times before it could finish.",
    "forged_points": "hw1: test 'test_mean' reported 7 points, more than the 2 it is worth; it was scored 0.",
    "canary": "hw1: code that interferes with grading was found at test 'test_mean' (a check of test 'test_mean' "
              "that must fail passed). That test and every test after it got 0 points.",
    "canary_again": "hw1: code that interferes with grading was found at test cell 4 (test cell 4 failed when the "
                    "grader checked it but passed when run). That test and every test after it got 0 points.",
    "module": "hw1: code that interferes with grading was found at test 'test_mean' (the instructor's file "
              "helpers.py was changed). That test and every test after it got 0 points.",
    "during": "hw1: code that interferes with grading was found at test 'test_mean' (builtins.len was replaced "
              "while test 'test_mean' ran). That test and every test after it got 0 points.",
    "probe": "hw1: code that interferes with grading was found at test 'test_mean' (the grader's integrity check "
             "stopped working: it did not answer within 30 s). That test and every test after it got 0 points.",
    "other": "hw1: code that interferes with grading was found at test 'test_mean' (sys.displayhook was replaced). "
             "That test and every test after it got 0 points.",
}


def test_every_kind_of_problem_is_covered(problems: dict[str, str]) -> None:
    assert set(problems) == set(ENGLISH)


@pytest.mark.parametrize("key", sorted(ENGLISH))
def test_english_wording(problems: dict[str, str], english: None, key: str) -> None:
    assert describe_problem(problems[key]) == ENGLISH[key], problems[key]


def test_unknown_lines_pass_through(english: None) -> None:
    for text in ("something new happened", "", "hw1: cell 'x' did something else", "UngradableInput: x: empty"):
        assert describe_problem(text) == text


def test_every_problem_goes_through_the_catalogue(problems: dict[str, str], fake_app: Flask) -> None:
    with fake_app.app_context(), force_locale("ko"):
        for key, text in problems.items():
            shown = describe_problem(text)
            assert shown.startswith("[ko] "), (key, shown)
            for value in re.findall(r"'[^']*'|\d+", text):
                assert value in shown, (key, value, shown)


def test_the_filter_is_registered() -> None:
    from academy.web import filters

    app = Flask(__name__)
    Babel(app)
    filters.init_app(app)
    with app.app_context(), force_locale("en"):
        rendered = app.jinja_env.from_string("{{ p|problem }}").render(p="hw1: not submitted (0 points)")
    assert rendered == "hw1: not submitted (0 points)."


def test_korean_catalogue_translates_every_problem(problems: dict[str, str], real_app: Flask) -> None:
    """Fails until ``make messages`` has run and the new messages are translated (like tests/test_i18n.py)."""
    with real_app.app_context(), force_locale("ko"):
        untranslated = {key: describe_problem(text) for key, text in problems.items()
                        if not HANGUL.search(describe_problem(text))}
    assert not untranslated, f"run `make messages` and translate: {untranslated}"
