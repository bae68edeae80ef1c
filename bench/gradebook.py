"""A course's gradebook at scale: the instructor's pages and export against the same app's trivial page.

Run from the repository root with the portal's environment::

    .venv/bin/python bench/gradebook.py [--learners 2000] [--assignments 10] [--attempts 5] [--requests 10]
                                        [--keep] [--json]

What it does, in one run:

1. **Build.** A scratch PostgreSQL database ``academy_bench_gradebook`` (``--pg-admin-url``, default the
   local server): ``academy init``, then one course of its own with ``--assignments`` assignments (five
   graded cells each: four autograded, one written answer), a cohort running now with ``--learners``
   learners, each with ``--attempts`` graded attempts at every assignment (about a tenth of the written
   answers still waiting for points, some attempts flagged, the failing cells with a few grouped error
   messages), a lab session per learner, and ``ANALYZE``.  The attempts go in as bulk inserts through the
   session, so the gradebook's kept cells (``academy.teaching.cells``) are computed as they commit, by the
   portal's own rules; their number is reported.  Deterministic (seed 1).  With ``--keep`` the database is
   kept and reused by the next run of the same size (brought to the current schema first: ``academy db
   upgrade``, whose migrations compute what a new table needs).
2. **Pages**, through gunicorn with 2 workers (``wsgi:app``) on a free loopback port, signed in as the
   course's instructor: the course gradebook (every learner, all assignments), the question statistics of
   one assignment, the at-risk list, the staff home, the grading queue, and the gradebook as XLSX; each first
   request ("cold") and the median of ``--requests`` more ("warm"); and, as the floor, the trivial page of
   the same app for the same instructor: the certificate verification form (``/verify``: session, account,
   menu and layout, no data).

Targets (issue 15): each page under 300 ms, the XLSX export under 3 s.  For comparison, nbgrader's
formgrader needs 28 s to list 1,126 submissions.  With ``--json`` the last line of standard output is one
JSON object of every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    BIN,
    PG_ADMIN_URL,
    ROOT,
    academy,
    cold_and_warm,
    gunicorn,
    in_the_app,
    log,
    pg_execute,
    pg_url,
    signed_in,
)

PG_DB = "academy_bench_gradebook"
TEACHER = ("bench-teacher@example.kr", "Gyeongbuk-teach-2026!")
COURSE_SLUG = "bench-gradebook-course"
TRIVIAL = "/verify"
TARGETS = {"page_ms": 300.0, "export_s": 3.0}
ERRORS = ("AssertionError: 불량률이 0과 1 사이가 아닙니다", "KeyError: 'defect_rate'",
          "ZeroDivisionError: division by zero", "AssertionError: 결과의 인덱스가 라인 이름이 아닙니다")


def build_data(learners: int, assignments: int, attempts: int, seed: int = 1) -> dict[str, Any]:
    """In the app of this process's environment: the bench course, its cohort, learners and attempts."""
    import datetime as dt

    from sqlalchemy import func, insert, select, text

    from academy import create_app
    from academy.catalog.models import Assignment, Course, CourseInstructor, Track
    from academy.db import utcnow
    from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
    from academy.extensions import db
    from academy.grading.models import AssignmentRelease, CellScore, Submission, SubmissionStatus
    from academy.labs.models import LabSession, LabState
    from academy.teaching.models import GradebookCell
    from academy.users.models import Role, User
    from academy.users.passwords import hash_password

    rng = random.Random(seed)
    started = time.perf_counter()
    app = create_app()
    with app.app_context():
        session = db.session
        now = utcnow()
        track = Track(slug="bench-gradebook", title_ko="대규모 성적부 트랙", title_en="Gradebook at scale", position=99)
        course = Course(slug=COURSE_SLUG, track=track, title_ko="대규모 성적부 과정", title_en="Gradebook course",
                        source_path=str(ROOT / "courses"), hours=20.0)
        session.add_all([track, course, CourseInstructor(course=course, email=TEACHER[0])])
        tasks = [Assignment(course=course, slug=f"{n + 1:02d}-task", title_ko=f"과제 {n + 1}", title_en=f"Task {n + 1}",
                            position=n, due_days=7, max_score=10.0, notebooks=["task.ipynb"])
                 for n in range(assignments)]
        session.add_all(tasks)
        session.flush()
        releases = [AssignmentRelease(assignment=a, version=1, source_hash="bench", path="/nonexistent") for a in tasks]
        session.add_all(releases)
        start = now - dt.timedelta(days=40)
        cohort = Cohort(track=track, name="벤치 1기", starts_at=start, ends_at=now + dt.timedelta(days=20),
                        capacity=learners, seats_taken=learners)
        session.add(cohort)
        teacher = session.scalar(select(User).where(User.email == TEACHER[0]))
        teacher.consent_at = now
        session.flush()

        password = hash_password("Bench-learner-2026!")
        first_user = (session.scalar(select(func.max(User.id))) or 0) + 1
        session.execute(insert(User), [
            {"id": first_user + i, "email": f"bench-{i:05d}@bench.academy.kr", "name": f"학습자 {i:05d}",
             "password_hash": password, "role": Role.learner, "consent_at": now, "active": True, "created_at": start}
            for i in range(learners)])
        user_ids = [first_user + i for i in range(learners)]
        session.execute(insert(Enrollment), [
            {"cohort_id": cohort.id, "track_id": track.id, "user_id": u, "status": EnrollmentStatus.enrolled,
             "requested_at": start, "updated_at": start} for u in user_ids])
        session.execute(insert(LabSession), [
            {"user_id": u, "course_id": course.id, "hub_user": f"bench{u}", "profile": "cpu", "state": LabState.stopped,
             "queued_at": now - dt.timedelta(days=rng.uniform(0, 20)), "last_seen_at": now} for u in user_ids])

        next_submission = (session.scalar(select(func.max(Submission.id))) or 0) + 1
        submissions: list[dict[str, Any]] = []
        cells: list[dict[str, Any]] = []
        counts = {"submissions": 0, "cells": 0, "waiting": 0, "flagged": 0}

        def flush() -> None:
            if submissions:
                session.execute(insert(Submission), submissions)
                session.execute(insert(CellScore), cells)
                counts["submissions"] += len(submissions)
                counts["cells"] += len(cells)
                submissions.clear()
                cells.clear()

        for user_id in user_ids:
            skill = rng.random()
            for index, (task, release) in enumerate(zip(tasks, releases, strict=True)):
                for attempt in range(1, attempts + 1):
                    at = start + dt.timedelta(days=index * 3 + attempt * 0.3 + rng.random())
                    sid = next_submission
                    next_submission += 1
                    total = 0.0
                    for q in range(1, 5):
                        passed = rng.random() < skill + attempt * 0.08
                        total += 2.0 if passed else 0.0
                        cells.append({"submission_id": sid, "notebook": "task", "grade_id": f"q{q}",
                                      "score": 2.0 if passed else 0.0, "auto_score": 2.0 if passed else 0.0,
                                      "max_score": 2.0, "hidden": q == 4, "manual": False,
                                      "visible_passed": passed, "error": None if passed else ERRORS[q - 1]})
                    waiting = attempt == attempts and rng.random() < 0.1
                    written = None if waiting else float(rng.choice((0.0, 1.0, 1.5, 2.0)))
                    counts["waiting"] += waiting
                    total += written or 0.0
                    cells.append({"submission_id": sid, "notebook": "task", "grade_id": "essay", "score": written,
                                  "max_score": 2.0, "hidden": False, "manual": True})
                    flagged = rng.random() < 0.002
                    counts["flagged"] += flagged
                    submissions.append({
                        "id": sid, "public_id": f"00000000-0000-4000-8000-{sid:012d}", "assignment_id": task.id,
                        "user_id": user_id, "release_id": release.id, "attempt": attempt, "origin": "upload",
                        "submitted_at": at, "due_at": start + dt.timedelta(days=index * 3 + 7), "late_days": 0,
                        "penalty_percent": 0.0, "status": SubmissionStatus.graded, "raw_score": total,
                        "score": total, "max_score": 10.0, "problems": [], "flagged": flagged,
                        "flag_reasons": ["The grader found a float subclass in the answer."] if flagged else [],
                        "graded_at": at})
            if len(submissions) >= 5000:
                flush()
        flush()
        kept = time.perf_counter()
        session.commit()  # computes the kept cells of every (learner, assignment) inserted
        counts["cells_seconds"] = round(time.perf_counter() - kept, 1)
        counts["gradebook_cells"] = session.scalar(select(func.count()).select_from(GradebookCell)) or 0
        if session.get_bind().dialect.name == "postgresql":
            for table in ("user", "submission"):
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                     f"(SELECT max(id) FROM \"{table}\"))"))
            session.commit()
        session.execute(text("ANALYZE"))
        session.commit()
        return {"course_id": course.id, "assignment_id": tasks[0].id, **counts,
                "seconds": round(time.perf_counter() - started, 1)}


