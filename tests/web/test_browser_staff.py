"""Course staff's journey in headless Chromium, in Korean: publish a version, read the gradebook, override a score,
and the learner is told.

A file of its own so that it runs beside tests/web/test_browser.py (each test file stays in one test process), with
that file's portal, browser page and checks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.web.test_browser import Problems, _path, _served, _shot, sign_in

pytestmark = pytest.mark.browser


def test_instructor_publishes_reads_the_gradebook_overrides_and_the_learner_is_told_in_korean(
    tmp_path: Path, page: Any,
) -> None:
    """Course staff's loop in Korean, from where they land: publish a new version (checked by a real `academy
    worker` in the sandbox, then confirmed), read the course gradebook, change an autograded score with a reason;
    the learner finds the new score and the reason in the inbox."""
    import json

    from playwright.sync_api import expect

    from academy import create_app
    from academy.bootstrap import run_init
    from academy.catalog.models import Assignment, Course
    from academy.catalog.services import list_tracks
    from academy.db import utcnow
    from academy.demo import start_worker
    from academy.enrollment.services import create_cohort, request_enrollment
    from academy.extensions import db
    from academy.grading.models import CellScore, Submission, SubmissionStatus
    from academy.grading.services import current_release
    from academy.processes import stop_process
    from academy.users.models import Role
    from academy.users.services import create_user

    app = create_app({"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/academy.sqlite3",
                      "secret_key": "x" * 40, "courses_dir": ROOT / "courses", "RATELIMIT_ENABLED": False})
    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        track = list_tracks(db.session)[0]
        start = utcnow().replace(microsecond=0)
        cohort = create_cohort(db.session, track, name="2026년 1기", starts_at=start,
                               ends_at=start + dt.timedelta(days=60), capacity=30, actor=None)
        learner = create_user(db.session, "gradebook@example.kr", "learn-pass-123", Role.learner, name="김성적")
        learner.consent_at = utcnow()
        request_enrollment(db.session, cohort, learner)
        teacher = create_user(db.session, "instructor@demo.academy.kr", "teach-pass-123", Role.instructor,
                              name="박강사")  # the course manifest names this instructor
        teacher.consent_at = utcnow()
        assignment = db.session.scalar(db.select(Assignment).where(Assignment.slug == "01-pandas-basics"))
        # An attempt graded earlier: question 2's test failed on a detail the instructor will forgive.
        now = utcnow()
        attempt = Submission(assignment=assignment, user_id=learner.id, release=current_release(db.session, assignment),
                             attempt=1, status=SubmissionStatus.graded, raw_score=4.0, score=4.0, max_score=12.0,
                             submitted_at=now, graded_at=now)
        attempt.cells = [
            CellScore(notebook="production_log", grade_id="test_add_defect_rate", score=2.0, max_score=2.0,
                      visible_passed=True),
            CellScore(notebook="production_log", grade_id="test_summarize_by_line", score=0.0, max_score=3.0,
                      visible_passed=False, error="AssertionError: 결과는 라인 이름순으로 정렬되어 있어야 합니다"),
            CellScore(notebook="production_log", grade_id="test_find_bad_days", score=0.0, max_score=2.0,
                      visible_passed=False, error="NotImplementedError"),
            CellScore(notebook="production_log", grade_id="test_daily_defect_rate", score=0.0, max_score=2.0,
                      visible_passed=False, error="NotImplementedError"),
            CellScore(notebook="production_log", grade_id="priority_answer", score=2.0, max_score=3.0, manual=True),
        ]
        db.session.add(attempt)
        db.session.commit()
        assignment_id, course_id = assignment.id, assignment.course_id
        course_title = db.session.get(Course, course_id).title("ko")
        db.session.remove()
    source = json.loads((ROOT / "courses" / "python-data" / "source" / "01-pandas-basics" / "production_log.ipynb")
                        .read_bytes())
    source["cells"].insert(0, {"cell_type": "markdown", "id": "v2-note", "metadata": {},
                               "source": "## 2판 안내: 문제 2의 설명을 보강했습니다"})
    new_version = tmp_path / "production_log.ipynb"
    new_version.write_text(json.dumps(source, ensure_ascii=False), encoding="utf-8")

    with _served(app) as base:
        worker = start_worker(app)
        problems = Problems()
        problems.attach(page)

        try:
            sign_in(page, base, "instructor@demo.academy.kr", "teach-pass-123")
            assert _path(page) == "/teach", page.url  # staff land on their own home
            _shot(page, "10-staff-home.png", full_page=True)

            # Publish: from the home's assignment list, upload, the checks run in the sandbox, confirm.
            with page.expect_navigation():
                page.locator(f"a[href='/teach/assignments/{assignment_id}/publish']").click()
            expect(page.locator("main h1")).to_contain_text("새 판 배포하기")
            page.set_input_files("#source-notebooks", str(new_version))
            with page.expect_navigation():
                page.locator("main form[enctype] button[type=submit]").click()
            # The draft page follows the check job and shows its outcome when it is done.
            expect(page.locator("[data-draft-state=ready]")).to_be_visible(timeout=180_000)
            expect(page.locator("main .alert-success")).to_contain_text("모든 검사를 통과했습니다")
            expect(page.locator("main")).to_contain_text("채점 셀, 배점, 테스트는 바뀌지 않았습니다")
            _shot(page, "11-publish-checked.png", full_page=True)
            with page.expect_navigation():
                page.locator("[data-release-version='2']").click()
            expect(page.locator("[data-released-version='2']")).to_be_visible(timeout=120_000)
            expect(page.locator("[data-released-version='2']")).to_contain_text("2판을 배포했습니다")
            _shot(page, "12-publish-released.png", full_page=True)

            # The course gradebook, reached from the breadcrumb, agrees with the attempt; then one learner.
            with page.expect_navigation():
                page.locator("nav .breadcrumb a", has_text=course_title).click()
            row = page.locator("tr[data-learner='gradebook@example.kr']")
            expect(row.locator("td[data-assignment='01-pandas-basics'] [data-score]")).to_have_text("4.0")
            _shot(page, "13-gradebook.png", full_page=True)
            with page.expect_navigation():
                row.locator("th a").click()
            with page.expect_navigation():
                page.locator("main table a[href^='/submissions/']").first.click()

            # Change question 2's points with a reason the learner will read.
            question = page.locator("tr[data-cell]", has=page.locator("input[name=cell]"))
            cell = question.nth(1)
            cell.locator("summary").click()
            cell.locator("input[name=points]").fill("2.5")
            cell.locator("input[name=reason]").fill("정렬 기준만 달랐고 집계는 맞았습니다")
            with page.expect_navigation():
                cell.locator("button[type=submit]").click()
            expect(page.locator("main .alert-success")).to_contain_text("저장했습니다")
            expect(cell.locator("[data-override]")).to_contain_text("정렬 기준만 달랐고")
            _shot(page, "14-override.png", full_page=True)

            # The learner: the unread count in the navigation, the message with the new points and the reason.
            other = page.context.browser.new_context(locale="ko-KR", timezone_id="Asia/Seoul",
                                                     viewport={"width": 1280, "height": 900})
            learner_page = other.new_page()
            problems.attach(learner_page)
            try:
                sign_in(learner_page, base, "gradebook@example.kr", "learn-pass-123")
                link = learner_page.locator("[data-inbox-link]")
                expect(link).to_contain_text("1")
                with learner_page.expect_navigation():
                    link.click()
                _shot(learner_page, "15-learner-inbox.png", full_page=True)
                with learner_page.expect_navigation():
                    learner_page.locator("[data-message][data-unread]").first.click()
                expect(learner_page.locator("main")).to_contain_text("정렬 기준만 달랐고 집계는 맞았습니다")
                _shot(learner_page, "16-learner-message.png", full_page=True)
            finally:
                other.close()
            assert not any(problems.as_dict().values()), problems.as_dict()
        finally:
            stop_process(worker)
