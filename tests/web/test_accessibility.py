"""Accessibility in headless Chromium: axe-core on the main pages of every role, in Korean and in English, and the
portal used with the keyboard alone.

One portal (the shipped catalogue, a cohort, a learner with a graded attempt and a certificate, the instructor the
course manifests name, an admin) and one browser serve the whole module.  axe-core comes from the npm registry
(``package.json``; ``make test`` runs ``npm ci``) and is injected into each page; a violation whose impact is
*serious* or *critical* fails the test, with the rule, its help text and the elements it found.  Screenshots with
the focus showing are saved as ``tests/artifacts/a11y-*.png``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import ROOT, skip_or_fail
from tests.web.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.web.test_browser import _path, _served, sign_in

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
LANGUAGES = ("ko", "en")

LEARNER = ("a11y-learner@example.kr", "Learner-pass-2026", "김접근")
INSTRUCTOR = ("instructor@demo.academy.kr", "Teach-pass-2026", "박강사")  # the course manifests name this instructor
ADMIN = ("a11y-admin@example.kr", "Admin-pass-2026", "이관리")
KEYBOARD = ("a11y-keyboard@example.kr", "Keyboard-pass-2026", "최키보드")

# axe's findings, reduced to what a reader of a failure needs; the closed <details> are opened first so that what they
# hold (forms, the tables behind the charts) is checked too.  Duplicate ids are reported beside them.
AXE_RUN = """async () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const counts = {};
  document.querySelectorAll('[id]').forEach(e => { counts[e.id] = (counts[e.id] || 0) + 1; });
  const duplicates = Object.keys(counts).filter(id => counts[id] > 1);
  const result = await axe.run(document, {resultTypes: ['violations']});
  const found = result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), impact: n.impact, summary: n.failureSummary})),
  }));
  if (duplicates.length) {
    found.push({id: 'duplicate-id', impact: 'serious', help: 'id attribute values must be unique',
                nodes: duplicates.map(id => ({target: '#' + id}))});
  }
  return found;
}"""

# The focused element, and whether the focus shows: an outline or a box shadow on it, inside the viewport and not
# under something else (once its transitions, such as the skip link sliding in, and the smooth scroll that brings
# it into view are over).
FOCUSED = """async () => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  await Promise.all(el.getAnimations().map(a => a.finished.catch(() => null)));
  let at = null, still = 0;
  for (let i = 0; i < 120 && still < 3; i++) {
    await new Promise(resolve => requestAnimationFrame(resolve));
    const now = scrollX + ',' + scrollY;
    still = now === at ? still + 1 : 0;
    at = now;
  }
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  const shadow = style.boxShadow && style.boxShadow !== 'none';
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {
    tag: el.tagName.toLowerCase(), id: el.id, text: (el.innerText || el.value || el.getAttribute('aria-label') || '')
      .trim().slice(0, 60),
    href: el.getAttribute('href'), inNav: !!el.closest('header nav'), inMain: !!el.closest('main'),
    checked: el.type === 'checkbox' ? el.checked : null, ring: outline || shadow,
    onScreen: box.width > 0 && box.height > 0 && box.bottom > 0 && box.right > 0
      && box.top < innerHeight && box.left < innerWidth,
    covered: !!hit && !el.contains(hit) && !hit.contains(el) && !(el.labels && [...el.labels].includes(hit)),
    key: el.tagName + '|' + (el.id || '') + '|' + (el.getAttribute('href') || '') + '|' + (el.name || '')
      + '|' + Array.prototype.indexOf.call(document.querySelectorAll('*'), el),
  };
}"""


@dataclass(frozen=True)
class Site:
    """The module's portal and the rows its pages are about."""

    base_url: str
    track_slug: str
    course_slug: str
    course_id: int
    assignment_id: int
    submission: str
    certificate: str

    def pages(self, role: str) -> list[str]:
        """The main pages of ``role`` ("anonymous", "learner", "instructor", "admin")."""
        if role == "anonymous":
            return ["/", "/tracks", f"/tracks/{self.track_slug}", "/login", "/register", "/verify",
                    f"/verify/{self.certificate}"]
        if role == "learner":  # the certificates are on the dashboard
            return ["/dashboard", "/tracks", f"/courses/{self.course_slug}", f"/assignments/{self.assignment_id}",
                    f"/submissions/{self.submission}", "/inbox", "/profile", "/enrollments"]
        if role == "instructor":
            return ["/teach", f"/teach/courses/{self.course_id}/gradebook", f"/teach/courses/{self.course_id}/at-risk",
                    "/teach/queue", f"/teach/assignments/{self.assignment_id}/publish"]
        return ["/admin/", "/admin/users", "/admin/certificates", "/labs/manage"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The real portal on a free port: the shipped catalogue, an open cohort, a learner in it with a graded attempt
    (a written answer waiting for the instructor) and a course certificate, the instructor, an admin."""
    from academy import create_app
    from academy.bootstrap import run_init
    from academy.catalog.models import Assignment
    from academy.certificates.services import issue
    from academy.completion.models import Completion
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort, request_enrollment
    from academy.extensions import db
    from academy.grading.models import CellScore, Submission, SubmissionStatus
    from academy.grading.services import current_release
    from academy.users.models import Role
    from academy.users.services import create_user

    tmp_path = tmp_path_factory.mktemp("a11y")
    app = create_app({"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/academy.sqlite3",
                      "secret_key": "x" * 40, "courses_dir": ROOT / "courses", "RATELIMIT_ENABLED": False})
    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        assignment = db.session.scalar(db.select(Assignment).where(Assignment.slug == "01-pandas-basics"))
        assert assignment is not None, "courses/ should ship python-data's 01-pandas-basics"
        course = assignment.course
        start = utcnow().replace(microsecond=0)
        cohort = create_cohort(db.session, course.track, name="2026년 1기", starts_at=start,
                               ends_at=start + dt.timedelta(days=60), capacity=30, actor=None)
        users = {}
        for email, password, name in (LEARNER, INSTRUCTOR, ADMIN, KEYBOARD):
            role = {INSTRUCTOR[0]: Role.instructor, ADMIN[0]: Role.admin}.get(email, Role.learner)
            users[email] = create_user(db.session, email, password, role, name=name)
            users[email].consent_at = start
        learner = users[LEARNER[0]]
        request_enrollment(db.session, cohort, learner)
        attempt = Submission(assignment=assignment, user_id=learner.id, release=current_release(db.session, assignment),
                             attempt=1, status=SubmissionStatus.graded, raw_score=2.0, score=2.0, max_score=10.0,
                             submitted_at=start, graded_at=start)
        attempt.cells = [
            CellScore(notebook="production_log", grade_id="test_add_defect_rate", score=2.0, max_score=2.0,
                      visible_passed=True),
            CellScore(notebook="production_log", grade_id="test_summarize_by_line", score=0.0, max_score=3.0,
                      visible_passed=False, error="AssertionError: 결과는 라인 이름순으로 정렬되어 있어야 합니다"),
            CellScore(notebook="production_log", grade_id="priority_answer", score=None, max_score=3.0, manual=True),
        ]
        db.session.add(attempt)
        # A course of the track completed earlier, and its certificate.
        completion = Completion(user=learner, track=course.track, course=course, completed_at=start,
                                score_percent=92.0, evidence={})
        db.session.add(completion)
        db.session.flush()
        certificate = issue(db.session, completion)
        db.session.commit()
        found = Site(base_url="", track_slug=course.track.slug, course_slug=course.slug, course_id=course.id,
                     assignment_id=assignment.id, submission=attempt.public_id, certificate=certificate.code)
        db.session.remove()
    with _served(app) as base:
        yield Site(**{**found.__dict__, "base_url": base})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium, shared by the module's tests."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if not AXE.exists():
        skip_or_fail(f"{AXE} is missing (npm ci)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _tab(browser: Any, *, width: int = 1280, axe: bool = False) -> Any:
    """A fresh Korean-locale browser context's page; with ``axe``, axe-core is loaded into every page it opens (the
    context bypasses the portal's Content-Security-Policy, which allows no script but the portal's own)."""
    context = browser.new_context(locale="ko-KR", timezone_id="Asia/Seoul", viewport={"width": width, "height": 900},
                                  bypass_csp=axe)
    context.set_default_timeout(TIMEOUT_MS)
    if axe:
        context.add_init_script(path=str(AXE))
    return context.new_page()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.fonts.ready.then(() => true)")
    page.screenshot(path=str(ARTIFACTS / f"a11y-{name}.png"))


def _switch_language(page: Any) -> None:
    """The header's language switch (a button posting to /lang/<code>)."""
    with page.expect_navigation():
        page.locator("header form[action^='/lang/'] button").click()


