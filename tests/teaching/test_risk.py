"""Learners at risk of not finishing a course: idle, stuck on a test, behind their cohort."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from academy.extensions import db
from tests.teaching.builders import DAY, add_assignments, add_attempt, add_lab, get_cohort, get_course, pass_all, seat


def _risk(course_id: int, **kwargs: Any) -> dict[str, Any]:
    """``at_risk`` by the learners' keys (their names), in its order."""
    from academy.teaching.risk import at_risk

    return {row.user.name: row for row in at_risk(db.session, get_course(course_id), **kwargs)}


def _codes(row: Any) -> list[str]:
    return [reason.code for reason in row.reasons]


def test_idle_counts_from_the_latest_of_activity_cohort_start_and_seat(
        app: Flask, course_of: Any, make_cohort: Any, learner: Any) -> None:
    track_id, course_id = course_of()
    cohort_id = make_cohort(capacity=10, track_id=track_id)
    keys = ("early", "recent", "lab", "lapsed", "busy")
    ids = {key: learner(key) for key in keys}
    with app.app_context():
        (assignment,) = add_assignments(course_id, 1)
        start = get_cohort(cohort_id).starts_at
        now = start + 20 * DAY
        seat(cohort_id, ids["early"], requested_at=start - 5 * DAY)  # enrolled before the start, never came
        seat(cohort_id, ids["recent"], requested_at=now - 3 * DAY)  # joined three days ago
        seat(cohort_id, ids["lab"], requested_at=start)
        add_lab(ids["lab"], course_id, at=now - 2 * DAY)
        seat(cohort_id, ids["lapsed"], requested_at=start)
        add_attempt(ids["lapsed"], assignment, 1, {"q1": 0.0, "q2": 5.0}, at=now - 10 * DAY)
        seat(cohort_id, ids["busy"], requested_at=start)
        add_attempt(ids["busy"], assignment, 1, {"q1": 0.0, "q2": 5.0}, at=now - 6 * DAY)
        db.session.commit()

        risk = _risk(course_id, now=now)
        assert list(risk) == ["early", "lapsed"]  # one reason each, then by name
        assert risk["early"].reasons[0].code == "idle"
        assert dict(risk["early"].reasons[0].detail) == {"days": 20, "ever_active": False}
        assert risk["early"].last_activity is None
        assert _codes(risk["lapsed"]) == ["idle"]
        assert dict(risk["lapsed"].reasons[0].detail) == {"days": 10, "ever_active": True}
        assert risk["lapsed"].last_activity == now - 10 * DAY
        assert risk["early"].cohort.id == cohort_id

        # The threshold is the caller's: after 21 days nobody here is idle, after 3 the recent one is.
        assert _risk(course_id, now=now, idle_days=21) == {}
        assert set(_risk(course_id, now=now, idle_days=3)) == {"early", "recent", "lapsed", "busy"}


def _question_release(tmp_path: Path) -> str:
    """A release folder whose "intro" notebook names q1 and q2 under headings."""
    folder = tmp_path / "release-1"
    notebook = folder / "release" / "01-intro" / "intro.ipynb"
    notebook.parent.mkdir(parents=True)

    def graded(grade_id: str) -> dict[str, Any]:
        return {"cell_type": "code", "source": "assert True", "outputs": [], "execution_count": None,
                "metadata": {"nbgrader": {"grade": True, "grade_id": grade_id, "points": 5}}}

    def heading(text: str) -> dict[str, Any]:
        return {"cell_type": "markdown", "source": f"## {text}", "metadata": {}}

    cells = [heading("문제 1. 합계 구하기"), graded("q1"), heading("문제 2. 평균 구하기"), graded("q2")]
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
                        encoding="utf-8")
    return str(folder)