def _size(url: str) -> int | None:
    """Learners of the bench course in an existing database, or None."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM enrollment e JOIN cohort c ON c.id = e.cohort_id "
                                         "JOIN track t ON t.id = c.track_id WHERE t.slug = 'bench-gradebook'"))
                       .scalar() or 0)
    except Exception:  # noqa: BLE001 - no database (or no tables) yet
        return None
    finally:
        engine.dispose()


def ids_of(env: dict[str, str]) -> dict[str, int]:
    code = f"""
import json
from sqlalchemy import select
from academy import create_app
from academy.catalog.models import Assignment, Course
from academy.extensions import db
app = create_app()
with app.app_context():
    course = db.session.scalar(select(Course).where(Course.slug == {COURSE_SLUG!r}))
    first = min(course.assignments, key=lambda a: a.position)
    print(json.dumps({{"course_id": course.id, "assignment_id": first.id}}))
"""
    return in_the_app(env, code, "could not read the bench course")


def timed_download(browser: Any, url: str, repeat: int) -> dict[str, Any]:
    """Seconds to download ``url`` (first and median of ``repeat`` more) and its size."""
    sizes = []

    def once() -> float:
        started = time.perf_counter()
        answer = browser.get(url, allow_redirects=False)
        elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            raise SystemExit(f"GET {url} answered {answer.status_code}")
        sizes.append(len(answer.content))
        return elapsed

    cold = once()
    warm = sorted(once() for _ in range(max(repeat, 1)))
    return {"cold_s": round(cold, 2), "warm_s": round(warm[len(warm) // 2], 2), "bytes": sizes[-1]}


def measure(env: dict[str, str], repeat: int) -> dict[str, Any]:
    ids = ids_of(env)
    course, assignment = ids["course_id"], ids["assignment_id"]
    pages = {
        "gradebook": f"/teach/courses/{course}/gradebook",
        "gradebook, not completed, by progress": f"/teach/courses/{course}/gradebook?show=not_completed&sort=progress",
        "question statistics": f"/teach/assignments/{assignment}/questions",
        "at-risk list": f"/teach/courses/{course}/at-risk",
        "staff home": "/teach",
        "grading queue": f"/teach/queue?course={course}",
    }
    figures: dict[str, Any] = {"pages": {}}
    with gunicorn(env) as base:
        teacher = signed_in(base, *TEACHER)
        for name, path in pages.items():
            figures["pages"][name] = cold_and_warm(teacher, base + path, repeat)
            log(f"{name}: {figures['pages'][name]}")
        figures["trivial"] = cold_and_warm(teacher, base + TRIVIAL, repeat)
        figures["xlsx"] = timed_download(teacher, f"{base}/teach/courses/{course}/gradebook.xlsx", 3)
        figures["csv"] = timed_download(teacher, f"{base}/teach/courses/{course}/gradebook.csv", 3)
    return figures


def report(figures: dict[str, Any]) -> None:
    def mark(value: float, target: float) -> str:
        return "ok" if value < target else "MISSED"

    build = figures["build"]
    trivial = figures["trivial"]["warm_ms"] or 1.0
    print(f"\n== PostgreSQL: {build['learners']:,} learners x {build['assignments']} assignments x "
          f"{build['attempts']} attempts ==")
    if "data" in build:
        data = build["data"]
        print(f"build: {data['submissions']:,} attempts, {data['cells']:,} graded cells "
              f"({data['waiting']:,} written answers waiting, {data['flagged']} flagged) in {data['seconds']} s; "
              f"{data['gradebook_cells']:,} gradebook cells kept at the commit in {data['cells_seconds']} s")
    print(f"{'page':40} {'cold ms':>9} {'warm ms':>9} {'x trivial':>10}  target")
    for name, value in figures["pages"].items():
        target = TARGETS["page_ms"]
        print(f"{name:40} {value['cold_ms']:>9.1f} {value['warm_ms']:>9.1f} {value['warm_ms'] / trivial:>10.1f}  "
              f"<{target:g}: cold {mark(value['cold_ms'], target)}, warm {mark(value['warm_ms'], target)}")
    value = figures["trivial"]
    print(f"{'trivial page ' + TRIVIAL + ' (floor)':40} {value['cold_ms']:>9.1f} {value['warm_ms']:>9.1f} {1.0:>10.1f}")
    for kind in ("xlsx", "csv"):
        value = figures[kind]
        verdict = f"<{TARGETS['export_s']:g} s: {mark(value['warm_s'], TARGETS['export_s'])}" if kind == "xlsx" else ""
        print(f"gradebook .{kind}: first {value['cold_s']} s, median {value['warm_s']} s, "
              f"{value['bytes'] / 1024:.0f} KiB  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=2_000)
    parser.add_argument("--assignments", type=int, default=10)
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--build-data", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.build_data:
        print(json.dumps(build_data(args.learners, args.assignments, args.attempts)))
        return

    url = pg_url(PG_DB)
    reuse = args.keep and _size(url) == args.learners
    data = Path(tempfile.gettempdir()) / "academy-bench-gradebook"
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ACADEMY_ENV": "development", "PATH": f"{BIN}:{os.environ['PATH']}",
           "ACADEMY_DATA_DIR": str(data), "ACADEMY_DATABASE_URL": url}
    env.pop("ACADEMY_BROKER_URL", None)  # the embedded queue: nothing is graded here
    build: dict[str, Any] = {"learners": args.learners, "assignments": args.assignments, "attempts": args.attempts}
    if reuse:
        log("reusing the database")
        build["reused"] = True
        academy(env, "db", "upgrade")
    else:
        pg_execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        pg_execute(f'CREATE DATABASE "{PG_DB}"')
        academy(env, "init", "--skip-solution-check")  # grading the solutions is not what is measured
        academy(env, "create-user", TEACHER[0], "--role", "instructor", stdin=f"{TEACHER[1]}\n{TEACHER[1]}\n")
        log(f"building {args.learners} learners ...")
        done = subprocess.run([str(BIN / "python"), __file__, "--build-data", "--learners", str(args.learners),
                               "--assignments", str(args.assignments), "--attempts", str(args.attempts)],
                              env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"building the course failed:\n{done.stderr[-3000:]}")
        build["data"] = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        figures = {"build": build, "targets": TARGETS, **measure(env, args.requests)}
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                pg_execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
    report(figures)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
