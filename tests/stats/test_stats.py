"""Statistics against values counted by hand on a small academy: every filter, grouping, empty sets, a withdrawn
enrollment, a regrade that takes a completion away, the exports, the command, the API and the page."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any

import openpyxl
import pytest
from flask import Flask
from sqlalchemy import func, select

from academy.catalog.models import Assignment, Course, Track
from academy.completion.models import Completion
from academy.enrollment.models import Cohort, Enrollment, EnrollmentEvent, EnrollmentStatus
from academy.errors import AcademyError
from academy.extensions import db
from academy.grading.models import AssignmentRelease, Submission, SubmissionStatus
from academy.labs.models import LabSession, LabState
from academy.stats import export, page, queries
from academy.stats.queries import Filters, parse_filters
from academy.stats.refresh import rebuild
from academy.users.models import Company, User
from tests.conftest import login

NOW = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
ZERO = {"enrolled": 0, "started": 0, "submitted": 0, "passed": 0, "completed_course": 0, "completed_track": 0}


def _funnel(**counts: int) -> dict[str, int]:
    return {**ZERO, **counts}


@pytest.fixture
def small(app: Flask, make_track: Any, make_user: Any) -> dict[str, Any]:
    """Six people in one track of two courses (C1 with one assignment worth 10, C2 with one):

    ======  ===========================  ==========================================================
    L1      (주)구미배터리 · gumi · battery  enrolled 2026-11-02; 2 h GPU lab in C1; 9/10 (passed);
            · quality                     completed C1 and the track
    L2      (주)구미배터리 · gumi · battery  enrolled 2026-11-03; 1 h CPU lab in C1; 3/10 (not passed)
    L3      =HYPERLINK 포항철강 · pohang    enrolled 2026-01-10; nothing else
    L4      포항철강                       waitlisted (not counted)
    L5      no company                    enrolled 2026-11-04 then withdrew; 30 min lab in C1
    L6      no company                    pending approval (not counted)
    ======  ===========================  ==========================================================
    """
    track_id = make_track()
    ids: dict[str, Any] = {"track": track_id}
    user_ids = {key: make_user("learner") for key in ("L1", "L2", "L3", "L4", "L5", "L6")}
    with app.app_context():
        track = db.session.get(Track, track_id)
        c1 = track.courses[0]
        c1.lab_profile = "gpu"
        c2 = Course(slug=f"{track.slug}-c2", track=track, title_ko="과정 2", title_en="Course 2",
                    source_path="/nonexistent", hours=3.0, position=2)
        db.session.add(c2)
        db.session.add(Assignment(course=c2, slug="01-c2", title_ko="C2 과제", title_en="C2 task", max_score=10.0))
        cohort = Cohort(track=track, name="2026 가을", starts_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                        ends_at=dt.datetime(2026, 12, 31, tzinfo=dt.UTC), capacity=10)
        battery = Company(name="(주)구미배터리", business_number="123-45-67891")
        steel = Company(name="=HYPERLINK(\"http://x\") 포항철강", business_number="220-81-62517")
        db.session.add_all([cohort, battery, steel])
        db.session.flush()
        people = {
            "L1": (battery, "gumi", "battery", "quality", EnrollmentStatus.enrolled, dt.datetime(2026, 11, 2)),
            "L2": (battery, "gumi", "battery", "production", EnrollmentStatus.enrolled, dt.datetime(2026, 11, 3)),
            "L3": (steel, "pohang", "steel", "quality", EnrollmentStatus.enrolled, dt.datetime(2026, 1, 10)),
            "L4": (steel, "pohang", "steel", "quality", EnrollmentStatus.waitlisted, dt.datetime(2026, 11, 5)),
            "L5": (None, None, None, None, EnrollmentStatus.withdrawn, dt.datetime(2026, 11, 4)),
            "L6": (None, None, None, None, EnrollmentStatus.pending, dt.datetime(2026, 11, 6)),
        }
        for key, (company, region, industry, job, status, when) in people.items():
            user = db.session.get(User, user_ids[key])
            user.company_id = company.id if company else None
            user.region, user.industry, user.job_role = region, industry, job
            at = when.replace(hour=1, tzinfo=dt.UTC)
            enrollment = Enrollment(cohort_id=cohort.id, track_id=track.id, user_id=user.id, status=status,
                                    requested_at=at, updated_at=at)
            db.session.add(enrollment)
            db.session.flush()
            path = {"withdrawn": ["enrolled", "withdrawn"]}.get(status.value, [status.value])
            previous = None
            for step in path:
                db.session.add(EnrollmentEvent(enrollment_id=enrollment.id, from_status=previous, to_status=step))
                previous = step
            ids[key] = user.id
        a1 = c1.assignments[0]
        release = AssignmentRelease(assignment=a1, version=1, source_hash="0" * 64, path="/nonexistent")
        db.session.add(release)
        db.session.flush()
        for key, score in (("L1", 9.0), ("L2", 3.0)):
            db.session.add(Submission(assignment_id=a1.id, user_id=ids[key], release_id=release.id, attempt=1,
                                      status=SubmissionStatus.graded, score=score, raw_score=score, max_score=10.0,
                                      submitted_at=dt.datetime(2026, 11, 10, tzinfo=dt.UTC)))
        for key, hours, profile, gpus in (("L1", 2.0, "gpu", 1), ("L2", 1.0, "cpu", 0), ("L5", 0.5, "cpu", 0)):
            start = dt.datetime(2026, 11, 9, 1, tzinfo=dt.UTC)
            db.session.add(LabSession(user_id=ids[key], course_id=c1.id, hub_user=f"u{ids[key]}", profile=profile,
                                      gpus=gpus, state=LabState.stopped, queued_at=start, started_at=start,
                                      stopped_at=start + dt.timedelta(hours=hours)))
        done = dt.datetime(2026, 11, 11, tzinfo=dt.UTC)
        db.session.add_all([
            Completion(user_id=ids["L1"], track_id=track.id, course_id=c1.id, completed_at=done, recorded_at=done,
                       lab_hours=2.0, evidence={}),
            Completion(user_id=ids["L1"], track_id=track.id, course_id=None, completed_at=done, recorded_at=done,
                       lab_hours=2.0, evidence={}),
        ])
        db.session.commit()
        rebuild(db.session, now=NOW)
        db.session.commit()
        ids.update(c1=c1.id, c2=c2.id, cohort=cohort.id, battery=battery.id, steel=steel.id, a1=a1.id)
    return ids


def _at(app: Flask, fn: Any) -> Any:
    with app.app_context():
        return fn()


def test_the_funnel_counts_what_was_counted_by_hand(app: Flask, small: dict[str, Any]) -> None:
    ids = small
    with app.app_context():
        # L4 waits and L6 is pending: not enrolled.  L5 withdrew after holding a seat: enrolled, and started.
        assert queries.funnel(db.session, Filters()) == _funnel(enrolled=4, started=3, submitted=2, passed=1,
                                                                completed_course=1, completed_track=1)
        assert queries.funnel(db.session, Filters(company=ids["battery"])) == _funnel(
            enrolled=2, started=2, submitted=2, passed=1, completed_course=1, completed_track=1)
        assert queries.funnel(db.session, Filters(region="pohang")) == _funnel(enrolled=1)
        assert queries.funnel(db.session, Filters(industry="battery", job_role="production")) == _funnel(
            enrolled=1, started=1, submitted=1)
        # Course 2: every enrolled learner has it, nobody did anything in it yet; the track completion still counts.
        assert queries.funnel(db.session, Filters(course=ids["c2"])) == _funnel(enrolled=4, completed_track=1)
        assert queries.funnel(db.session, Filters(cohort=ids["cohort"], track=ids["track"]))["enrolled"] == 4
        # L3 enrolled in January: the period from November leaves them out.
        assert queries.funnel(db.session, Filters(date_from=dt.date(2026, 11, 1)))["enrolled"] == 3
        assert queries.funnel(db.session, Filters(date_to=dt.date(2026, 10, 31))) == _funnel(enrolled=1)
        assert queries.funnel(db.session, Filters(region="ulleung")) == ZERO  # an empty set is zeros

        by_company = {r["key"]: r for r in queries.by(db.session, "company", Filters())}
        assert by_company[ids["battery"]]["funnel"]["passed"] == 1 and by_company[None]["funnel"] == _funnel(
            enrolled=1, started=1)
        assert by_company[ids["battery"]]["label"] == "(주)구미배터리"
        by_region = {r["key"]: r["funnel"]["enrolled"] for r in queries.by(db.session, "region", Filters())}
        assert by_region == {"gumi": 2, "pohang": 1, None: 1}
        by_month = [(r["key"], r["funnel"]["enrolled"]) for r in queries.by(db.session, "month", Filters())]
        assert by_month == [("2026-01", 1), ("2026-11", 3)]
        by_course = {r["key"]: r["funnel"]["submitted"] for r in queries.by(db.session, "course", Filters())}
        assert by_course == {ids["c1"]: 2, ids["c2"]: 0}

        completion = queries.completion(db.session, Filters())
        # 4 learners x 2 courses = 8 learner-courses, one completed; 10 days from the cohort's start (Nov 1)
        # ... L1 enrolled on Nov 2 01:00 UTC, after the start: 8 days 23 hours to Nov 11.
        assert completion["course_enrollments"] == 8 and completion["course_completions"] == 1
        assert completion["rate"] == pytest.approx(0.125)
        assert completion["median_days"] == pytest.approx(9.0, abs=0.05)
        assert queries.hours_by_profile(db.session, Filters()) == {"lab_hours": 3.5, "gpu_hours": 2.0,
                                                                   "gpu_shared_hours": 0.0}
        [c1_hours] = queries.lab_hours(db.session, Filters(), "course")
        assert (c1_hours["key"], c1_hours["lab_hours"], c1_hours["gpu_hours"]) == (ids["c1"], 3.5, 2.0)
        weekly = queries.weekly_active(db.session, Filters(), weeks=3, today=dt.date(2026, 11, 20))
        assert weekly == [{"week": "2026-11-02", "learners": 0}, {"week": "2026-11-09", "learners": 3},
                          {"week": "2026-11-16", "learners": 0}]
        [scores] = queries.score_distribution(db.session, Filters(course=ids["c1"]))
        assert scores["buckets"][3] == 1 and scores["buckets"][9] == 1 and scores["learners"] == 2
        assert queries.score_distribution(db.session, Filters()) == []  # too many assignments to show at once
        assert queries.score_distribution(db.session, Filters(track=ids["track"])) == []
        [battery] = queries.score_distribution(db.session, Filters(course=ids["c1"], industry="battery"))
        assert battery["learners"] == 2
        [steel] = queries.score_distribution(db.session, Filters(course=ids["c1"], region="pohang"))
        assert steel["learners"] == 0  # L3 submitted nothing


@pytest.mark.parametrize("dimension", queries.DIMENSIONS)
def test_the_page_gives_each_query_s_own_figures_with_fewer_scans(app: Flask, small: dict[str, Any],
                                                                 dimension: str) -> None:
    """The page adds its funnel up from the groups (an attribute of the learner) and its totals from the course
    sums: the same figures as each query asked on its own, under every filter."""
    ids = small
    cases = [Filters(), Filters(company=ids["battery"]), Filters(region="gumi"), Filters(region="ulleung"),
             Filters(industry="battery", job_role="production"), Filters(course=ids["c1"]),
             Filters(track=ids["track"], cohort=ids["cohort"]), Filters(date_from=dt.date(2026, 11, 1))]
    with app.test_request_context():
        for filters in cases:
            board = page.build(db.session, filters, dimension)
            assert board.funnel == queries.funnel(db.session, filters), filters
            assert board.rows == queries.by(db.session, dimension, filters, limit=30), filters
            assert board.completion == queries.completion(db.session, filters), filters
            assert board.hours_profile == queries.hours_by_profile(db.session, filters), filters
            assert board.hours_course == queries.lab_hours(db.session, filters, "course"), filters
            assert board.hours_company == queries.lab_hours(db.session, filters, "company"), filters


def test_a_regrade_that_takes_the_completion_away_changes_the_figures(app: Flask, small: dict[str, Any]) -> None:
    ids = small
    with app.app_context():
        submission = db.session.scalar(select(Submission).where(Submission.user_id == ids["L1"]))
        submission.score = submission.raw_score = 4.0
        for row in db.session.scalars(select(Completion).where(Completion.user_id == ids["L1"])):
            row.withdrawn_at, row.withdrawn_reason = NOW, "score_changed"
        db.session.commit()
        assert queries.funnel(db.session, Filters())["passed"] == 1  # not rebuilt yet: the figures of the last count
        rebuild(db.session, now=NOW)
        db.session.commit()
        assert queries.funnel(db.session, Filters()) == _funnel(enrolled=4, started=3, submitted=2)


@pytest.mark.parametrize(("params", "words"), [
    ({"track": "abc"}, "해당 트랙이 없습니다"),
    ({"track": "999999"}, "해당 트랙이 없습니다"),
    ({"course": "-1"}, "해당 과정이 없습니다"),
    ({"cohort": "1e9"}, "해당 기수가 없습니다"),
    ({"company": "999-99-99999"}, "해당 기업이 없습니다"),
    ({"region": "seoul"}, "목록에 있는 값 중에서"),
    ({"industry": "<script>"}, "목록에 있는 값 중에서"),
    ({"from": "2026-13-01"}, "YYYY-MM-DD"),
    ({"from": "1900-01-01"}, "사이의 날짜를 선택해"),
    ({"to": "9999-12-31"}, "사이의 날짜를 선택해"),
    ({"from": "2026-12-01", "to": "2026-11-01"}, "종료일보다 늦습니다"),
])
def test_bad_filters_are_refused_with_a_reason(app: Flask, small: dict[str, Any], params: dict[str, str],
                                                words: str) -> None:
    with app.test_request_context(), pytest.raises(AcademyError, match=words):  # in Korean, the default
        parse_filters(db.session, params)


def test_a_company_is_named_by_its_business_number(app: Flask, small: dict[str, Any]) -> None:
    with app.app_context():
        assert parse_filters(db.session, {"company": "220-81-62517"}).company == small["steel"]
        assert parse_filters(db.session, {"company": "2208162517"}).company == small["steel"]
        assert parse_filters(db.session, {"region": "", "from": " "}) == Filters()


def test_exports_keep_korean_and_neutralise_formulas(app: Flask, small: dict[str, Any]) -> None:
    from academy.stats import page

    with app.test_request_context():
        board = page.build(db.session, Filters(), "company")
        table = board.table("by")
        csv_bytes = export.to_csv(table)
        assert csv_bytes.startswith("\ufeff".encode())
        text = csv_bytes.decode("utf-8-sig")
        assert "(주)구미배터리" in text and "'=HYPERLINK" in text and "\n=HYPERLINK" not in text
        book = openpyxl.load_workbook(io.BytesIO(export.to_xlsx(table)))
        cells = [c for row in book.active.iter_rows() for c in row]
        hyperlink = next(c for c in cells if "HYPERLINK" in str(c.value))
        assert hyperlink.data_type == "s" and str(hyperlink.value).startswith("'=")
        assert any(c.value == 2 for c in cells)  # numbers stay numbers
        empty = page.build(db.session, Filters(region="ulleung"), "company").table("by")
        assert export.to_csv(empty).decode("utf-8-sig").count("\r\n") == 1  # the header only
        assert openpyxl.load_workbook(io.BytesIO(export.to_xlsx(empty))).active.max_row == 1


def test_the_command_and_the_api_answer_the_same_json(app: Flask, small: dict[str, Any], make_user: Any,
                                                     client: Any) -> None:
    from academy.stats.cli import stats_command
    from tests.api.test_api import assert_documented, make_token

    runner = app.test_cli_runner()
    result = runner.invoke(stats_command, ["--json", "--region", "gumi"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["funnel"] == _funnel(enrolled=2, started=2, submitted=2, passed=1, completed_course=1,
                                        completed_track=1)
    grouped = json.loads(runner.invoke(stats_command, ["--json", "--by", "region"]).output)
    assert {r["key"]: r["funnel"]["enrolled"] for r in grouped["rows"]} == {"gumi": 2, "pohang": 1, None: 1}
    bad = runner.invoke(stats_command, ["--json", "--from", "2026-12-01", "--to", "2026-01-01"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert runner.invoke(stats_command, ["--by", "planet"]).exit_code == 2

    admin = make_user("admin")
    token = make_token(app, admin, ["stats:read"])
    headers = {"Authorization": f"Bearer {token}"}
    doc = client.get("/api/v1/openapi.json").get_json()
    answer = client.get("/api/v1/stats/funnel?region=gumi", headers=headers)
    assert answer.status_code == 200 and answer.get_json()["funnel"] == printed["funnel"]
    assert_documented(doc, "/api/v1/stats/funnel", "get", answer)
    by_response = client.get("/api/v1/stats/by/region", headers=headers)
    by = assert_documented(doc, "/api/v1/stats/by/{dimension}", "get", by_response)
    assert [(r["key"], r["funnel"]) for r in by["rows"]] == [(r["key"], r["funnel"]) for r in grouped["rows"]]
    refused = client.get("/api/v1/stats/funnel?from=2026-99-01", headers=headers)
    assert refused.status_code == 400
    assert_documented(doc, "/api/v1/stats/funnel", "get", refused)
    planet = client.get("/api/v1/stats/by/planet", headers=headers)
    assert planet.status_code == 400
    assert_documented(doc, "/api/v1/stats/by/{dimension}", "get", planet)

    learner = make_user("learner")
    with pytest.raises(Exception, match="관리자만"):
        make_token(app, learner, ["stats:read"])
    with app.app_context():  # a token made while its owner was an admin stops working when they no longer are
        db.session.get(User, admin).role = db.session.get(User, learner).role
        db.session.commit()
    forbidden = client.get("/api/v1/stats/funnel", headers=headers)
    assert forbidden.status_code == 403
    assert_documented(doc, "/api/v1/stats/funnel", "get", forbidden)


def test_the_admin_lands_on_the_statistics(app: Flask, small: dict[str, Any], make_user: Any, client: Any) -> None:
    admin = make_user("admin")
    email = _at(app, lambda: db.session.get(User, admin).email)
    response = login(client, email)
    assert response.headers["Location"].endswith("/admin/")
    page = client.get("/admin/")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-figure="enrolled">4<' in body and "chart-funnel" in body
    # The counters: six learners and the admin, L6's request awaiting approval, one cohort, and the unsent mail.
    from academy.mail.models import OutboxMessage

    unsent = _at(app, lambda: db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                                .where(OutboxMessage.sent_at.is_(None))))
    counters = dict(re.findall(r'href="/admin/([a-z]+)">[^<]+</a>: <strong>([0-9]+)</strong>', body))
    assert counters == {"users": "7", "approvals": "1", "cohorts": "1", "outbox": str(unsent)}, counters
    assert "stats-data" in body and "(주)구미배터리" in body
    filtered = client.get(f"/admin/?company={small['battery']}&by=job_role").get_data(as_text=True)
    assert 'data-figure="enrolled">2<' in filtered
    bad = client.get("/admin/?from=2026-12-01&to=2026-01-01")
    assert bad.status_code == 400 and "data-stats-error" in bad.get_data(as_text=True)
    tampered = client.get("/admin/?by=salary")  # the choices in words, not the codes behind them
    text = tampered.get_data(as_text=True)
    assert tampered.status_code == 400 and "지역" in text and "job_role" not in text.split("data-stats-error")[1][:400]
    by_company = client.get("/admin/?by=company").get_data(as_text=True)
    assert "회사 정보 없음" in by_company and "(none)" not in by_company  # L3 has no company
    csv = client.get("/admin/stats/export/funnel.csv?region=gumi")
    assert csv.status_code == 200 and csv.data.startswith("\ufeff".encode())
    xlsx = client.get("/admin/stats/export/by.xlsx?by=company")
    assert xlsx.status_code == 200 and openpyxl.load_workbook(io.BytesIO(xlsx.data)).active.max_row == 4
    assert client.get("/admin/stats/export/secrets.csv").status_code == 404
    assert client.get("/admin/stats/export/funnel.csv?region=mars").status_code == 400


def test_the_filters_offer_what_the_figures_were_counted_from(app: Flask, small: dict[str, Any], make_user: Any,
                                                              client: Any) -> None:
    """The filters' options are rendered once per rebuild and language: the chosen one marked, names escaped, a
    company added since the last rebuild (no figures yet) offered from the next one."""
    admin = make_user("admin")
    login(client, _at(app, lambda: db.session.get(User, admin).email))
    chosen = client.get(f"/admin/?company={small['battery']}").get_data(as_text=True)
    assert f'<option value="{small["battery"]}" selected>(주)구미배터리</option>' in chosen
    assert f'<option value="{small["steel"]}">=HYPERLINK(&#34;http://x&#34;) 포항철강</option>' in chosen
    assert chosen.split('id="f-company"')[1].split("</select>")[0].count(" selected") == 1
    assert " selected" not in chosen.split('id="f-region"')[1].split("</select>")[0]
    assert f'<option value="{small["battery"]}">(주)구미배터리</option>' in client.get("/admin/").get_data(as_text=True)

    def add_company() -> None:
        db.session.add(Company(name="새마을정밀", business_number="617-81-00030"))
        db.session.commit()

    _at(app, add_company)
    assert "새마을정밀" not in client.get("/admin/").get_data(as_text=True)
    with app.app_context():
        rebuild(db.session, now=NOW + dt.timedelta(minutes=10))
        db.session.commit()
    assert "새마을정밀" in client.get("/admin/").get_data(as_text=True)

    def speak_english() -> None:
        db.session.get(User, admin).locale = "en"
        db.session.commit()

    _at(app, speak_english)
    english = client.get(f"/admin/?track={small['track']}").get_data(as_text=True)
    track_en = _at(app, lambda: db.session.get(Track, small["track"]).title_en)
    assert f'<option value="{small["track"]}" selected>{track_en}</option>' in english


def test_figures_are_kept_per_view_until_the_next_rebuild(app: Flask, small: dict[str, Any]) -> None:
    from academy.stats import page
    from academy.stats.models import CachedFigures

    ids = small
    with app.test_request_context():
        fresh = page.build(db.session, Filters(company=ids["battery"]), "region")
        first = page.cached(db.session, Filters(company=ids["battery"]), "region")
        db.session.commit()
        kept = page.cached(db.session, Filters(company=ids["battery"]), "region")
        assert (first.funnel, first.rows) == (fresh.funnel, fresh.rows) == (kept.funnel, kept.rows)
        assert db.session.scalar(select(func.count()).select_from(CachedFigures)) == 1
        # A change in the source tables shows after the next rebuild, which forgets every kept view.
        db.session.get(User, ids["L2"]).company_id = ids["steel"]
        db.session.commit()
        assert page.cached(db.session, Filters(company=ids["battery"]), "region").funnel["enrolled"] == 2
        rebuild(db.session, now=NOW + dt.timedelta(minutes=10))
        page.warm(db.session, locales=("ko",))
        db.session.commit()
        assert page.cached(db.session, Filters(company=ids["battery"]), "region").funnel["enrolled"] == 1
        assert page.cached(db.session, Filters(), "region").funnel["enrolled"] == 4  # the warmed default view


def test_each_rebuild_keeps_the_single_value_views_as_they_would_be_computed(app: Flask, small: dict[str, Any],
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The rebuild computes the landing view and each track's, course's, region's, industry's and job role's
    alone, in both languages: the same figures as computed on a request, replaced by the next rebuild."""
    from flask_babel import force_locale

    from academy.stats.models import CachedFigures

    ids = small

    def kept(filters: Filters, locale: str) -> Any:
        row = db.session.get(CachedFigures, page._key(filters, page.DEFAULT_DIMENSION, locale))
        return None if row is None else row.body

    def fresh(filters: Filters, locale: str) -> Any:
        with force_locale(locale):
            board = page.build(db.session, filters, page.DEFAULT_DIMENSION, locale=locale)
        return json.loads(json.dumps({name: getattr(board, name) for name in page.FIGURES}))

    with app.test_request_context():
        rebuild(db.session, now=NOW + dt.timedelta(minutes=10))
        computed = page.warm(db.session)
        db.session.commit()
        views = page.precomputed_views(db.session)
        assert {Filters(track=ids["track"]), Filters(course=ids["c1"]), Filters(course=ids["c2"]),
                Filters(region="gumi"), Filters(region="pohang"), Filters(industry="battery"),
                Filters(industry="steel"), Filters(job_role="quality"), Filters(job_role="production")} == set(views)
        assert computed == len(views) + 1
        assert db.session.scalar(select(func.count()).select_from(CachedFigures)) == 2 * computed
        for filters in [Filters(), *views]:
            for locale in ("ko", "en"):
                assert kept(filters, locale) == fresh(filters, locale), (filters, locale)
        assert kept(Filters(course=ids["c1"]), "en")["hours_course"][0]["label"] == "Course"
        gumi = kept(Filters(region="gumi"), "ko")
        assert gumi["funnel"]["enrolled"] == 2

        # The page answers a kept view without counting.
        def no_counting(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("counted a view kept by the rebuild")

        monkeypatch.setattr(page, "build", no_counting)
        assert page.cached(db.session, Filters(region="gumi")).funnel == gumi["funnel"]
        monkeypatch.undo()

        # The next rebuild replaces them: L2 moved to Pohang.
        db.session.get(User, ids["L2"]).region = "pohang"
        db.session.commit()
        rebuild(db.session, now=NOW + dt.timedelta(minutes=20))
        page.warm(db.session)
        db.session.commit()
        assert kept(Filters(region="gumi"), "ko")["funnel"]["enrolled"] == 1
        assert kept(Filters(region="pohang"), "en") == fresh(Filters(region="pohang"), "en")
        assert kept(Filters(region="pohang"), "en")["funnel"]["enrolled"] == 2