def test_stuck_on_one_test_cell_until_it_passes(
        app: Flask, course_of: Any, make_cohort: Any, learner: Any, tmp_path: Path) -> None:
    track_id, course_id = course_of()
    cohort_id = make_cohort(capacity=10, track_id=track_id)
    keys = ("stuck", "unstuck", "twice", "spread", "written", "errored", "across")
    ids = {key: learner(key) for key in keys}
    with app.app_context():
        first, second = add_assignments(course_id, 2, release_path=_question_release(tmp_path))
        now = get_cohort(cohort_id).starts_at + 10 * DAY
        at = now - DAY
        for key in keys:
            seat(cohort_id, ids[key])
        for n in (1, 2, 3):  # q1 fails three times, q2 passes
            add_attempt(ids["stuck"], first, n, {"q1": 0.0, "q2": 5.0}, at=at)
        for n in (1, 2, 3):
            add_attempt(ids["unstuck"], first, n, {"q1": 0.0, "q2": 5.0}, at=at)
        add_attempt(ids["unstuck"], first, 4, {"q1": 5.0, "q2": 5.0}, at=at)  # passed it at last
        for n in (1, 2):
            add_attempt(ids["twice"], first, n, {"q1": 0.0, "q2": 5.0}, at=at)
        add_attempt(ids["spread"], first, 1, {"q1": 0.0, "q2": 5.0, "q3": 5.0}, at=at)
        add_attempt(ids["spread"], first, 2, {"q1": 5.0, "q2": 0.0, "q3": 5.0}, at=at)
        add_attempt(ids["spread"], first, 3, {"q1": 5.0, "q2": 5.0, "q3": 0.0}, at=at)
        for n in (1, 2, 3):  # a written answer graded low is no failing test
            add_attempt(ids["written"], first, n, {"q1": 5.0, "essay": 1.0}, at=at, manual=("essay",))
        add_attempt(ids["errored"], first, 1, {"q1": 0.0}, at=at)
        add_attempt(ids["errored"], first, 2, {"q1": 0.0}, at=at)
        add_attempt(ids["errored"], first, 3, {"q1": 0.0}, at=at, status="grader_error")  # carries no score
        add_attempt(ids["across"], first, 1, {"q1": 0.0}, at=at)  # the same cell name in two assignments
        add_attempt(ids["across"], first, 2, {"q1": 0.0}, at=at)
        add_attempt(ids["across"], second, 1, {"q1": 0.0}, at=at)
        db.session.commit()

        risk = _risk(course_id, now=now)
        assert list(risk) == ["stuck"]
        (reason,) = risk["stuck"].reasons
        assert reason.code == "stuck"
        assert dict(reason.detail) == {"assignment_id": first.id, "notebook": "intro", "grade_id": "q1",
                                       "attempts": 3, "name": "문제 1. 합계 구하기"}

        # Two failing attempts are enough when the caller says so.
        twice = _risk(course_id, now=now, failing_attempts=2)
        assert {"stuck", "twice", "errored", "across"} <= set(twice)
        assert "unstuck" not in twice and "spread" not in twice and "written" not in twice
        assert [r.detail["attempts"] for r in twice["stuck"].reasons] == [3]
        assert [r.detail["assignment_id"] for r in twice["across"].reasons] == [first.id]  # not the second's one


