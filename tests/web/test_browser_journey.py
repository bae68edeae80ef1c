"""Issue 16's journey in Korean, one learner seen by every role, on the shipped curriculum.

A learner registers, enrolls in the first track, opens the first assignment's lab (a real JupyterHub with
configurable-http-proxy, signed in through the portal), writes the answers in the lab, submits from the lab
and reads the feedback once a real ``academy worker`` has graded it in the sandbox; the course's instructor
finds the submission in the gradebook; the admin finds the learner in the statistics.  Screenshots go to
``tests/artifacts/journey-*.png``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, skip_or_fail
from tests.web.browser import TIMEOUT_MS
from tests.web.test_browser import Problems, _shot, sign_in

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "kim.journey@example.kr", "Journey-2026!"
_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def _answered(lab_notebook: dict[str, Any], source: Path) -> dict[str, Any]:
    """The lab's notebook with each solution cell written as the instructor's source answers it."""
    answers = {}
    for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            answers[meta["grade_id"]] = "\n".join(line for line in text.splitlines() if not _MARKER.match(line))
    notebook = json.loads(json.dumps(lab_notebook))
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return notebook


def _another_person(page: Any) -> Any:
    """A new tab in a browser of its own (no shared cookies): another person at another desk, in Korean."""
    context = page.context.browser.new_context(locale="ko-KR", timezone_id="Asia/Seoul",
                                               viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def test_a_learner_s_first_assignment_seen_by_every_role_in_korean(tmp_path: Path, page: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import expect
    from sqlalchemy import select

    from academy.catalog.models import Assignment, Course
    from academy.catalog.services import list_tracks
    from academy.demo import start_worker
    from academy.extensions import db
    from academy.processes import stop_process
    from academy.users.models import User
    from tests.labs.labstack import lab_stack, missing_parts

    reason = missing_parts()
    if reason:
        skip_or_fail(reason)
    # Every job (the lab's start and the grading) runs in a real `academy worker`, as in production.
    with lab_stack(tmp_path, gpu_course=None, jobs=()) as stack:
        app = stack.app
        with app.app_context():
            track = list_tracks(db.session)[0]
            course = min((c for c in track.courses if c.active), key=lambda c: (c.position, c.slug))
            first = min((a for a in course.assignments if a.active), key=lambda a: (a.position, a.slug))
            course_id, assignment_id, slug, course_slug = course.id, first.id, first.slug, course.slug
            course_title, notebook_name = course.title_ko, first.notebooks[0]
            db.session.remove()
        stack.make_learner("instructor@demo.academy.kr", enroll=False, role="instructor")  # the manifests name them
        stack.make_learner("admin@example.kr", enroll=False, role="admin")
        # The worker starts labs on the stack's hub, as `academy worker` does in production.
        monkeypatch.setenv("ACADEMY_HUB_API_TOKEN", stack.api_token)
        monkeypatch.setenv("ACADEMY_HUB_CLIENT_SECRET", "s" * 48)
        worker = start_worker(app)
        problems = Problems()
        problems.attach(page)
        page.on("dialog", lambda dialog: dialog.accept())  # "submit what the lab holds now?"
        try:
            base = stack.portal_url
            # --- the learner registers, enrolls in the first track --------------------------------------
            page.goto(f"{base}/register")
            page.locator("#name").fill("김여정")
            page.locator("#email").fill(EMAIL)
            page.locator("#password").fill(PASSWORD)
            page.locator("#password_confirm").fill(PASSWORD)
            page.locator("#company_name").fill("포항정밀(주)")
            page.locator("#business_number").fill("124-81-00998")
            page.locator("#region").select_option("pohang")
            page.locator("#industry").select_option("steel")
            page.locator("#job_role").select_option("production")
            page.locator("[name=consent]").check()
            with page.expect_navigation():
                page.locator("form:has(#consent) button[type=submit]").click()
            expect(page.locator("form[action='/logout'] button")).to_have_text("로그아웃")
            page.goto(f"{base}/tracks/{track.slug}")
            with page.expect_navigation():
                page.locator(f"[data-cohort='{stack.cohort_id}'] form[action$='/enroll'] button[type=submit]").click()
            main = page.locator("main")
            expect(main.locator("h1")).to_have_text("나의 학습")
            expect(main).to_contain_text(course_title)
            _shot(page, "journey-01-enrolled.png", full_page=True)

            # --- the first assignment, its lab, the answers written in JupyterLab ----------------------
            with page.expect_navigation():
                main.locator(f"a[href='/assignments/{assignment_id}']").first.click()
            expect(page.locator("[data-open-lab]")).to_have_text("실습 열기")
            page.locator("[data-open-lab]").click()
            page.wait_for_url(re.compile(rf".*/user/u\d+/lab/tree/{course_slug}/{slug}/.*\.ipynb"), timeout=120_000)
            expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
            expect(page.locator(".lm-MenuBar-itemLabel").first).to_have_text("파일", timeout=30_000)
            _shot(page, "journey-02-lab.png")
            with app.app_context():
                user_id = db.session.scalar(select(User.id).where(User.email == EMAIL))
                db.session.remove()
            path = f"{course_slug}/{slug}/{notebook_name}"
            held = stack.contents(f"u{user_id}", path, params={"content": 1}).json()["content"]
            written = _answered(held, ROOT / "courses" / course_slug / "source" / slug / notebook_name)
            saved = stack.contents(f"u{user_id}", path, "PUT",
                                   json={"type": "notebook", "format": "json", "content": written})
            assert saved.status_code == 200, saved.text[:300]

            # --- submit from the lab, the feedback ------------------------------------------------------
            page.goto(f"{base}/assignments/{assignment_id}")
            page.locator(f"form[action='/labs/assignments/{assignment_id}/submit'] button[type=submit]").click()
            page.wait_for_url(re.compile(r".*/submissions/[0-9a-f-]+$"), timeout=60_000)
            expect(page.locator("main h1 .status-graded")).to_be_visible(timeout=180_000)
            table = page.locator("main table").first
            expect(table).to_contain_text("통과")
            expect(table).not_to_contain_text("실패")
            _shot(page, "journey-03-feedback.png", full_page=True)
            # Signing out passes through the hub's logout (the lab is still running) and back to the portal.
            page.goto(f"{base}/dashboard")
            page.locator("form[action='/logout'] button[type=submit]").click()
            expect(page.locator("form[action='/logout']")).to_have_count(0, timeout=30_000)
            assert page.url.startswith(base), page.url

            # --- the instructor, at their own desk: lands on /teach, opens the course gradebook --------
            page = _another_person(page)
            sign_in(page, base, "instructor@demo.academy.kr", "lab-pass-2026")
            assert page.url.rstrip("/").endswith("/teach"), page.url
            with page.expect_navigation():
                page.locator(f"main a[href^='/teach/courses/{course_id}/gradebook']").first.click()
            row = page.locator(f"[data-gradebook] tr[data-learner='{EMAIL}']")
            expect(row).to_contain_text("김여정")
            score = row.locator(f"td[data-assignment='{slug}'] [data-score]")
            expect(score).to_be_visible()
            assert float(score.inner_text()) > 0, score.inner_text()
            _shot(page, "journey-04-gradebook.png", full_page=True)

            # --- the admin, at their own desk: lands on the statistics, counts again, finds the learner -
            page = _another_person(page)
            sign_in(page, base, "admin@example.kr", "lab-pass-2026")
            assert "/admin" in page.url, page.url
            with page.expect_navigation():
                page.locator("form[action$='/refresh'] button[type=submit]").click()
            page.goto(f"{base}/admin/?course={course_id}")
            expect(page.locator("[data-figure='enrolled']")).to_have_text("1")
            for stage in ("started", "submitted"):
                expect(page.locator(f"td[data-stage='{stage}']")).to_have_text("1")
            _shot(page, "journey-05-statistics.png", full_page=True)
        finally:
            stop_process(worker)
        with app.app_context():
            assert db.session.scalar(select(Course.slug).where(Course.id == course_id)) == course_slug
            assert db.session.scalar(select(Assignment.slug).where(Assignment.id == assignment_id)) == slug
            db.session.remove()
        found = {k: v for k, v in problems.as_dict().items() if v and k != "CSP violations"}
        portal_csp = [p for p in problems.csp_violations if base in p]
        assert not portal_csp, portal_csp
        assert not found.get("console errors"), found