def _violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on ``page``."""
    return [v for v in page.evaluate(AXE_RUN) if v["impact"] in BLOCKING]


def _audit(page: Any, site: Site, role: str) -> list[str]:
    """Every page of ``role`` in both languages; what axe found, one line per violation and page."""
    problems = []
    for language in LANGUAGES:
        if page.locator("html").get_attribute("lang") != language:
            _switch_language(page)
        for path in site.pages(role):
            response = page.goto(site.base_url + path)
            assert response is not None and response.status == 200, f"{path}: {response and response.status}"
            lang = page.locator("html").get_attribute("lang")
            assert lang == language, f"{path} has <html lang={lang!r}>, not {language!r}"
            for v in _violations(page):
                targets = "; ".join(f"{n['target']}" for n in v["nodes"][:8])
                more = f" (+{len(v['nodes']) - 8} more)" if len(v["nodes"]) > 8 else ""
                problems.append(f"[{language}] {path}: {v['id']} ({v['impact']}): {v['help']} -> {targets}{more}")
    return problems


@pytest.mark.parametrize("role", ["anonymous", "learner", "instructor", "admin"])
def test_axe_finds_nothing_serious_on_the_main_pages(browser: Any, site: Site, role: str) -> None:
    """No serious or critical axe-core violation on the role's main pages, in Korean and in English."""
    page = _tab(browser, axe=True)
    try:
        account = {"learner": LEARNER, "instructor": INSTRUCTOR, "admin": ADMIN}.get(role)
        if account is None:
            page.goto(site.base_url + "/")
        else:
            sign_in(page, site.base_url, account[0], account[1])
        problems = _audit(page, site, role)
        assert not problems, f"{len(problems)} serious or critical accessibility violations:\n" + "\n".join(problems)
    finally:
        page.context.close()