def test_a_stuck_cell_without_a_release_name_has_no_name(app: Flask, course_of: Any, make_cohort: Any,
                                                         learner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.errors import NotFound
    from academy.teaching import risk

    track_id, course_id = course_of()
    cohort_id = make_cohort(capacity=10, track_id=track_id)
    user_id = learner("stuck")
    with app.app_context():
        (assignment,) = add_assignments(course_id, 1)
        now = get_cohort(cohort_id).starts_at + 10 * DAY
        seat(cohort_id, user_id)
        for n in (1, 2, 3, 4):
            add_attempt(user_id, assignment, n, {"q1": 0.0}, at=now - DAY)
        db.session.commit()
        # A release whose notebook cannot be read names nothing ...
        detail = _risk(course_id, now=now)["stuck"].reasons[0].detail
        assert detail == {"assignment_id": assignment.id, "notebook": "intro", "grade_id": "q1", "attempts": 4,
                          "name": None}

        # ... and neither does an assignment without a release.
        def no_release(*_args: Any) -> Any:
            raise NotFound("not released")

        monkeypatch.setattr(risk, "current_release", no_release)
        assert _risk(course_id, now=now)["stuck"].reasons[0].detail == detail


def test_behind_the_cohort_s_median(app: Flask, course_of: Any, make_cohort: Any, learner: Any) -> None:
    from academy.completion.models import Completion

    track_id, course_id = course_of()
    cohort_id = make_cohort(capacity=10, track_id=track_id)
    keys = ("all1", "all2", "all3", "all4", "three", "two", "none")
    ids = {key: learner(key) for key in keys}
    with app.app_context():
        assignments = add_assignments(course_id, 4)
        start = get_cohort(cohort_id).starts_at
        now = start + 20 * DAY
        for key in keys:
            seat(cohort_id, ids[key], requested_at=start)
        for key in ("all1", "all2", "all3", "all4"):
            pass_all(ids[key], assignments, at=now - DAY)
        pass_all(ids["three"], assignments[:3], at=now - DAY)
        pass_all(ids["two"], assignments[:2], at=now - DAY)
        db.session.commit()

        # Progress 1, 1, 1, 1, .75, .5, 0: the median is 1.
        risk = _risk(course_id, now=now)
        assert list(risk) == ["none", "two"]  # two reasons first
        assert _codes(risk["none"]) == ["idle", "behind"]
        assert dict(risk["none"].reasons[1].detail) == {"progress": 0.0, "median": 1.0}
        assert _codes(risk["two"]) == ["behind"]
        assert dict(risk["two"].reasons[0].detail) == {"progress": 0.5, "median": 1.0}

        # Exactly the margin behind is not behind; a tighter margin catches "three", a looser one spares "two".
        assert "three" not in risk
        assert _codes(_risk(course_id, now=now, margin=0.2)["three"]) == ["behind"]
        looser = _risk(course_id, now=now, margin=0.5)
        assert "two" not in looser and _codes(looser["none"]) == ["idle", "behind"]

        # A learner who completed the course is never at risk, and still counts towards the median.
        db.session.add(Completion(user_id=ids["none"], track_id=track_id, course_id=course_id,
                                  completed_at=now - DAY))
        db.session.commit()
        risk = _risk(course_id, now=now)
        assert list(risk) == ["two"]
        assert dict(risk["two"].reasons[0].detail) == {"progress": 0.5, "median": 1.0}


def test_only_running_cohorts_and_held_seats_count(app: Flask, course_of: Any, make_cohort: Any,
                                                   learner: Any) -> None:
    from academy.enrollment.services import withdraw
    from academy.users.models import User

    track_id, course_id = course_of()
    current = make_cohort(capacity=10, track_id=track_id)
    later = make_cohort(capacity=10, track_id=track_id, starts_in_days=20)
    keys = ("now", "gone", "later")
    ids = {key: learner(key) for key in keys}
    with app.app_context():
        add_assignments(course_id, 1)
        start, later_start = get_cohort(current).starts_at, get_cohort(later).starts_at
        seat(current, ids["now"], requested_at=start - DAY)
        gone = seat(current, ids["gone"], requested_at=start - DAY)
        withdraw(db.session, gone, actor=db.session.get(User, ids["gone"]))
        seat(later, ids["later"], requested_at=later_start - DAY)
        db.session.commit()

        # While the first cohort runs, the later one has not started: its learner is not listed.
        assert list(_risk(course_id, now=start + 15 * DAY)) == ["now"]
        # Once the first cohort ended, only the later one's learner is.
        risk = _risk(course_id, now=later_start + 20 * DAY)
        assert list(risk) == ["later"]
        assert dict(risk["later"].reasons[0].detail) == {"days": 20, "ever_active": False}
        # Before either cohort starts nobody is.
        assert _risk(course_id, now=start - DAY) == {}


def test_the_cohort_filter(app: Flask, course_of: Any, make_cohort: Any, learner: Any) -> None:
    track_id, course_id = course_of()
    first, second = make_cohort(capacity=10, track_id=track_id), make_cohort(capacity=10, track_id=track_id)
    ids = {key: learner(key) for key in ("a", "b")}
    with app.app_context():
        add_assignments(course_id, 1)
        start = max(get_cohort(first).starts_at, get_cohort(second).starts_at)
        seat(first, ids["a"], requested_at=start - DAY)
        seat(second, ids["b"], requested_at=start - DAY)
        db.session.commit()
        now = start + 10 * DAY
        assert list(_risk(course_id, now=now)) == ["a", "b"]
        assert list(_risk(course_id, now=now, cohort_id=first)) == ["a"]
        assert [r.cohort.id for r in _risk(course_id, now=now, cohort_id=second).values()] == [second]


def test_the_instructor_s_page_words_every_reason_and_hides_the_list_from_others(
        app: Flask, client: Any, make_track: Any, make_cohort: Any, make_user: Any, learner: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.catalog.models import Course
    from tests.conftest import login

    teacher = "risk-teacher@example.kr"
    track_id = make_track(instructors=(teacher,))
    make_user("instructor", email=teacher)
    make_user("instructor", email="other-teacher@example.kr")
    cohort_id = make_cohort(capacity=10, track_id=track_id, starts_in_days=-20)
    ids = {key: learner(key) for key in ("early", "stuck", "busy", "keen")}
    with app.app_context():
        course_id = db.session.scalar(db.select(Course.id).where(Course.track_id == track_id))
        assignments = add_assignments(course_id, 2)
        start = get_cohort(cohort_id).starts_at
        for key in ids:
            seat(cohort_id, ids[key], requested_at=start)
        now = start + 20 * DAY
        for n in (1, 2, 3):
            add_attempt(ids["stuck"], assignments[0], n, {"q1": 0.0, "q2": 5.0}, at=now - DAY)
        pass_all(ids["busy"], assignments, at=now - DAY)
        pass_all(ids["keen"], assignments, at=now - DAY)  # the cohort's median is now half the assignments
        db.session.commit()
        title = assignments[0].title_ko
    assert login(client, "other-teacher@example.kr").status_code == 302
    assert client.get(f"/teach/courses/{course_id}/at-risk").status_code == 404
    client2 = app.test_client()
    assert login(client2, teacher).status_code == 302
    assert f"/teach/courses/{course_id}/at-risk" in client2.get("/teach").get_data(as_text=True)
    page = client2.get(f"/teach/courses/{course_id}/at-risk").get_data(as_text=True)
    assert 'data-at-risk="2"' in page
    assert 'data-learner="early@example.kr"' in page and 'data-learner="busy@example.kr"' not in page
    assert "아직 시작하지 않음" in page
    assert title in page and "3" in page and 'data-reason="stuck"' in page and 'data-reason="behind"' in page
    assert "중앙값 50%" in page and "통과율 0%" in page
    assert ">q1<" not in page and "q1 " not in page  # grade ids are never shown
    # A page at a time; the home counts the same learners; the nudge to all goes to every page's learners.
    assert 'data-count="at-risk">2<' in client2.get("/teach").get_data(as_text=True)
    monkeypatch.setattr("academy.teaching.services.PER_PAGE", 1)
    second = client2.get(f"/teach/courses/{course_id}/at-risk?page=2").get_data(as_text=True)
    assert second.count("data-learner=") == 1 and 'data-pages="2"' in second and 'data-at-risk="2"' in second
    everyone = second.split('data-nudge-form="all"', 1)[1].split("</form>", 1)[0]
    assert everyone.count('name="user"') == 2
