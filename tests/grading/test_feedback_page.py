"""The detailed feedback is a portal page built from the stored results (academy.grading.feedback).

A real grading of the shipped pandas assignment (nbgrader, the sandbox, the worker's in-process
path) with one question right, one wrong, one not written and a written answer: the learner sees
their code, its outputs and each visible test's result at once, nothing of the hidden tests; the
instructor's points and comments appear on the learner's page at once; after the deadline the
hidden tests and the total appear.  Unit tests cover the sanitising of what a notebook holds.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.catalog.models import Assignment
from academy.extensions import db
from academy.grading.feedback import notebook_feedback, output_views, render_markdown, sanitise_html
from academy.grading.models import CellScore, GradingJob, Submission
from tests.conftest import csrf_token
from tests.grading.attempts import HIDDEN_LINE, pandas_attempt
from tests.support import ROOT

SOURCE = ROOT / "courses" / "python-data" / "source" / "01-pandas-basics" / "production_log.ipynb"
NAME = "production_log.ipynb"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --- what a notebook holds, made safe -------------------------------------------------------


def test_scripts_handlers_and_script_urls_are_removed_and_tables_stay() -> None:
    html = str(sanitise_html(
        '<script>alert(1)</script><b onclick="x()">굵게</b><a href="javascript:alert(1)">a</a>'
        '<a href="data:text/html,hi">d</a><img src="data:image/png;base64,AAAA" onerror="x()">'
        '<table class="dataframe" border="1"><tr><th>line</th><td style="color:red">A</td></tr></table>'
        '<iframe src="https://example.com"></iframe><form action="/logout"><button>x</button></form>'))
    assert "<script" not in html and "alert(1)" not in html and "onclick" not in html and "onerror" not in html
    assert "javascript:" not in html and "data:text/html" not in html and "<iframe" not in html
    assert "<form" not in html and "style=" not in html
    assert "<b>굵게</b>" in html and '<img src="data:image/png;base64,AAAA">' in html
    assert "<th>line</th>" in html and "<td>A</td>" in html


def test_markdown_is_rendered_and_its_html_sanitised() -> None:
    text = "## 문제 1\n\n**굵게** <img src=x onerror=alert(1)>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    html = str(render_markdown(text))
    assert "<h4>문제 1</h4>" in html and "<strong>굵게</strong>" in html and "<td>1</td>" in html
    assert "onerror" not in html


def test_outputs_become_text_images_and_safe_html_and_malformed_ones_are_skipped() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 20).decode()
    views = output_views([
        {"output_type": "stream", "name": "stdout", "text": ["한 줄\n", "두 줄\n"]},
        {"output_type": "stream", "name": "stderr", "text": "\x1b[31m경고\x1b[0m"},
        {"output_type": "error", "ename": "ValueError", "evalue": "x",
         "traceback": ["\x1b[0;31mValueError\x1b[0m: 잘못된 값"]},
        {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}},
        {"output_type": "display_data", "data": {"image/png": "not base64 <script>"}},
        {"output_type": "execute_result", "data": {"text/html": "<table><tr><td>1</td></tr></table><script>x</script>",
                                                   "text/plain": "df"}},
        {"output_type": "execute_result", "data": {"text/plain": "x" * 30_000}},
        "nonsense", {"output_type": "unknown"}, {"output_type": "display_data", "data": "nonsense"},
    ])
    kinds = [v.kind for v in views]
    assert kinds == ["text", "stderr", "error", "image", "html", "text"]
    assert views[0].text == "한 줄\n두 줄\n" and views[1].text == "경고"
    assert views[2].text == "ValueError: 잘못된 값", "no ANSI colours"
    assert views[3].src == f"data:image/png;base64,{png}"
    assert "<script" not in str(views[4].html) and "<td>1</td>" in str(views[4].html)
    assert views[5].cut and len(views[5].text) == 20_000
    assert output_views("nonsense") == [] and output_views(None) == []


def _view(cell: CellScore, *, held: bool = False, waiting: bool = False) -> Any:
    from academy.grading.standing import CellView

    return CellView(cell, "문제", shown=not held and not waiting, waiting=waiting, held=held, message=None)


def test_a_held_test_shows_its_released_lines_only_and_a_deleted_graded_cell_still_shows() -> None:
    executed = json.loads(SOURCE.read_text(encoding="utf-8"))
    released = copy.deepcopy(executed)
    for cell in executed["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "test_add_defect_rate":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hidden says hello"}]
    for cell in released["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "test_add_defect_rate":
            cell["source"] = "assert True  # visible only"
    test = CellScore(id=1, notebook="production_log", grade_id="test_add_defect_rate", score=2.0, max_score=2.0,
                     hidden=True)
    gone = CellScore(id=2, notebook="production_log", grade_id="no_longer_there", score=0.0, max_score=1.0)

    held = notebook_feedback("production_log", executed, released=released,
                             views=[_view(test, held=True), _view(gone)])
    block = next(b for b in held.blocks if b.question is not None and b.question.cell is test)
    assert block.withheld and block.source == "assert True  # visible only" and block.outputs == []
    assert held.blocks[-1].question.cell is gone, "a graded cell missing from the notebook is still listed"

    shown = notebook_feedback("production_log", executed, released=released, views=[_view(test)])
    block = next(b for b in shown.blocks if b.question is not None)
    assert not block.withheld and HIDDEN_LINE in block.source and block.outputs[0].text == "hidden says hello"


# --- a real grading, seen by the learner and the instructor -----------------------------------


@pytest.fixture(scope="module")
def attempt_bytes() -> bytes:
    return pandas_attempt()


def _grade(app: Flask, client: FlaskClient, course: dict[str, Any], data: bytes) -> str:
    from academy.grading.worker import run_job

    token = csrf_token(client, f"/assignments/{course['assignment_id']}")
    response = client.post(f"/assignments/{course['assignment_id']}/submit", content_type="multipart/form-data",
                           data={"csrf_token": token, "notebooks": [(io.BytesIO(data), "production_log (1).ipynb")]})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        job_id = db.session.scalar(db.select(GradingJob.id).join(Submission).where(Submission.public_id == public_id))
        assert run_job(job_id) == "done"
    return public_id


def _card(html: str, question: str) -> str:
    """The feedback card whose heading names ``question``."""
    for card in re.findall(r'<article class="card fb-question.*?</article>', html, re.DOTALL):
        if question in card:
            return card
    raise AssertionError(f"no card for {question!r}")


def test_the_learner_sees_visible_results_at_once_and_the_rest_after_the_deadline(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, instructor: FlaskClient,
    attempt_bytes: bytes,
) -> None:
    from academy.db import utcnow
    from academy.enrollment.models import Cohort

    public_id = _grade(app, client, course, attempt_bytes)
    url = f"/submissions/{public_id}/feedback"
    submission_page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert f'href="{url}"' in submission_page, "the submission page leads to the feedback"

    page = client.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # One right, one wrong with the test's own message, one not written, in the learner's words.
    q1, q2 = _card(html, "문제 1. 불량률 열 추가하기"), _card(html, "문제 2. 라인별 요약")
    q3, q4 = _card(html, "문제 3. 불량률이 높은 날 찾기"), _card(html, "문제 4. 개선 우선순위 정하기")
    assert 'data-result="visible-passed"' in q1 and 'data-result="held"' in q1
    assert 'data-result="visible-failed"' in q2 and "라인 이름이 인덱스여야 하고 정렬되어 있어야 합니다." in q2
    assert 'data-result="visible-failed"' in q3 and "NotImplementedError()" in q3 and "아직" in q3
    assert 'data-result="waiting"' in q4 and "라인 B를 먼저 개선해야 합니다." in q4
    # Their code and what it printed; nothing a notebook can run on the page.
    assert 'fb-text">문제 1 함수 준비 완료' in html and "groupby(&#39;line&#39;, sort=False)" in html
    assert '<div class="fb-html"><b>표 미리보기</b></div>' in html, "the notebook's HTML output, sanitised"
    assert not re.search(r"<script>steal|<b onclick|<img src=\"x\"|onerror=\"?steal", html), "nothing runs, loads"
    # Nothing of the hidden tests, no total, no grade id.
    assert HIDDEN_LINE not in html and "BEGIN HIDDEN TESTS" not in html
    assert 'data-score="final"' not in html and 'id="score-held"' in html
    assert "test_add_defect_rate" not in html and "priority_answer" not in html
    assert "nbgrader" not in html, "nbgrader's own file is the staff's"
    assert client.get(f"{url}/nbgrader").status_code in (403, 404)

    # The instructor sees everything, gives the written answer its points and comments on question 2.
    staff_html = instructor.get(url).get_data(as_text=True)
    assert HIDDEN_LINE in staff_html and f"{url}/nbgrader" in staff_html
    nbgrader_file = instructor.get(f"{url}/nbgrader")
    assert nbgrader_file.status_code == 200 and "sandbox" in nbgrader_file.headers["Content-Security-Policy"]
    with app.app_context():
        cells = {c.grade_id: c.id for c in db.session.scalars(db.select(CellScore))}
    saved = instructor.post(f"/submissions/{public_id}/grade", data={
        "csrf_token": csrf_token(instructor, url), "back": "feedback",
        f"points-{cells['priority_answer']}": "2.5",
        f"comment-{cells['test_summarize_by_line']}": "groupby의 sort 인자를 다시 확인해 보세요.\n<b>sort=True</b>",
    })
    assert saved.status_code == 303 and saved.headers["Location"].endswith(url)

    html = client.get(url).get_data(as_text=True)
    q2, q4 = _card(html, "문제 2. 라인별 요약"), _card(html, "문제 4. 개선 우선순위 정하기")
    assert "groupby의 sort 인자를 다시 확인해 보세요." in q2 and "&lt;b&gt;sort=True&lt;/b&gt;" in q2
    assert 'data-result="waiting"' not in q4 and "2.5 / 3.0" in q4
    assert HIDDEN_LINE not in html

    # The deadline passes: the total and the hidden tests with what they printed appear.
    with app.app_context():
        cohort = db.session.get(Cohort, course["cohort_id"])
        cohort.starts_at = utcnow() - dt.timedelta(days=30)
        db.session.get(Assignment, course["assignment_id"]).due_days = 1
        db.session.commit()
        score = db.session.scalar(db.select(Submission.score).where(Submission.public_id == public_id))
    html = client.get(url).get_data(as_text=True)
    assert 'data-score="final"' in html and 'id="score-held"' not in html
    assert re.search(rf'data-score="final">{score:.1f}\b', html), "the total the other pages show"
    assert HIDDEN_LINE in html and 'data-result="passed"' in _card(html, "문제 1. 불량률 열 추가하기")
    assert "test_add_defect_rate" not in html


def test_a_missing_graded_notebook_falls_back_to_the_submitted_one(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, attempt_bytes: bytes
) -> None:
    """A submission graded before graded notebooks were kept (or whose file is gone) still has a page."""
    public_id = _grade(app, client, course, attempt_bytes)
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert submission.graded_notebooks and set(submission.graded_notebooks) == {"production_log"}
        digest = submission.graded_notebooks["production_log"]
        stored = Path(app.config["ACADEMY_DATA_DIR"]) / "graded" / digest[:2] / digest
        stored.chmod(0o644)
        stored.write_text("{ not json")
    html = client.get(f"/submissions/{public_id}/feedback").get_data(as_text=True)
    assert "문제 1. 불량률 열 추가하기" in html and "groupby(&#39;line&#39;, sort=False)" in html
    assert 'fb-text">문제 1 함수 준비 완료' not in html, "the submitted notebook was never run: no outputs"
    assert HIDDEN_LINE not in html