def _press(page: Any, key: str) -> dict[str, Any] | None:
    page.keyboard.press(key)
    return page.evaluate(FOCUSED)


def _tab_to(page: Any, want: Any, *, limit: int = 80, key: str = "Tab") -> dict[str, Any]:
    """Press Tab (or ``key``) until the focused element satisfies ``want``, checking on the way that each focused
    element shows its focus."""
    for _ in range(limit):
        now = _press(page, key)
        if now is None:
            continue
        assert now["ring"], f"focus not visible on {now} at {page.url}"
        assert now["onScreen"] and not now["covered"], f"focused element off screen or covered: {now} at {page.url}"
        if want(now):
            return now
    raise AssertionError(f"{limit} presses of {key} on {page.url} never reached the element looked for")


def _walk_the_page(page: Any, *, limit: int = 400) -> list[dict[str, Any]]:
    """Tab from the top of the page until the focus comes back to where it started; every stop shows its focus.

    Coming back proves there is no trap: Tab leaves every widget.
    """
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    stops: list[dict[str, Any]] = []
    for _ in range(limit):
        now = _press(page, "Tab")
        if now is None:  # the browser's own UI between the last element and the first
            continue
        if stops and now["key"] == stops[0]["key"]:
            return stops
        assert now["ring"], f"focus not visible on {now} at {page.url}"
        assert now["onScreen"] and not now["covered"], f"focused element off screen or covered: {now} at {page.url}"
        stops.append(now)
    raise AssertionError(f"a focus trap on {page.url}: {limit} Tabs never came back to {stops[0]}; "
                         f"last stops {[s['text'] or s['tag'] for s in stops[-6:]]}")


