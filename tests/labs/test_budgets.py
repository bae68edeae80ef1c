"""GPU-hour budgets of cohorts and companies (academy.labs.budgets), on both databases with a fixed clock:
the hours they count, the sweep's warning and stop, the launch's refusal (the CPU stays open), the admins'
forms and table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from academy.extensions import db
from tests.conftest import csrf_token
from tests.labs.fakehub import LABS, FakeHub, course_with_cohorts, enrolled_learner, launch_lab

NOW = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.UTC)  # noon on 1 January 2026 in Seoul
NEW_YEAR = dt.datetime(2025, 12, 31, 15, 0, tzinfo=dt.UTC)  # midnight, 1 January 2026, in Seoul


def _company(app: Flask, name: str, number: str) -> int:
    from academy.users.models import Company

    with app.app_context():
        company = Company(name=name, business_number=number)
        db.session.add(company)
        db.session.commit()
        return company.id


def _set(app: Flask, model: Any, row_id: int, **values: Any) -> None:
    with app.app_context():
        row = db.session.get(model, row_id)
        for name, value in values.items():
            setattr(row, name, value)
        db.session.commit()


def _lab(app: Flask, user_id: int, course_id: int, cohort_id: int, *, start: dt.datetime | None,
         stop: dt.datetime | None = None, gpus: int = 1, state: str | None = None, **fields: Any) -> int:
    from academy.labs.models import LabSession, LabState

    if state is None:
        state = "running" if stop is None else "stopped"
    values: dict[str, Any] = {"hub_user": f"u{user_id}", "profile": "gpu" if gpus else "cpu", "gpus": gpus,
                              "state": LabState(state), "started_at": start, "stopped_at": stop,
                              "notebook_path": "", **fields}
    with app.app_context():
        lab = LabSession(user_id=user_id, course_id=course_id, cohort_id=cohort_id, **values)
        db.session.add(lab)
        db.session.commit()
        return lab.id


def _no_course_quota(app: Flask, course_id: int) -> None:
    from academy.catalog.models import Course

    _set(app, Course, course_id, gpu_hour_quota=0.0)  # only the budgets decide here


# -- the hours a budget counts ------------------------------------------------------------------------------------

@pytest.mark.app_config(**LABS)
def test_budgets_count_the_cohorts_labs_and_the_companys_labs_this_year(app: Flask, make_user: Any,
                                                                         make_track: Any, make_cohort: Any) -> None:
    from academy.enrollment.models import Cohort
    from academy.labs import budgets
    from academy.users.models import Company, User

    course_id, (cohort_a, cohort_b) = course_with_cohorts(app, make_track, make_cohort)
    company = _company(app, "세종정밀", "123-45-67890")
    alice = enrolled_learner(app, make_user, cohort_a)
    bob = enrolled_learner(app, make_user, cohort_a)
    carol = enrolled_learner(app, make_user, cohort_b)
    _set(app, User, alice, company_id=company)
    _set(app, User, carol, company_id=company)
    hour = dt.timedelta(hours=1)
    _lab(app, alice, course_id, cohort_a, start=NOW - 5 * hour, stop=NOW - 4 * hour)  # cohort A 1 h, company 1 h
    _lab(app, bob, course_id, cohort_a, start=NOW - hour / 2, gpus=2)  # running: 2 GPUs x 0.5 h = 1 h for cohort A
    _lab(app, bob, course_id, cohort_a, start=NOW - 5 * hour, stop=NOW - 3 * hour, gpus=0)  # a CPU lab: nothing
    _lab(app, bob, course_id, cohort_a, start=None, stop=NOW - 3 * hour, state="failed")  # never started: nothing
    # Across New Year (Seoul): 2 h for cohort B, of which 1 h falls in the company's 2026.
    _lab(app, carol, course_id, cohort_b, start=NEW_YEAR - hour, stop=NEW_YEAR + hour)
    _lab(app, carol, course_id, cohort_b, start=NOW - 200 * hour, stop=NOW - 197 * hour)  # 2025: cohort B only
    _lab(app, carol, course_id, cohort_b, start=NOW + hour)  # after the clock (a fixed one): nothing yet
    _set(app, Cohort, cohort_a, gpu_budget_hours=3.0)
    _set(app, Company, company, gpu_budget_hours=10.0)
    with app.app_context():
        found = budgets.budgets_for(db.session, now=NOW)
        assert set(found) == {("cohort", cohort_a), ("company", company)}  # cohort B has no budget
        a, firm = found[("cohort", cohort_a)], found[("company", company)]
        assert a.used == pytest.approx(2.0, abs=1e-4) and a.remaining == pytest.approx(1.0, abs=1e-4)
        assert (a.running, a.running_gpus) == (1, 2) and a.minutes_left == pytest.approx(30.0, abs=0.01)
        assert a.percent == pytest.approx(200 / 3, abs=0.01) and not a.exhausted
        assert firm.used == pytest.approx(2.0, abs=1e-4) and firm.running == 0 and firm.minutes_left is None
        assert (firm.year, firm.period_start) == (2026, NEW_YEAR)

        db.session.get(Cohort, cohort_b).gpu_budget_hours = 5.0
        db.session.flush()
        b = budgets.budgets_for(db.session, cohorts=[cohort_b], companies=[], now=NOW)[("cohort", cohort_b)]
        assert b.used == pytest.approx(5.0, abs=1e-4) and b.exhausted and b.remaining == 0.0
        assert [x.key for x in budgets.all_budgets(db.session, now=NOW)] == [
            ("cohort", cohort_b), ("cohort", cohort_a), ("company", company)]  # the most used first
        # A launch falls under its cohort's and its company's budgets.
        cohort_b_row, carol_row = db.session.get(Cohort, cohort_b), db.session.get(User, carol)
        assert {x.key for x in budgets.launch_budgets(db.session, carol_row, cohort_b_row, now=NOW)} == {
            ("cohort", cohort_b), ("company", company)}
        assert budgets.exhausted_budget(db.session, carol_row, cohort_b_row, now=NOW).key == ("cohort", cohort_b)
        alice_row = db.session.get(User, alice)
        assert budgets.exhausted_budget(db.session, alice_row, db.session.get(Cohort, cohort_a), now=NOW) is None
        # Staff open labs through no cohort: only their company's budget can apply.
        assert [x.key for x in budgets.launch_budgets(db.session, alice_row, None, now=NOW)] == [("company", company)]
        db.session.rollback()


# -- the sweep: a warning ahead, then the stop --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cohort", "company"])
@pytest.mark.app_config(**{**LABS, "gpu_devices": "0,1,2", "lab_quota_warning_minutes": 10})
def test_a_budget_warns_ten_minutes_ahead_then_stops_its_gpu_labs(app: Flask, make_user: Any, make_track: Any,
                                                                   make_cohort: Any, kind: str,
                                                                   sent_jobs: list[tuple[str, Any]]) -> None:
    from academy.enrollment.models import Cohort
    from academy.inbox.models import InboxMessage
    from academy.labs.models import LabSession, LabState
    from academy.labs.usage import sweep
    from academy.users.models import Company, User

    course_id, (cohort_a, cohort_b) = course_with_cohorts(app, make_track, make_cohort)
    _no_course_quota(app, course_id)
    firm = _company(app, "한빛전자", "220-81-62517")
    # Two GPU labs under the budget and one outside it, every device taken; a fourth learner under it waits.
    if kind == "cohort":
        places = [(cohort_a, firm), (cohort_a, None), (cohort_b, firm), (cohort_a, None)]
    else:
        places = [(cohort_a, firm), (cohort_b, firm), (cohort_a, None), (cohort_b, firm)]
    learners = []
    for cohort, company in places:
        learners.append(enrolled_learner(app, make_user, cohort))
        _set(app, User, learners[-1], company_id=company)
    if kind == "cohort":
        _set(app, Cohort, cohort_a, gpu_budget_hours=1.0)
        with app.app_context():
            name = db.session.get(Cohort, cohort_a).name
    else:
        _set(app, Company, firm, gpu_budget_hours=1.0)
        name = "한빛전자"
    started = NOW - dt.timedelta(minutes=21)
    labs = [_lab(app, user, course_id, cohort, start=started, device=str(device))
            for device, (user, (cohort, _company)) in enumerate(zip(learners[:3], places[:3], strict=True))]
    waiting = _lab(app, learners[3], course_id, places[3][0], start=None, state="queued",
                   last_seen_at=NOW + dt.timedelta(minutes=30))
    hub = FakeHub()
    for user in learners[:3]:
        hub.running[f"u{user}"] = {}

    def run(at: dt.datetime) -> Any:
        report = sweep(db.session, hub, app.config["ACADEMY_SETTINGS"], now=at)  # type: ignore[arg-type]
        db.session.commit()
        return report

    def messages(user: int) -> list[str]:
        return list(db.session.scalars(select(InboxMessage.key).where(InboxMessage.user_id == user)
                                       .order_by(InboxMessage.id)))

    with app.app_context():
        # 38 of 60 minutes used, two labs burning: 11 minutes left, not yet within the 10 of the warning
        # (a single lab's view, 22 minutes, would be wrong the other way).
        report = run(NOW - dt.timedelta(minutes=2))
        assert (report.warned_budget, report.stopped_budget, report.cancelled_budget) == (0, 0, 0)
        # 42 minutes used: 9 minutes left. Both learners under the budget are warned, once.
        report = run(NOW)
        assert (report.warned_budget, report.stopped_budget) == (2, 0)
        for user in learners[:2]:
            assert [k.split(":")[0] for k in messages(user)] == ["lab-budget-warn"]
            body = db.session.scalar(select(InboxMessage.body).where(InboxMessage.user_id == user))
            assert name in body and "9" in body
        assert messages(learners[2]) == [] and messages(learners[3]) == []
        assert run(NOW + dt.timedelta(minutes=5)).warned_budget == 0
        assert db.session.get(LabSession, waiting).state == LabState.queued  # still waiting for a GPU
        # 62 minutes used: the budget's two GPU labs stop, the place in line under it is given up, and the
        # device freed goes to nobody under that budget.
        report = run(NOW + dt.timedelta(minutes=10))
        assert (report.stopped_budget, report.cancelled_budget, report.stopped_quota) == (2, 1, 0)
        for lab_id in labs[:2]:
            lab = db.session.get(LabSession, lab_id)
            assert (lab.state, lab.stop_reason) == (LabState.stopped, "budget")
            assert lab.stopped_at == NOW + dt.timedelta(minutes=10)
        assert {("stop", f"u{user}") for user in learners[:2]} <= set(hub.calls)
        assert db.session.get(LabSession, labs[2]).state == LabState.running  # outside the budget
        lab = db.session.get(LabSession, waiting)
        assert (lab.state, lab.stop_reason) == (LabState.cancelled, "budget")
        assert ("academy.start_lab", (waiting,)) not in sent_jobs  # the device freed was not handed to it
        for user, what in ((learners[0], "stop"), (learners[1], "stop"), (learners[3], "cancel")):
            assert f"lab-budget-{what}" in {k.split(":")[0] for k in messages(user)}
        assert messages(learners[2]) == []
        # Told once: the next sweep finds nothing more to do.
        again = run(NOW + dt.timedelta(minutes=11))
        assert (again.stopped_budget, again.cancelled_budget, again.warned_budget) == (0, 0, 0)


# -- the launch: refused under a used-up budget, the CPU stays open ------------------------------------------------

@pytest.mark.app_config(**LABS)
def test_a_gpu_launch_under_a_used_up_company_budget_is_refused_but_the_cpu_is_not(
        app: Flask, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.labs import LabRefused
    from academy.labs.models import LabSession
    from academy.users.models import Company, User

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    _no_course_quota(app, course_id)
    firm = _company(app, "경남기계", "605-86-00001")
    spender, employee, outsider = (enrolled_learner(app, make_user, cohort) for _ in range(3))
    for user in (spender, employee):
        _set(app, User, user, company_id=firm)
    now = dt.datetime.now(dt.UTC)
    _lab(app, spender, course_id, cohort, start=now - dt.timedelta(hours=2), stop=now - dt.timedelta(hours=1))
    _set(app, Company, firm, gpu_budget_hours=0.5)
    hub = FakeHub()
    with pytest.raises(LabRefused, match="경남기계") as refused:
        launch_lab(app, hub, employee, course_id)
    assert "CPU" in str(refused.value)
    assert hub.calls == []
    with app.app_context():
        assert db.session.scalar(select(func.count(LabSession.id))) == 1  # nothing recorded, nothing started
    assert launch_lab(app, hub, employee, course_id, profile="cpu")[1] == "running"  # the CPU is never refused
    assert launch_lab(app, hub, outsider, course_id)[1] == "running"  # not an employee: a GPU lab
    _set(app, Company, firm, gpu_budget_hours=None)  # no budget: GPU labs again
    assert launch_lab(app, hub, employee, course_id)[1] == "running"


# -- the admins ----------------------------------------------------------------------------------------------------

def _post_budget(client: FlaskClient, path: str, form_page: str, **data: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client, form_page), **data}, follow_redirects=True)


@pytest.mark.app_config(**LABS)
def test_admins_set_and_clear_a_cohorts_budget_and_are_told_before_it_falls_below_use(
        app: Flask, client: FlaskClient, login_as: Any, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.audit.models import AuditEntry
    from academy.enrollment.models import Cohort

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    now = dt.datetime.now(dt.UTC)
    _lab(app, learner, course_id, cohort, start=now - dt.timedelta(hours=1, minutes=30),
         stop=now - dt.timedelta(minutes=15))  # 1.25 h used
    login_as("admin", locale="en")
    page, action = f"/admin/cohorts/{cohort}", f"/admin/cohorts/{cohort}/gpu-budget"

    def budget() -> float | None:
        with app.app_context():
            return db.session.get(Cohort, cohort).gpu_budget_hours

    assert "data-gpu-budget" in client.get(page).get_data(as_text=True)
    text = _post_budget(client, action, page, hours="2,000.5").get_data(as_text=True)
    assert budget() == 2000.5 and "1.25 hours are used" in text
    for bad in ("abc", "-1", "nan", "inf"):
        response = _post_budget(client, action, page, hours=bad)
        assert response.status_code == 200 and 'alert-danger' in response.get_data(as_text=True), bad
        assert budget() == 2000.5, bad
    # Below what is used: refused with the reason, unless the admin confirms.
    text = _post_budget(client, action, page, hours="1").get_data(as_text=True)
    assert budget() == 2000.5
    assert "1.25 GPU hours are already used" in text
    assert "Save even at or below the hours already used (its GPU labs stop)" in text
    text = _post_budget(client, action, page, hours="1", below_used_ok="y").get_data(as_text=True)
    assert budget() == 1.0 and "This budget is used up" in text
    text = _post_budget(client, action, page, hours="").get_data(as_text=True)
    assert budget() is None and "has no GPU budget now" in text
    with app.app_context():
        entries = list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == "cohort.set_gpu_budget")
                                          .order_by(AuditEntry.id)))
        assert [(e.data["previous_gpu_budget_hours"], e.data["gpu_budget_hours"]) for e in entries] == [
            (None, 2000.5), (2000.5, 1.0), (1.0, None)]
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert "Cohort GPU budget changed" in audit and "no budget" in audit and "cohort.set_gpu_budget" not in audit


@pytest.mark.app_config(**LABS)
def test_admins_see_budgets_against_use_and_set_a_companys(
        app: Flask, client: FlaskClient, login_as: Any, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.enrollment.models import Cohort
    from academy.users.models import Company, User

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    firm = _company(app, "창원로봇", "609-81-12345")
    learner = enrolled_learner(app, make_user, cohort)
    _set(app, User, learner, company_id=firm)
    now = dt.datetime.now(dt.UTC)
    _lab(app, learner, course_id, cohort, start=now - dt.timedelta(hours=3), stop=now - dt.timedelta(hours=1))
    _set(app, Cohort, cohort, gpu_budget_hours=8.0)
    login_as("admin", locale="en")
    assert 'href="/admin/gpu-budgets"' in client.get("/admin/").get_data(as_text=True)  # where the admin lands
    assert 'href="/admin/gpu-budgets"' in client.get("/labs/manage").get_data(as_text=True)
    page = "/admin/gpu-budgets"
    text = _post_budget(client, "/admin/gpu-budgets/company", page, company_id=firm, hours="4").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Company, firm).gpu_budget_hours == 4.0
        cohort_name = db.session.get(Cohort, cohort).name
    assert "The GPU budget of the company 창원로봇 is now 4.00 hours; 2.00 hours are used." in text
    table = client.get(page).get_data(as_text=True)
    rows = table.split("data-gpu-budget=")[1:]
    assert [row.split('"')[1] for row in rows] == [f"company-{firm}", f"cohort-{cohort}"]  # 50 % before 25 %
    assert "창원로봇" in rows[0] and "4.00" in rows[0] and "2.00" in rows[0] and "50%" in rows[0]
    assert cohort_name in rows[1] and "8.00" in rows[1] and "6.00" in rows[1] and "25%" in rows[1]
    assert f'href="/admin/cohorts/{cohort}"' in rows[1]
    assert "Year 20" in rows[0]


@pytest.mark.app_config(**LABS)
def test_the_labs_page_counts_gpu_hours_per_company_not_per_company_name(
        app: Flask, client: FlaskClient, login_as: Any, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.labs.reports import gpu_usage_by_company
    from academy.users.models import User

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    first, second = _company(app, "대성정공", "504-81-11111"), _company(app, "대성정공", "514-81-22222")
    learners = [enrolled_learner(app, make_user, cohort) for _ in range(4)]
    for learner, company, hours in zip(learners, (first, second, second, None), (1, 2, 3, 6), strict=True):
        _set(app, User, learner, company_id=company)
        _lab(app, learner, course_id, cohort, start=NOW - dt.timedelta(hours=hours), stop=NOW)
    with app.app_context():
        rows = [(u.company, u.learners, round(u.gpu_hours, 2)) for u in gpu_usage_by_company(db.session)]
    assert rows == [(None, 1, 6.0), ("대성정공", 2, 5.0), ("대성정공", 1, 1.0)]  # two firms of one name stay two
    login_as("admin")
    page = client.get("/labs/manage").get_data(as_text=True)
    assert "<td>회사 정보 없음</td><td>1</td><td>6.00</td>" in page  # as the statistics page says it
    assert "<td>—</td>" not in page.split("data-gpu-company-usage")[-1]


@pytest.mark.app_config(**LABS)
def test_only_admins_may_see_or_change_budgets(app: Flask, client: FlaskClient, login_as: Any, make_user: Any,
                                               make_track: Any, make_cohort: Any) -> None:
    from academy.enrollment.models import Cohort

    _course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    firm = _company(app, "김해정밀", "615-81-00002")
    login_as("instructor")
    token = csrf_token(client, "/")
    assert client.get("/admin/gpu-budgets").status_code == 403
    assert client.post(f"/admin/cohorts/{cohort}/gpu-budget", data={"csrf_token": token, "hours": "99"}
                       ).status_code == 403
    assert client.post("/admin/gpu-budgets/company", data={"csrf_token": token, "company_id": firm, "hours": "99"}
                       ).status_code == 403
    with app.app_context():
        assert db.session.get(Cohort, cohort).gpu_budget_hours is None


@pytest.mark.app_config(**{**LABS, "lab_quota_warning_minutes": 10})
def test_the_lab_page_warns_of_the_budget_and_offers_the_cpu_once_it_stopped(
        app: Flask, client: FlaskClient, login_as: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.labs.models import LabSession, LabState
    from academy.users.models import User

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    _no_course_quota(app, course_id)
    learner = login_as("learner")
    with app.app_context():
        request_enrollment(db.session, db.session.get(Cohort, cohort), db.session.get(User, learner))
        db.session.get(Cohort, cohort).gpu_budget_hours = 1.0
        name = db.session.get(Cohort, cohort).name
        db.session.commit()
    now = dt.datetime.now(dt.UTC)
    lab = _lab(app, learner, course_id, cohort, start=now - dt.timedelta(minutes=55), device="0",
               notebook_path="course/x.ipynb")
    status = client.get(f"/labs/{lab}/status").get_json()
    assert name in status["warning"] and "5" in status["warning"]
    _set(app, LabSession, lab, state=LabState.stopped, stop_reason="budget", stopped_at=now)
    page = client.get(f"/labs/{lab}").get_data(as_text=True)
    assert 'name="profile" value="cpu"' in page and "CPU로 열기" in page
