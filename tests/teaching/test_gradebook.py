"""Course staff's home, the course gradebook (rosters, filters, sorting), its exports and who may see them."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.extensions import db
from tests.conftest import PASSWORD, login

TEACHER = "teacher@example.kr"
OTHER_TEACHER = "other-teacher@example.kr"


@pytest.fixture
def academy(app: Flask, make_track: Any, make_cohort: Any, make_user: Any) -> dict[str, Any]:
    """A course of two assignments (best / last attempt counts) with two cohorts and four learners.

    Attempts (score of 10): 김민수 3, 8 on the first (best: 8, passed), nothing on the second;
    =HYPERLINK 5 late by 2 days on the first, and on the second a written answer waiting;
    박서연 flagged 10 on the first (waiting for staff to decide), 4 then 9 on the second ("last" counts: 9);
    이도윤 in the second cohort, nothing at all.
    """
    from academy.catalog.models import Assignment, Course, Track
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.grading.models import AssignmentRelease, CellScore, Submission, SubmissionStatus
    from academy.users.models import User

    track_id = make_track(instructors=(TEACHER,))
    other_track = make_track(instructors=(OTHER_TEACHER,))
    first_cohort, second_cohort = make_cohort(capacity=5, track_id=track_id), make_cohort(capacity=5, track_id=track_id)
    make_user("instructor", email=TEACHER)
    make_user("instructor", email=OTHER_TEACHER)
    people = {
        "minsu": make_user(name="김민수", email="minsu@example.kr"),
        "formula": make_user(name="=HYPERLINK(\"http://x\")", email="formula@example.kr"),
        "seoyeon": make_user(name="박서연", email="seoyeon@example.kr"),
        "doyun": make_user(name="이도윤", email="doyun@example.kr"),
    }
    with app.app_context():
        course = db.session.scalar(db.select(Course).where(Course.track_id == track_id))
        first = course.assignments[0]
        second = Assignment(course=course, slug="02-second", title_ko="두 번째 과제", title_en="Second task",
                            position=1, due_days=14, max_score=10.0, notebooks=["second.ipynb"],
                            grading={"score_policy": "last"})
        db.session.add(second)
        db.session.flush()
        releases = {}
        for a in (first, second):
            releases[a.id] = AssignmentRelease(assignment=a, version=1, source_hash=f"h{a.id}", path="/nonexistent")
            db.session.add(releases[a.id])
        db.session.flush()
        for key, cohort_id in (("minsu", first_cohort), ("formula", first_cohort), ("seoyeon", first_cohort),
                               ("doyun", second_cohort)):
            request_enrollment(db.session, db.session.get(Cohort, cohort_id), db.session.get(User, people[key]))
        now = dt.datetime.now(dt.UTC)

        def attempt(key: str, assignment: Assignment, n: int, score: float, *, late: int = 0,
                    flagged: bool = False, waiting: bool = False) -> None:
            submission = Submission(assignment=assignment, user_id=people[key], release=releases[assignment.id],
                                    attempt=n, status=SubmissionStatus.graded, raw_score=score, score=score,
                                    max_score=10.0, late_days=late, flagged=flagged,
                                    flag_reasons=["float subclass"] if flagged else [],
                                    submitted_at=now - dt.timedelta(hours=10 - n), graded_at=now)
            submission.cells = [CellScore(notebook="intro", grade_id="q1", score=score,
                                          max_score=8.0 if waiting else 10.0)]
            if waiting:
                submission.cells.append(CellScore(notebook="intro", grade_id="essay", score=None, max_score=2.0,
                                                  manual=True))
            db.session.add(submission)

        attempt("minsu", first, 1, 3.0)
        attempt("minsu", first, 2, 8.0)
        attempt("formula", first, 1, 5.0, late=2)
        attempt("formula", second, 1, 6.0, waiting=True)
        attempt("seoyeon", first, 1, 10.0, flagged=True)
        attempt("seoyeon", second, 1, 4.0)
        attempt("seoyeon", second, 2, 9.0)
        db.session.commit()
        other_course = db.session.scalar(db.select(Course.id).where(Course.track_id == other_track))
        assert db.session.get(Track, track_id) is not None
        return {"course_id": course.id, "other_course_id": other_course, "first": first.id, "second": second.id,
                "cohorts": (first_cohort, second_cohort), "people": people, "track_id": track_id}


def _around(page: str, *codes: str) -> list[str]:
    """Each place ``page`` shows one of ``codes``, with the 150 characters before and after it (what an assertion
    message should show: the whole page hides where)."""
    import re

    return [page[max(0, m.start() - 150):m.end() + 150] for m in re.finditer("|".join(map(re.escape, codes)), page)]


def _teacher(app: Flask, email: str = TEACHER) -> FlaskClient:
    client = app.test_client()
    response = login(client, email, PASSWORD)
    assert response.status_code == 302
    return client


def test_an_instructor_lands_on_their_teaching_home(app: Flask, academy: dict[str, Any]) -> None:
    client = app.test_client()
    response = login(client, TEACHER, PASSWORD)
    assert response.headers["Location"].endswith("/teach")
    page = client.get("/teach").get_data(as_text=True)
    assert f'href="/teach/courses/{academy["course_id"]}/gradebook"' in page
    for cohort_id in academy["cohorts"]:
        assert f'/teach/courses/{academy["course_id"]}/gradebook?cohort={cohort_id}' in page
    assert f'/teach/courses/{academy["other_course_id"]}/' not in page  # not their course
    assert 'data-count="to-grade">1<' in page  # =HYPERLINK's written answer
    assert 'data-count="flagged">1<' in page  # 박서연's attempt
    assert "박서연" in page and "김민수" not in page  # listed for the flag; nothing of 김민수 waits


def test_the_gradebook_agrees_with_each_learner_s_own_standing(app: Flask, academy: dict[str, Any]) -> None:
    from academy.catalog.models import Assignment, Course
    from academy.grading.standing import learner_standing
    from academy.teaching.services import build_gradebook
    from academy.users.models import User

    with app.app_context():
        course = db.session.get(Course, academy["course_id"])
        book = build_gradebook(db.session, course)
        assert book.total == 4 and [r.user.name for r in book.rows][0] == "=HYPERLINK(\"http://x\")"
        rows = {r.user.email.split("@")[0]: r for r in book.rows}
        first, second = academy["first"], academy["second"]
        assert rows["minsu"].cells[first].score == 8.0  # best of 3 and 8
        assert rows["minsu"].cells[first].attempts == 2
        assert rows["minsu"].cells[second].status == "not_started"
        assert rows["seoyeon"].cells[second].score == 9.0  # the last attempt counts
        assert rows["seoyeon"].cells[first].flagged
        # Flagged and not reviewed yet: it waits for staff and counts for nothing.
        assert rows["seoyeon"].cells[first].status == "waiting_for_instructor"
        assert rows["formula"].cells[first].late_days == 2
        assert rows["formula"].cells[second].status == "waiting_for_instructor"
        assert rows["seoyeon"].passed == 1 and rows["minsu"].passed == 1 and rows["doyun"].passed == 0
        assert rows["doyun"].missing == [first, second] and rows["doyun"].last_activity is None
        for key, row in rows.items():
            user = db.session.get(User, academy["people"][key])
            for assignment_id, cell in row.cells.items():
                own = learner_standing(db.session, db.session.get(Assignment, assignment_id), user, staff=True)
                assert (cell.status, cell.score, cell.max_score, cell.due_at, cell.overdue) == \
                    (own.status, own.score, own.max_score, own.due_at, own.overdue), (key, assignment_id)


def test_filters_sorting_and_the_cohort_roster(app: Flask, academy: dict[str, Any]) -> None:
    from academy.catalog.models import Course
    from academy.teaching.services import build_gradebook

    with app.app_context():
        course = db.session.get(Course, academy["course_id"])

        def names(**kw: Any) -> list[str]:
            return [r.user.email.split("@")[0] for r in build_gradebook(db.session, course, **kw).rows]

        assert names(show="missing") == ["minsu", "doyun"]  # by name: 김민수, 이도윤
        assert names(show="waiting") == ["formula", "seoyeon"]  # a written answer; a flag to decide
        assert names(show="flagged") == ["seoyeon"]
        assert names(search="SEOYEON") == ["seoyeon"] and names(search="김민") == ["minsu"]
        assert names(sort=f"a{academy['first']}", descending=True) == ["seoyeon", "minsu", "formula", "doyun"]
        assert names(sort="progress", descending=True)[0] == "seoyeon"
        roster = build_gradebook(db.session, course, cohort_id=academy["cohorts"][1])
        assert [r.user.name for r in roster.rows] == ["이도윤"] and roster.cohort.id == academy["cohorts"][1]
        assert roster.counts["missing"] == 1


def test_the_gradebook_page_and_its_cohort_roster(app: Flask, academy: dict[str, Any]) -> None:
    client = _teacher(app)
    course_id = academy["course_id"]
    page = client.get(f"/teach/courses/{course_id}/gradebook").get_data(as_text=True)
    assert page.count("data-learner=") == 4
    assert "김민수" in page and "=HYPERLINK(&#34;http://x&#34;)" in page
    assert 'data-status="waiting_for_instructor"' in page
    leaks = _around(page, "grade_id", "q1", "waiting_for_instructor<")
    assert not leaks, leaks
    roster = client.get(f"/teach/courses/{course_id}/gradebook?cohort={academy['cohorts'][0]}&show=missing")
    text = roster.get_data(as_text=True)
    assert text.count("data-learner=") == 1 and 'data-learner="minsu@example.kr"' in text
    learner = client.get(f"/teach/courses/{course_id}/learners/{academy['people']['seoyeon']}").get_data(as_text=True)
    assert learner.count("/submissions/") == 3 and "float subclass" in learner


def test_exports_keep_korean_and_never_make_a_formula(app: Flask, academy: dict[str, Any], make_cohort: Any) -> None:
    from openpyxl import load_workbook

    client = _teacher(app)
    course_id = academy["course_id"]
    response = client.get(f"/teach/courses/{course_id}/gradebook.csv?sort=name")
    assert response.status_code == 200 and response.data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert len(rows) == 5
    by_email = {r[1]: r for r in rows[1:]}
    assert by_email["formula@example.kr"][0] == "'=HYPERLINK(\"http://x\")"
    assert by_email["minsu@example.kr"][0] == "김민수"
    minsu = by_email["minsu@example.kr"]
    assert (minsu[4], minsu[6], minsu[7]) == ("8.0", "2", "0")  # score, attempts, days late of the first task
    response = client.get(f"/teach/courses/{course_id}/gradebook.xlsx")
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert {v[0] for v in values[1:]} >= {"김민수", "'=HYPERLINK(\"http://x\")"}
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    # A cohort nobody joined exports its header and nothing else, in both formats.
    nobody = make_cohort(capacity=5, track_id=academy["track_id"])
    empty = client.get(f"/teach/courses/{course_id}/gradebook.csv?cohort={nobody}")
    assert empty.status_code == 200
    assert [r[:2] for r in csv.reader(io.StringIO(empty.data.decode("utf-8-sig")))] == [rows[0][:2]]
    empty = client.get(f"/teach/courses/{course_id}/gradebook.xlsx?cohort={nobody}")
    assert empty.status_code == 200
    assert len(list(load_workbook(io.BytesIO(empty.data)).active.iter_rows())) == 1


def test_staff_see_only_the_courses_they_teach(app: Flask, academy: dict[str, Any], make_user: Any) -> None:
    other = _teacher(app, OTHER_TEACHER)
    course_id = academy["course_id"]
    for path in (f"/teach/courses/{course_id}/gradebook", f"/teach/courses/{course_id}/gradebook.csv",
                 f"/teach/courses/{course_id}/learners/{academy['people']['minsu']}"):
        assert other.get(path).status_code == 404, path
    learner = app.test_client()
    assert login(learner, "minsu@example.kr", PASSWORD).headers["Location"].endswith("/dashboard")
    assert learner.get("/teach").status_code == 403
    assert learner.get(f"/teach/courses/{course_id}/gradebook").status_code == 403
    admin_email = "boss@example.kr"
    make_user("admin", email=admin_email)
    admin = _teacher(app, admin_email)
    assert admin.get(f"/teach/courses/{course_id}/gradebook").status_code == 200


def test_course_and_assignment_pages_lead_staff_to_their_tools(app: Flask, academy: dict[str, Any]) -> None:
    from academy.catalog.models import Course

    with app.app_context():
        slug = db.session.get(Course, academy["course_id"]).slug
    teacher = _teacher(app)
    course_page = teacher.get(f"/courses/{slug}").get_data(as_text=True)
    assert f'href="/assignments/{academy["first"]}"' in course_page
    assert f'href="/teach/courses/{academy["course_id"]}/gradebook"' in course_page
    assignment = teacher.get(f"/assignments/{academy['first']}").get_data(as_text=True)
    assert "data-staff-links" in assignment and "data-learner-version" in assignment
    assert 'id="notebooks"' not in assignment  # no learner upload form for staff
    anonymous = app.test_client().get(f"/courses/{slug}").get_data(as_text=True)
    assert f'href="/assignments/{academy["first"]}"' not in anonymous
    learner = app.test_client()
    login(learner, "minsu@example.kr", PASSWORD)
    assert f'href="/assignments/{academy["first"]}"' in learner.get(f"/courses/{slug}").get_data(as_text=True)


def test_the_question_statistics_page_and_its_export(app: Flask, academy: dict[str, Any]) -> None:
    client = _teacher(app)
    first = academy["first"]
    page = client.get(f"/teach/assignments/{first}/questions").get_data(as_text=True)
    # Counted attempts on the first task: 8 (김민수's best), 5, 10 of 10 points: a mean of 7.67.
    assert 'data-learners="3"' in page and '<span data-mean>7.67</span>' in page
    assert 'data-failed="1"' in page and "grade_id" not in page and ">q1<" not in page
    cohort = client.get(f"/teach/assignments/{first}/questions?cohort={academy['cohorts'][1]}").get_data(as_text=True)
    assert 'data-learners="0"' in cohort
    rows = list(csv.reader(io.StringIO(
        client.get(f"/teach/assignments/{first}/questions.csv").data.decode("utf-8-sig"))))
    assert len(rows) == 2 and rows[1][5] == "3"  # one question, three learners
    assert _teacher(app, OTHER_TEACHER).get(f"/teach/assignments/{first}/questions").status_code == 404


def test_pages_cover_every_learner_and_keep_the_filter(app: Flask, academy: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.catalog.models import Course
    from academy.teaching.services import build_gradebook

    with app.app_context():
        course = db.session.get(Course, academy["course_id"])
        whole = [r.user.email for r in build_gradebook(db.session, course, per_page=None).rows]
        pages = [build_gradebook(db.session, course, page=n, per_page=3) for n in (1, 2, 3)]
        assert [p.pages for p in pages] == [2, 2, 2] and pages[2].page == 2  # past the end: the last page
        assert [r.user.email for p in pages[:2] for r in p.rows] == whole
        assert all(p.total == 4 and p.shown == 4 and p.counts == pages[0].counts for p in pages)
        waiting = build_gradebook(db.session, course, show="waiting", page=1, per_page=1)
        assert (waiting.shown, waiting.pages, waiting.counts["waiting"]) == (2, 2, 2)
    client = _teacher(app)
    monkeypatch.setattr("academy.teaching.services.PER_PAGE", 1)
    page = client.get(f"/teach/courses/{academy['course_id']}/gradebook?show=waiting&sort=progress&page=2")
    text = page.get_data(as_text=True)
    assert text.count("data-learner=") == 1 and 'data-pages="2"' in text
    assert "show=waiting" in text and "sort=progress" in text and "page=1" in text  # the page links keep the filter
    export = client.get(f"/teach/courses/{academy['course_id']}/gradebook.csv?show=waiting&page=2")
    assert len(list(csv.reader(io.StringIO(export.data.decode("utf-8-sig"))))) == 3  # the whole filter, not a page