def test_the_portal_works_with_the_keyboard_alone(browser: Any, site: Site) -> None:
    """Sign in, skip to the content, go through the navigation, switch the language, open the menu of a narrow
    window and close it with Escape, and enroll in a track: keys only (Tab, Shift+Tab, Enter, Space, Escape).
    The focus always shows, and Tab leaves every page's widgets."""
    from playwright.sync_api import expect

    page = _tab(browser)
    base = site.base_url
    try:
        # --- sign in: the skip link first, then the form ------------------------------------------
        page.goto(f"{base}/login")
        first = _press(page, "Tab")
        assert first and "skip-link" in page.evaluate("() => document.activeElement.className"), first
        assert first["ring"] and first["onScreen"] and not first["covered"], first
        _shot(page, "skip-link")
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "main", "the skip link did not move the focus"
        _tab_to(page, lambda f: f["id"] == "email")
        page.keyboard.type(KEYBOARD[0])
        _tab_to(page, lambda f: f["id"] == "password")
        page.keyboard.type(KEYBOARD[1])
        _shot(page, "login-focus")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert _path(page) == "/dashboard", page.url

        # --- the whole page with Tab, the navigation's links among the stops, and back with Shift+Tab ---------
        stops = _walk_the_page(page)
        nav = [s["href"] for s in stops if s["inNav"] and s["href"]]
        for href in ("/tracks", "/dashboard", "/enrollments", "/inbox", "/profile"):
            assert href in nav, f"Tab never reached the navigation's {href}: {nav}"
        assert any(s["inMain"] for s in stops), "Tab never reached the main content"
        tracks = _tab_to(page, lambda f: f["href"] == "/tracks", key="Shift+Tab")
        assert tracks["inNav"], tracks
        _shot(page, "nav-focus")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert _path(page) == "/tracks"
        expect(page.locator("header a[href='/tracks']")).to_have_attribute("aria-current", "page")

        # --- the language switch: Space on the button, English, then back to Korean with Enter ------------------
        _tab_to(page, lambda f: f["text"] == "English")
        with page.expect_navigation():
            page.keyboard.press("Space")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        switch = _tab_to(page, lambda f: f["text"] == "한국어")
        assert switch["inNav"], switch
        _shot(page, "language-focus")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.locator("html")).to_have_attribute("lang", "ko")

        # --- enroll in the track with Enter: a form sent from the keyboard ---------------------------------
        page.goto(f"{base}/tracks/{site.track_slug}")
        _walk_the_page(page)
        enroll = _tab_to(page, lambda f: f["tag"] == "button" and f["inMain"])
        _shot(page, "enroll-focus")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert _path(page) == "/dashboard", f"enrolling with {enroll} landed on {page.url}"
        expect(page.locator("main .card-track")).to_have_count(1)

        # --- the profile's token form: a field, a checkbox ticked with Space, sent with Enter ------------------
        page.goto(f"{base}/profile")
        _tab_to(page, lambda f: f["id"] == "tok-name")
        page.keyboard.type("사내 인사 시스템")
        scope = _tab_to(page, lambda f: f["id"].startswith("tok-scopes") and f["checked"] is False)
        page.keyboard.press("Space")
        assert page.evaluate("() => document.activeElement.checked"), f"Space did not tick {scope}"
        _tab_to(page, lambda f: f["tag"] == "button" and f["inMain"])
        _shot(page, "profile-focus")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.locator("#new-token")).to_be_visible()
    finally:
        page.context.close()

    # --- a narrow window: the menu button opens the navigation, Escape closes it and the focus returns -------
    page = _tab(browser, width=700)
    try:
        sign_in(page, base, KEYBOARD[0], KEYBOARD[1])
        toggler = page.locator(".navbar-toggler")
        expect(toggler).to_be_visible()
        _tab_to(page, lambda f: "navbar-toggler" in (page.evaluate("() => document.activeElement.className")))
        page.keyboard.press("Enter")
        expect(toggler).to_have_attribute("aria-expanded", "true")
        expect(page.locator("#mainnav")).to_be_visible()
        link = _tab_to(page, lambda f: f["href"] == "/dashboard")
        assert link["inNav"], link
        _shot(page, "menu-open")
        page.keyboard.press("Escape")
        expect(toggler).to_have_attribute("aria-expanded", "false")
        expect(toggler).to_be_focused()
        expect(page.locator("#mainnav")).to_be_hidden()
        page.keyboard.press("Space")
        expect(toggler).to_have_attribute("aria-expanded", "true")
        _walk_the_page(page)
    finally:
        page.context.close()
