"""``academy synth``: a deterministic, idempotent, consistent synthetic academy on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from academy.catalog.models import Assignment, Course
from academy.certificates.models import Certificate
from academy.completion.models import Completion
from academy.enrollment.models import ACTIVE_STATUSES, Cohort, Enrollment, EnrollmentEvent, EnrollmentStatus
from academy.extensions import db
from academy.grading.models import Submission
from academy.labs.models import LabSession
from academy.teaching.cells import rebuild
from academy.teaching.models import GradebookCell
from academy.users.models import Company, User
from tests.conftest import _config
from tests.support import COURSES, ROOT

NOW = dt.datetime(2026, 3, 15, 3, 0, tzinfo=dt.UTC)
LEARNERS = 40


def _load_catalogue(app: Flask) -> None:
    from academy.catalog.services import load_catalog

    with app.app_context():
        load_catalog(db.session, COURSES)
        db.session.commit()


def _synth(app: Flask, learners: int = LEARNERS, **options: Any) -> Any:
    from academy.certificates.services import Issuer
    from academy.synth import synthesize

    options.setdefault("now", NOW)
    with app.app_context():
        return synthesize(db.session, learners=learners, issuer=Issuer.from_app(), **options)


@pytest.fixture
def sqlite_twin(tmp_path: Path) -> Iterator[Any]:
    """Factory: another portal on a SQLite file of its own, with the catalogue loaded."""
    made: list[Flask] = []

    def factory(name: str) -> Flask:
        from academy import create_app

        other = create_app(_config(f"sqlite:///{tmp_path / f'{name}.sqlite3'}", tmp_path / f"{name}-data"))
        with other.app_context():
            import academy.models  # noqa: F401

            db.create_all()
        _load_catalogue(other)
        made.append(other)
        return other

    yield factory
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def _snapshot(app: Flask) -> dict[str, Any]:
    """What must not change between two runs with the same seed: people, scores, dates, codes."""
    with app.app_context():
        session = db.session
        emails = dict(session.execute(select(User.id, User.email)).all())
        people = sorted(session.execute(select(User.email, User.name, User.region, User.industry, User.job_role,
                                               User.locale, Company.name, Company.business_number)
                                        .outerjoin(Company, Company.id == User.company_id)).all())
        scores = sorted((emails[s.user_id], a.slug, s.attempt, s.status.value, s.score, s.raw_score,
                         s.submitted_at.isoformat(), s.public_id)
                        for s, a in session.execute(select(Submission, Assignment).join(Assignment)).all())
        labs = sorted((emails[lab.user_id], lab.queued_at.isoformat(), lab.profile, lab.state.value,
                       lab.stopped_at.isoformat() if lab.stopped_at else None)
                      for lab in session.scalars(select(LabSession)))
        enrollments = sorted((emails[e.user_id], c.name, e.status.value, e.requested_at.isoformat())
                             for e, c in session.execute(select(Enrollment, Cohort).join(Cohort)).all())
        completions = sorted((emails[c.user_id], c.course_id is None, c.completed_at.isoformat(), c.score_percent)
                             for c in session.scalars(select(Completion)))
        codes = sorted((emails[c.user_id], c.code, c.title_en) for c in session.scalars(select(Certificate)))
        public = dict(session.execute(select(Submission.id, Submission.public_id)).all())
        cells = sorted((emails[c.user_id], a.slug, c.attempts, c.status, public.get(c.counted_submission_id),
                        c.score, c.late_days, c.last_submitted_at.isoformat(), json.dumps(c.failing),
                        c.most_failing, json.dumps({k: sorted(v, key=repr) for k, v in (c.questions or {}).items()}))
                       for c, a in session.execute(select(GradebookCell, Assignment).join(Assignment)).all())
    return {"people": people, "scores": scores, "labs": labs, "enrollments": enrollments,
            "completions": completions, "certificates": codes, "gradebook_cells": cells}


def test_the_same_seed_gives_the_same_academy_on_every_database(app: Flask, sqlite_twin: Any) -> None:
    _load_catalogue(app)
    report = _synth(app, seed=7)
    twin = sqlite_twin("twin")
    twin_report = _synth(twin, seed=7)
    assert report.status == twin_report.status == "created"
    assert report.counts == twin_report.counts
    assert report.counts["learners"] == LEARNERS and report.counts["submissions"] > LEARNERS
    mine = _snapshot(app)
    assert mine == _snapshot(twin)
    assert all(mine.values()), {k: len(v) for k, v in mine.items()}
    # The gradebook's kept cells (written with the attempts: by COPY on PostgreSQL, through the session
    # events on SQLite) are what `academy gradebook rebuild` computes from the attempts.
    with app.app_context():
        rebuild(db.session)
        db.session.commit()
    assert _snapshot(app)["gradebook_cells"] == mine["gradebook_cells"]

    other = sqlite_twin("other-seed")
    _synth(other, seed=8)
    theirs = _snapshot(other)
    assert {p[0] for p in theirs["people"]}.isdisjoint({p[0] for p in mine["people"]})  # the seed is in the e-mail
    assert [p[1] for p in theirs["people"]] != [p[1] for p in mine["people"]]
    assert theirs["scores"] != mine["scores"]


def test_running_again_adds_nothing_tops_up_and_refuses_another_seed(app: Flask) -> None:
    from academy.errors import Conflict

    _load_catalogue(app)
    first = _synth(app)
    assert first.status == "created"

    def table_counts() -> dict[str, int]:
        with app.app_context():
            return {model.__name__: db.session.scalar(select(func.count()).select_from(model)) or 0
                    for model in (User, Company, Cohort, Enrollment, EnrollmentEvent, LabSession, Submission,
                                  Completion, Certificate)}

    before = table_counts()
    again = _synth(app, now=NOW + dt.timedelta(days=3))  # another day: still the same academy
    assert again.status == "already_there"
    assert table_counts() == before
    assert {k: again.counts[k] for k in ("learners", "enrollments", "submissions", "completions", "certificates")} \
        == {k: first.counts[k] for k in ("learners", "enrollments", "submissions", "completions", "certificates")}

    more = _synth(app, learners=LEARNERS + 10)
    assert more.status == "topped_up" and more.counts["learners"] == 10 and more.counts["cohorts"] == 0
    after = table_counts()
    assert after["User"] == before["User"] + 10 and after["Cohort"] == before["Cohort"]
    with app.app_context():
        emails = db.session.scalars(select(User.email)).all()
        assert len(emails) == len(set(emails))
        assert sum(e.endswith("@s1.synth.academy.kr") for e in emails) == LEARNERS + 10

    with pytest.raises(Conflict, match="seed 1"):
        _synth(app, seed=2)


def test_the_academy_is_consistent_with_the_portals_own_rules(app: Flask) -> None:
    """Completions and certificates are what the portal computes; dates, seats and enrollments hold together."""
    from academy.certificates import credential
    from academy.certificates.keys import all_keys
    from academy.certificates.services import Issuer, statement_of
    from academy.completion.services import course_outcome, recompute
    from academy.users.reference import INDUSTRIES, JOB_ROLES, REGIONS, normalize_business_number

    _load_catalogue(app)
    report = _synth(app, learners=60, courses=12)  # the nine catalogue courses and three synthetic ones
    assert report.counts["courses"] == 3 and report.counts["assignments"] == 30
    assert report.counts["completions"] > 0 and report.counts["track_completions"] > 0
    with app.app_context():
        session = db.session
        # Completions: each holds under the course's rule with the stored scores, and judging everyone
        # again as `academy completion recompute` does records and withdraws nothing.
        in_force = session.scalars(select(Completion).where(Completion.withdrawn_at.is_(None))).all()
        for row in in_force:
            if row.course is not None:
                assert course_outcome(session, row.user, row.course, now=NOW).met, (row.user.email, row.course.slug)
            else:
                done = {c.course_id for c in in_force if c.user_id == row.user_id and c.course_id is not None}
                assert {c.id for c in row.track.courses if c.active} <= done
        judged = recompute(session, now=NOW)
        assert (judged.recorded, judged.withdrawn, judged.certificates) == (0, 0, 0), judged.as_json()
        session.rollback()

        # Certificates: one per completion in force, signed exactly as `issue` signs.
        certificates = session.scalars(select(Certificate)).all()
        assert sorted(c.completion_id for c in certificates) == sorted(c.id for c in in_force)
        keys = {k.kid: k for k in all_keys(Issuer.from_app().data_dir)}
        for cert in certificates[:20]:
            subject = cert.completion.course or cert.completion.track
            statement = statement_of(cert, cert.user.email, subject.slug)
            assert credential.sign(statement, Issuer.from_app().base_url, keys[cert.key_id]) == cert.credential
            assert cert.holder_name == cert.user.name and cert.completed_at <= NOW

        # Enrollments: no learner twice active in a track, events that end in the status, seats that add up.
        enrollments = session.scalars(select(Enrollment)).all()
        active = Counter((e.user_id, e.track_id) for e in enrollments if e.status in ACTIVE_STATUSES)
        assert max(active.values()) == 1
        assert len({(e.user_id, e.cohort_id) for e in enrollments}) == len(enrollments)
        statuses = Counter(e.status for e in enrollments)
        assert statuses[EnrollmentStatus.enrolled] > len(enrollments) / 2
        for e in enrollments:
            assert e.events and e.events[-1].to_status == e.status.value and e.track_id == e.cohort.track_id
            assert e.requested_at <= NOW
        for cohort in session.scalars(select(Cohort)):
            taken = sum(1 for e in enrollments if e.cohort_id == cohort.id and e.status is EnrollmentStatus.enrolled)
            assert cohort.seats_taken == taken <= cohort.capacity
        starts = {cohort.id: cohort for cohort in session.scalars(select(Cohort))}
        seat = {(e.user_id, e.track_id): starts[e.cohort_id] for e in enrollments
                if e.status is EnrollmentStatus.enrolled}

        # Labs inside their cohort and before now, one at a time; attempts after the cohort started.
        labs = session.scalars(select(LabSession).order_by(LabSession.user_id, LabSession.queued_at)).all()
        previous: dict[int, dt.datetime] = {}
        for lab in labs:
            cohort = starts[lab.cohort_id]
            assert cohort.starts_at <= lab.queued_at and lab.stopped_at <= min(cohort.ends_at, NOW)
            assert lab.started_at is None or lab.queued_at <= lab.started_at < lab.stopped_at
            assert lab.profile == lab.course.lab_profile and lab.gpus == (0 if lab.profile == "cpu" else 1)
            assert lab.user_id not in previous or previous[lab.user_id] <= lab.queued_at
            previous[lab.user_id] = lab.stopped_at
        for submission in session.scalars(select(Submission)):
            cohort = seat[(submission.user_id, submission.assignment.course.track_id)]
            assert cohort.starts_at < submission.submitted_at < submission.graded_at <= NOW
            assert submission.status.value in ("graded", "learner_code_failed", "grader_error")
            assert (submission.score is None) == (submission.status.value == "grader_error")
            assert 1 <= submission.attempt <= 3 and submission.release_id is not None
            # Cell scores add up to the raw score, as the grader's do; a grader error has none.
            assert (submission.raw_score is None) == (not submission.cells)
            if submission.cells:
                assert sum(c.score for c in submission.cells) == pytest.approx(submission.raw_score)
                assert all(c.score is not None and 0 <= c.score <= c.max_score for c in submission.cells)

        # People: valid reference codes, employees where their company is, valid business numbers.
        companies = {c.id: c for c in session.scalars(select(Company))}
        learners = session.scalars(select(User)).all()
        regions = defaultdict(set)
        for user in learners:
            assert user.region in REGIONS and user.job_role in JOB_ROLES and user.locale in ("ko", "en")
            assert user.industry is None or user.industry in INDUSTRIES
            if user.company_id is not None:
                regions[user.company_id].add((user.region, user.industry))
        assert all(len(pairs) == 1 for pairs in regions.values())
        for company in companies.values():
            assert normalize_business_number(company.business_number) == company.business_number


def test_the_command_prints_json_and_refuses_bad_input_in_one_line(app: Flask, tmp_path: Path) -> None:
    from academy import create_app
    from academy.cli import COMMANDS
    from academy.synth import synth_command

    assert synth_command in COMMANDS
    runner = app.test_cli_runner()

    def refused(args: list[str], on: Flask = app) -> str:
        result = on.test_cli_runner().invoke(synth_command, args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
        return lines[0]

    assert "--learners" in refused([])
    assert "at least 1" in refused(["--learners", "0"])
    assert "at least 1" in refused(["--learners", "-5"])
    assert "academy init" in refused(["--learners", "5"])  # no catalogue loaded
    assert "ISO 8601" in refused(["--learners", "5", "--now", "yesterday"])
    bare = create_app(_config(f"sqlite:///{tmp_path / 'bare.sqlite3'}", tmp_path / "bare"))
    assert "academy init" in refused(["--learners", "5"], on=bare)  # no tables at all

    # Synthetic courses need no catalogue: four courses, ten assignments each.
    made = runner.invoke(synth_command, ["--learners", "12", "--courses", "4", "--seed", "3", "--json",
                                         "--now", NOW.isoformat()])
    assert made.exit_code == 0, made.output
    figures = json.loads(made.stdout)
    assert figures["status"] == "created" and figures["learners"] == 12 and figures["courses"] == 4
    assert figures["assignments"] == 40 and figures["companies"] == 3 and figures["tracks"] == 1
    again = runner.invoke(synth_command, ["--learners", "12", "--courses", "4", "--seed", "3"])
    assert again.exit_code == 0 and "already there" in again.stdout
    assert "seed 3" in refused(["--learners", "12", "--seed", "4"])


def test_importing_the_command_line_loads_no_database_code() -> None:
    """`academy grade` stays quick: the synth command's module imports SQLAlchemy only when it runs."""
    code = "import sys, academy.cli; assert 'sqlalchemy' not in sys.modules and 'academy.models' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_demo_loads_a_small_synthetic_academy_once(app: Flask) -> None:
    from academy.demo import DEMO_SYNTH_LEARNERS, seed_demo, seed_synthetic

    _load_catalogue(app)
    seed_demo(app)
    assert "created" in seed_synthetic(app)
    seed_demo(app)
    assert "already there" in seed_synthetic(app)
    with app.app_context():
        learners = db.session.scalar(select(func.count()).select_from(User).where(User.email.like("%synth%")))
        assert learners == DEMO_SYNTH_LEARNERS
        demo = db.session.scalar(select(User).where(User.email == "learner@demo.academy.kr"))
        rows = db.session.scalars(select(Enrollment).where(Enrollment.user_id == demo.id)).all()
        assert len(rows) == len({r.track_id for r in rows}) == 4  # one open cohort of each of the four tracks
        assert db.session.scalar(select(func.count()).select_from(Completion)) > 0
        assert db.session.scalar(select(func.count()).select_from(Course).where(Course.slug.like("synth-%"))) == 0
        # the admins' GPU budgets page has something to show: one company within, one near, one past its budget
        from academy.labs.budgets import all_budgets

        budgets = all_budgets(db.session)
        assert len(budgets) == 3 and all(b.kind == "company" for b in budgets)
        shares = sorted(b.used / b.hours for b in budgets)
        assert shares[0] < 0.7 and 0.9 < shares[1] < 1 and shares[2] > 1, shares
        assert [b.exhausted for b in sorted(budgets, key=lambda b: b.used / b.hours)] == [False, False, True]
