"""End-to-end journey in headless Chromium, in Korean: register, sign out and in, enroll.

The real portal runs in a background thread (Werkzeug) on a free port against a SQLite
file migrated with Alembic and loaded with the shipped ``courses/``.  Playwright drives
Debian's Chromium (``/usr/bin/chromium``; ``make test`` installs it).  Screenshots are
saved under ``tests/artifacts/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.web.browser import ARTIFACTS

DEADLINE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} KST$")

pytestmark = pytest.mark.browser


@dataclass
class Portal:
    base_url: str
    track_slug: str
    cohort_id: int


@dataclass
class Problems:
    """Everything that went wrong in the browser during the journey."""

    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught: {exc}"))
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)

    def _on_failed(self, request: Any) -> None:
        # ERR_ABORTED: the browser dropped a request because the page navigated on (the submission
        # page reloads itself when the score arrives, possibly while the favicon is still loading).
        if "ERR_ABORTED" not in str(request.failure):
            self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def _on_console(self, msg: Any) -> None:
        text = msg.text
        if "Content Security Policy" in text:
            self.csp_violations.append(text)
        if msg.type == "error":
            self.console_errors.append(f"{text} @ {msg.location.get('url', '')}")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400:
            self.bad_responses.append(f"{response.status} {response.request.method} {response.url}")

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "console errors": self.console_errors,
            "CSP violations": self.csp_violations,
            "failed requests": self.failed_requests,
            "HTTP >= 400": self.bad_responses,
        }


@contextmanager
def _served(app: Any) -> Iterator[str]:
    """``app`` served on a free port by a thread; yields its base URL, then stops it and closes its database."""
    from werkzeug.serving import make_server

    from academy.extensions import db

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="academy-e2e-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """The real portal served over HTTP on 127.0.0.1:<free port>, with courses and one open cohort."""

    from academy import create_app
    from academy.bootstrap import run_init
    from academy.catalog.services import list_tracks
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort
    from academy.extensions import db

    app = create_app({
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path}/academy.sqlite3",
        "secret_key": "x" * 40,
        "courses_dir": ROOT / "courses",
        "RATELIMIT_ENABLED": False,
    })
    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        tracks = list_tracks(db.session)
        assert tracks, "courses/ should define at least one track"
        track = tracks[0]
        start = utcnow().replace(microsecond=0)
        cohort = create_cohort(db.session, track, name="2026년 1기", starts_at=start,
                               ends_at=start + dt.timedelta(days=60), capacity=30, actor=None)
        db.session.commit()
        info = (track.slug, cohort.id)
        db.session.remove()

    with _served(app) as base:
        yield Portal(base_url=base, track_slug=info[0], cohort_id=info[1])


def _shot(page: Any, name: str, *, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.fonts.ready.then(() => true)")  # no fallback glyphs in the picture
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def sign_in(tab: Any, base: str, email: str, password: str) -> None:
    """Sign ``tab`` in to the portal at ``base`` through its sign-in form."""
    tab.goto(f"{base}/login")
    tab.fill("#email", email)
    tab.fill("#password", password)
    with tab.expect_navigation():
        tab.locator("main form button[type=submit]").click()


def _path(page: Any) -> str:
    from urllib.parse import urlsplit

    return urlsplit(page.url).path


def test_korean_learner_registers_signs_in_and_enrolls(page: Any, portal: Portal) -> None:
    from playwright.sync_api import expect

    problems = Problems()
    problems.attach(page)
    base = portal.base_url
    email = "hong.gildong@example.kr"
    password = "Saemaul-2026!"

    # --- the landing page, then registration -------------------------------------
    page.goto(f"{base}/")
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    page.locator("main a[href='/register']").first.click()
    page.wait_for_url(f"{base}/register")

    form = page.locator("form:has(#consent)")
    page.locator("#name").fill("홍길동")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.locator("#password_confirm").fill(password)
    page.locator("#company_name").fill("구미정밀(주)")
    page.locator("#business_number").fill("124-81-00998")
    page.locator("#region").select_option("gumi")
    page.locator("#industry").select_option("battery")
    page.locator("#job_role").select_option("quality")
    page.locator("[name=consent]").check()
    with page.expect_navigation():
        form.locator("button[type=submit]").click()

    assert _path(page) != "/register", page.locator(".invalid-feedback").all_inner_texts()
    signout = page.locator("form[action='/logout'] button[type=submit]")
    expect(signout).to_be_visible()
    expect(page.locator("header")).to_contain_text("홍길동")
    _shot(page, "01-registered.png")

    # --- sign out, check the skip link, sign in again -----------------------------
    with page.expect_navigation():
        signout.click()
    expect(page.locator("form[action='/logout']")).to_have_count(0)

    page.goto(f"{base}/login")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement && document.activeElement.className")
    assert "skip-link" in (focused or ""), f"first Tab focused {focused!r}, not the skip link"
    expect(page.locator(".skip-link")).to_be_focused()
    expect(page.locator(".skip-link")).to_be_visible()  # it appears when focused

    login_form = page.locator("form:has(#password):not(:has(#password_confirm))")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    _shot(page, "02-login.png")
    with page.expect_navigation():
        login_form.locator("button[type=submit]").click()
    assert _path(page) == "/dashboard", f"sign-in landed on {page.url}"
    expect(signout).to_be_visible()

    # --- tracks, the first track, enroll in the open cohort -----------------------
    page.goto(f"{base}/tracks")
    first_track = page.locator("main h2 a").first
    expect(first_track).to_have_attribute("href", f"/tracks/{portal.track_slug}")
    track_title = first_track.inner_text().strip()
    assert re.search(r"[가-힣]", track_title), f"track title is not Korean: {track_title!r}"
    first_track.click()
    page.wait_for_url(f"{base}/tracks/{portal.track_slug}")

    cohort_card = page.locator(f"[data-cohort='{portal.cohort_id}']")
    expect(cohort_card).to_contain_text("2026년 1기")
    with page.expect_navigation():
        cohort_card.locator("form[action$='/enroll'] button[type=submit]").click()
    assert _path(page) == "/dashboard", f"enrolling landed on {page.url}"

    # --- the dashboard -------------------------------------------------------------
    main = page.locator("main")
    # The interface speaks Korean: the page heading, the status badge and the header.
    expect(main.locator("h1")).to_have_text("나의 학습")
    expect(main.locator(".status-enrolled").first).to_contain_text("수강 확정")
    expect(page.locator("form[action='/logout'] button")).to_have_text("로그아웃")
    expect(main.locator("h2").first).to_have_text(track_title)
    expect(main).to_contain_text("2026년 1기")
    courses = main.locator(".card-course")
    assert courses.count() >= 1, "the dashboard lists no courses"
    course_titles = courses.locator("h3 a").all_inner_texts()
    assert all(t.strip() for t in course_titles), course_titles

    deadlines = [t.strip() for t in main.locator(".card-course tbody tr td:nth-child(3)").all_inner_texts()]
    assert deadlines, "the dashboard lists no assignments"
    for text in deadlines:
        # The "Overdue" badge could follow the date; a fresh cohort has none.
        assert DEADLINE_RE.match(text), f"deadline {text!r} is not formatted as YYYY-MM-DD HH:MM KST"

    bar = page.locator("[data-progress]").first
    expect(bar).to_be_attached()
    assert bar.get_attribute("data-progress") == "0"
    assert bar.evaluate("e => e.style.width") == "0%", "academy.js did not set the progress bar width"
    assert page.locator("html.js").count() == 1, "academy.js did not run"

    page.evaluate("() => document.fonts.ready.then(() => true)")
    fonts = page.evaluate(
        """() => ({
            check: document.fonts.check('16px Pretendard'),
            loaded: [...document.fonts].filter(f => f.family.replace(/["']/g, '') === 'Pretendard')
                                       .map(f => f.status),
            body: getComputedStyle(document.body).fontFamily,
        })"""
    )
    assert fonts["check"] is True, fonts
    assert "loaded" in fonts["loaded"], f"the Pretendard web font was not loaded: {fonts}"
    assert "Pretendard" in fonts["body"], fonts

    _shot(page, "03-dashboard.png", full_page=True)
    expect(page.locator("html")).to_have_attribute("lang", "ko")

    problems_found = {k: v for k, v in problems.as_dict().items() if v}
    hint = ""
    if any("/favicon.ico" in line for lines in problems_found.values() for line in lines):
        hint = (" (the browser asks for /favicon.ico when a page declares no icon: base.html needs a"
                " <link rel=\"icon\"> to a file under static/, or the app a /favicon.ico route)")
    assert not problems_found, f"browser problems during the journey: {problems_found}{hint}"


def test_learner_submits_sees_what_to_fix_and_the_instructors_grading(tmp_path: Path, page: Any) -> None:
    """The learner's loop in Korean: submit, read the feedback, see the instructor's grading, then the total.

    A real `academy worker` (embedded queue) grades, in the sandbox, a notebook with question 1
    right, question 2 wrong and question 3 not written, saved by the browser as
    ``production_log (1).ipynb``.  The deadline passing is the cohort's dates moving into the past.
    """
    from playwright.sync_api import expect

    from academy import create_app
    from academy.bootstrap import run_init
    from academy.catalog.models import Assignment
    from academy.catalog.services import list_tracks
    from academy.db import utcnow
    from academy.demo import start_worker
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import create_cohort, request_enrollment
    from academy.extensions import db
    from academy.processes import stop_process
    from academy.users.models import Role
    from academy.users.services import create_user
    from tests.grading.attempts import HIDDEN_LINE, pandas_attempt

    app = create_app({"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/academy.sqlite3",
                      "secret_key": "x" * 40, "courses_dir": ROOT / "courses", "RATELIMIT_ENABLED": False})
    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        track = list_tracks(db.session)[0]
        start = utcnow().replace(microsecond=0)
        cohort = create_cohort(db.session, track, name="2026년 1기", starts_at=start,
                               ends_at=start + dt.timedelta(days=60), capacity=30, actor=None)
        learner = create_user(db.session, "submitter@example.kr", "submit-pass-123", Role.learner, name="김제출")
        learner.consent_at = utcnow()
        request_enrollment(db.session, cohort, learner)
        teacher = create_user(db.session, "instructor@demo.academy.kr", "teach-pass-123", Role.instructor,
                              name="박강사")  # the course manifest names this instructor
        teacher.consent_at = utcnow()
        db.session.commit()
        cohort_id = cohort.id
        assignment_id = db.session.scalar(db.select(Assignment.id).where(Assignment.slug == "01-pandas-basics"))
        db.session.remove()
    attempt = tmp_path / "production_log (1).ipynb"
    attempt.write_bytes(pandas_attempt())
    with _served(app) as base:
        worker = start_worker(app)
        problems = Problems()
        problems.attach(page)

        def card(tab: Any, question: str) -> Any:
            return tab.locator("article.fb-question", has=tab.locator("h3", has_text=question))

        try:
            sign_in(page, base, "submitter@example.kr", "submit-pass-123")
            page.goto(f"{base}/dashboard")
            with page.expect_navigation():
                page.locator(f"a[href='/assignments/{assignment_id}']").click()
            expect(page.locator("main h1")).to_contain_text("pandas")
            page.set_input_files("#notebooks", str(attempt))
            with page.expect_navigation():
                page.locator("form.dropzone-form button[type=submit]").click()
            assert "/submissions/" in page.url
            expect(page.locator("main .alert-success")).to_contain_text("채점을 시작했습니다")
            _shot(page, "04-submitted.png", full_page=True)
            # The page reloads itself when grading finishes; no action from the learner.
            expect(page.locator("main h1 .status-graded")).to_be_visible(timeout=120_000)
            table = page.locator("main table")
            expect(table.locator("tr", has_text="문제 1. 불량률 열 추가하기")).to_contain_text("통과")
            expect(table.locator("tr", has_text="문제 2. 라인별 요약")).to_contain_text("정렬되어 있어야 합니다")
            expect(table).to_contain_text("강사가 채점")
            expect(page.locator("#score-held")).to_contain_text("마감")  # hidden results and the total wait
            _shot(page, "05-graded.png", full_page=True)

            # The detailed feedback: their code, what it printed, each visible test's result; nothing hidden.
            with page.expect_navigation():
                page.locator("#open-feedback").click()
            expect(page.locator("main h1")).to_contain_text("자세한 피드백")
            expect(card(page, "문제 1. 불량률 열 추가하기").locator("[data-result=visible-passed]")).to_be_visible()
            expect(card(page, "문제 2. 라인별 요약").locator("[data-message]")).to_contain_text(
                "정렬되어 있어야 합니다")
            not_written = card(page, "문제 3. 불량률이 높은 날 찾기").locator("[data-message]")
            expect(not_written).to_contain_text("NotImplementedError")
            expect(card(page, "문제 4. 개선 우선순위 정하기").locator("[data-result=waiting]")).to_be_visible()
            expect(page.locator("main")).to_contain_text("문제 1 함수 준비 완료")
            expect(page.locator("main")).not_to_contain_text(HIDDEN_LINE)
            expect(page.locator("[data-score=final]")).to_have_count(0)
            _shot(page, "06-feedback-before-deadline.png", full_page=True)

            # The instructor reads the written answer on the same page, gives points and a comment.
            staff = page.context.browser.new_context(locale="ko-KR", timezone_id="Asia/Seoul",
                                                     viewport={"width": 1280, "height": 900})
            teacher_page = staff.new_page()
            problems.attach(teacher_page)
            try:
                sign_in(teacher_page, base, "instructor@demo.academy.kr", "teach-pass-123")
                teacher_page.goto(f"{base}/assignments/{assignment_id}/gradebook")
                with teacher_page.expect_navigation():
                    teacher_page.locator("main table a[href^='/submissions/']").first.click()
                with teacher_page.expect_navigation():
                    teacher_page.locator("#open-feedback").click()
                essay = card(teacher_page, "문제 4. 개선 우선순위 정하기")
                essay.locator("input[type=number]").fill("2.5")
                card(teacher_page, "문제 2. 라인별 요약").locator("textarea").fill(
                    "groupby는 기본으로 정렬합니다. sort 인자를 다시 확인해 보세요.")
                with teacher_page.expect_navigation():
                    teacher_page.locator(".fb-save button[type=submit]").click()
                expect(teacher_page.locator(".alert-success")).to_contain_text("저장했습니다")
                _shot(teacher_page, "07-instructor-grades.png", full_page=True)
            finally:
                staff.close()

            # The learner's feedback page changes with it.
            page.reload()
            essay = card(page, "문제 4. 개선 우선순위 정하기")
            expect(essay.locator("[data-points]")).to_contain_text("2.5 / 3.0")
            expect(essay.locator("[data-result=waiting]")).to_have_count(0)
            expect(card(page, "문제 2. 라인별 요약").locator("[data-comment]")).to_contain_text("sort 인자를")
            _shot(page, "08-feedback-after-grading.png", full_page=True)

            # The deadline passes: the total and the hidden tests appear.
            with app.app_context():
                row = db.session.get(Cohort, cohort_id)
                row.starts_at = utcnow() - dt.timedelta(days=30)
                db.session.get(Assignment, assignment_id).due_days = 1
                db.session.commit()
                db.session.remove()
            page.reload()
            expect(page.locator("[data-score=final]")).to_be_visible()
            expect(page.locator("#score-held")).to_have_count(0)
            expect(card(page, "문제 1. 불량률 열 추가하기").locator("[data-result=passed]")).to_be_visible()
            expect(card(page, "문제 2. 라인별 요약").locator("[data-result=failed]")).to_be_visible()
            expect(page.locator("main")).to_contain_text(HIDDEN_LINE)
            _shot(page, "09-feedback-after-deadline.png", full_page=True)
            assert not any(problems.as_dict().values()), problems.as_dict()
        finally:
            stop_process(worker)


def test_admin_statistics_company_view_and_certificate_in_korean(tmp_path: Path, page: Any) -> None:
    """Issue 14 in the browser: the admin lands on the statistics (charts drawn, a filter, a table, a CSV),
    revokes nothing but finds a certificate; a company contact sees their employees; a learner downloads their
    certificate and anyone verifies it.  A small synthetic academy (``academy synth``) provides the figures."""
    from playwright.sync_api import expect
    from sqlalchemy import func, select

    from academy import create_app
    from academy.bootstrap import run_init
    from academy.certificates.models import Certificate
    from academy.certificates.services import Issuer
    from academy.companies.services import appoint
    from academy.db import utcnow
    from academy.extensions import db
    from academy.stats.refresh import rebuild
    from academy.synth import synthesize
    from academy.users.models import Role, User
    from academy.users.passwords import hash_password
    from academy.users.services import create_user

    app = create_app({"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/academy.sqlite3",
                      "secret_key": "x" * 40, "courses_dir": ROOT / "courses", "RATELIMIT_ENABLED": False})
    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        synthesize(db.session, learners=150, seed=1, issuer=Issuer.from_app())
        admin = create_user(db.session, "stats-admin@example.kr", "Admin-pass-2026", Role.admin, name="박관리")
        admin.consent_at = utcnow()
        # the company with the most employees gets a contact; the learner with a certificate may sign in
        company_id = db.session.scalar(select(User.company_id).where(User.company_id.is_not(None))
                                       .group_by(User.company_id).order_by(func.count().desc()).limit(1))
        contact = create_user(db.session, "hr@example.kr", "Contact-pass-2026", Role.learner, name="최인사")
        contact.consent_at, contact.company_id = utcnow(), company_id
        db.session.flush()
        appoint(db.session, contact.company, contact, actor=admin)
        certificate = db.session.scalar(select(Certificate).where(Certificate.revoked_at.is_(None))
                                        .order_by(Certificate.id).limit(1))
        holder = db.session.get(User, certificate.user_id)
        holder.password_hash, holder.consent_at = hash_password("Holder-pass-2026"), utcnow()
        code, holder_email, holder_name = certificate.code, holder.email, holder.name
        company_name = contact.company.name
        rebuild(db.session)
        db.session.commit()
        db.session.remove()
    with _served(app) as base:
        problems = Problems()
        problems.attach(page)

        page.context.clear_cookies()
        sign_in(page, base, "stats-admin@example.kr", "Admin-pass-2026")
        assert _path(page) == "/admin/"  # admins land on the statistics
        expect(page.locator("main h1")).to_have_text("통계")
        expect(page.locator("html[data-charts-drawn=yes]")).to_have_count(1)
        enrolled = int(page.locator("[data-figure=enrolled]").inner_text().replace(",", ""))
        assert enrolled > 50
        for canvas in ("chart-funnel", "chart-weekly", "chart-by", "chart-hours-course"):
            box = page.locator(f"#{canvas}").bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100, canvas
        expect(page.locator("#h-funnel")).to_have_text("수료 깔때기")
        expect(page.locator("main")).to_contain_text("과정 수료율")
        _shot(page, "10-admin-statistics.png", full_page=True)

        page.select_option("#f-region", "gumi")
        with page.expect_navigation():
            page.locator("form[aria-label='필터'] button[type=submit]").click()
        gumi = int(page.locator("[data-figure=enrolled]").inner_text().replace(",", ""))
        assert 0 < gumi < enrolled
        page.locator("section[aria-labelledby=h-funnel] summary").click()
        expect(page.locator("table[data-table=funnel] td[data-stage=enrolled]")).to_have_text(f"{gumi:,}")
        with page.expect_download() as download:
            page.locator("[data-export=funnel-csv]").click()
        assert Path(download.value.path()).read_bytes().startswith("\ufeff".encode())
        _shot(page, "11-admin-statistics-gumi.png", full_page=True)

        page.goto(f"{base}/admin/certificates?q={code}")
        expect(page.locator("main")).to_contain_text(holder_name)
        _shot(page, "12-admin-certificates.png")

        page.context.clear_cookies()
        sign_in(page, base, "hr@example.kr", "Contact-pass-2026")
        with page.expect_navigation():
            page.get_by_role("link", name="우리 회사").click()
        expect(page.locator("main h1")).to_have_text(company_name)
        assert page.locator("[data-company-report] tbody tr[data-employee]").count() >= 2
        _shot(page, "13-company-view.png", full_page=True)

        page.context.clear_cookies()
        sign_in(page, base, holder_email, "Holder-pass-2026")
        page.goto(f"{base}/dashboard")
        expect(page.locator("#my-certificates")).to_have_text("내 수료증")
        with page.expect_download() as download:
            page.locator(f"[data-certificate-pdf='{code}']").first.click()
        assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
        _shot(page, "14-learner-certificates.png")
        page.context.clear_cookies()
        page.goto(f"{base}/verify")
        page.fill("#code", code.lower().replace("-", ""))
        with page.expect_navigation():
            page.locator("main form button[type=submit]").click()
        expect(page.locator("[data-certificate-status=valid]")).to_contain_text("유효한 수료증")
        expect(page.locator("main")).to_contain_text(holder_name)
        _shot(page, "15-certificate-verified.png")
        assert not problems.console_errors and not problems.csp_violations, problems.as_dict()
