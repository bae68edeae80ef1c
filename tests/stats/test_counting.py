"""Counting each learner once without grouping by learner: the figures from random summary rows (learners with
seats in several tracks, some enrolled on the same day) against the same figures counted by brute force."""

from __future__ import annotations

import datetime as dt
import random
import statistics
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert

from academy.extensions import db
from academy.stats import queries
from academy.stats.models import LearnerCourse, Refresh
from academy.stats.queries import STAGES, Filters
from academy.stats.refresh import ACTIVITY_WEEKS, _add_up_days, _add_up_months, _add_up_seats

NOW = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 11, 20)
TRACKS = {1: (11, 12), 2: (21, 22, 23), 3: (31,)}  # track -> its courses
COHORTS = {1: (101, 102), 2: (201,), 3: (301, 302)}
DAYS = [dt.date(2026, 3, 2), dt.date(2026, 5, 1), dt.date(2026, 5, 2), dt.date(2026, 8, 31), dt.date(2026, 11, 9)]


def _rows(seed: int) -> list[dict[str, Any]]:
    """Learner-course rows of 60 learners, each with seats in one to three tracks (often on one day)."""
    rng = random.Random(seed)
    rows = []
    for user_id in range(1, 61):
        person = {"company_id": rng.choice([None, 7, 8, 9]), "region": rng.choice([None, "gumi", "pohang"]),
                  "industry": rng.choice(["battery", "steel"]), "job_role": rng.choice(["quality", "production"])}
        for track_id in rng.sample(sorted(TRACKS), rng.randint(1, 3)):
            day = rng.choice(DAYS)
            seat = {**person, "user_id": user_id, "track_id": track_id, "cohort_id": rng.choice(COHORTS[track_id]),
                    "enrolled_on": day, "enrolled_month": day.strftime("%Y-%m"),
                    "completed_track": rng.random() < 0.2}
            for course_id in TRACKS[track_id]:
                started = rng.random() < 0.7
                submitted = started and rng.random() < 0.7
                passed = submitted and rng.random() < 0.6
                done = passed and rng.random() < 0.5
                rows.append({**seat, "course_id": course_id, "started": started, "submitted": submitted,
                             "passed": passed, "completed_course": done,
                             "days_to_complete": round(rng.uniform(1, 90), 3) if done else None,
                             "lab_hours": round(rng.uniform(0, 9), 4) if started else 0.0,
                             "gpu_hours": round(rng.uniform(0, 3), 4) if started else 0.0, "gpu_shared_hours": 0.0,
                             "weeks": rng.getrandbits(ACTIVITY_WEEKS) if started and rng.random() < 0.5 else 0})
    return rows


def _in_scope(row: dict[str, Any], filters: Filters) -> bool:
    for key, column in (("track", "track_id"), ("course", "course_id"), ("cohort", "cohort_id"),
                        ("company", "company_id"), ("region", "region"), ("industry", "industry"),
                        ("job_role", "job_role")):
        value = getattr(filters, key)
        if value is not None and row[column] != value:
            return False
    return ((filters.date_from is None or row["enrolled_on"] >= filters.date_from)
            and (filters.date_to is None or row["enrolled_on"] <= filters.date_to))


def _by_hand(rows: list[dict[str, Any]], filters: Filters, dimension: str | None) -> dict[Any, dict[str, int]]:
    """Per group: the learners with a row in scope, and those of them with each stage in a row in scope."""
    column = {None: None, "track": "track_id", "course": "course_id", "cohort": "cohort_id",
              "company": "company_id", "month": "enrolled_month"}.get(dimension, dimension)
    learners: dict[Any, dict[int, set[str]]] = {}
    for row in rows:
        if _in_scope(row, filters):
            reached = learners.setdefault(row[column] if column else None, {}).setdefault(row["user_id"], set())
            reached.update(stage for stage in STAGES[1:] if row[stage])
    return {key: {"enrolled": len(people),
                  **{stage: sum(stage in reached for reached in people.values()) for stage in STAGES[1:]}}
            for key, people in learners.items()}


CASES = [Filters(), Filters(track=2), Filters(course=21), Filters(cohort=101), Filters(company=7),
         Filters(region="gumi"), Filters(industry="steel", job_role="quality"), Filters(region=None, company=8),
         *[Filters(date_from=start, date_to=end) for start, end in (
             (DAYS[1], DAYS[3]), (DAYS[2], None), (None, DAYS[2]), (DAYS[1], DAYS[1]), (DAYS[2], DAYS[2]),
             (dt.date(2026, 5, 2), dt.date(2026, 11, 30)), (dt.date(2026, 6, 1), dt.date(2026, 6, 30)),
             # whole months with days at one end, the other or both (stats_month_funnel and the seats together)
             (dt.date(2026, 3, 1), dt.date(2026, 8, 31)), (dt.date(2026, 3, 2), dt.date(2026, 9, 15)),
             (dt.date(2026, 5, 2), dt.date(2026, 8, 30)), (None, dt.date(2026, 8, 31)), (dt.date(2026, 5, 1), None),
             (dt.date(2026, 4, 20), dt.date(2026, 5, 31)), (dt.date(2026, 5, 2), dt.date(2026, 6, 30)),
             # partial months from their seats added, or the month whole and the days outside taken off
             (dt.date(2026, 8, 20), dt.date(2026, 11, 30)), (dt.date(2026, 3, 2), dt.date(2026, 11, 9)),
             (dt.date(2026, 3, 3), dt.date(2026, 11, 8)))],
         Filters(region="pohang", date_from=DAYS[1]), Filters(track=1, date_from=DAYS[2], date_to=DAYS[3]),
         Filters(company=9, date_to=DAYS[3]), Filters(course=12, industry="battery", date_from=DAYS[1])]


@pytest.mark.parametrize("seed", [1, 2])
def test_learners_are_counted_once_as_by_hand(app: Flask, seed: int) -> None:
    rows = _rows(seed)
    with app.app_context():
        db.session.execute(insert(LearnerCourse), rows)
        _add_up_seats(db.session)
        _add_up_days(db.session)
        _add_up_months(db.session)
        db.session.add(Refresh(id=1, refreshed_at=NOW))
        db.session.flush()
        for filters in CASES:
            whole = _by_hand(rows, filters, None).get(None, dict.fromkeys(STAGES, 0))
            assert queries.funnel(db.session, filters) == whole, filters
            for dimension in queries.DIMENSIONS:
                counted = {r["key"]: r["funnel"] for r in queries.by(db.session, dimension, filters)}
                assert counted == _by_hand(rows, filters, dimension), (filters, dimension)
            # The page's scan: per learner attribute and per company at once (a period's whole months from the
            # month sums).
            for dimension in queries.LEARNER_DIMENSIONS:
                groups, companies = queries.counts_and_company_hours(db.session, dimension, filters)
                assert {g.key: {stage: getattr(g, stage) for stage in STAGES} for g in groups} == _by_hand(
                    rows, filters, dimension), (filters, dimension)
                per_company: dict[Any, list[float]] = {}
                for row in rows:
                    if _in_scope(row, filters):
                        sums = per_company.setdefault(row["company_id"], [0, 0, 0.0])
                        sums[0] += 1
                        sums[1] += row["completed_course"]
                        sums[2] += row["lab_hours"]
                assert {c.key: [c.taken, c.done] for c in companies} == {k: v[:2] for k, v in per_company.items()}, (
                    filters, dimension)
                assert {c.key: c.lab for c in companies} == pytest.approx({k: v[2] for k, v in per_company.items()})

            # Active learners per week: those with a row in scope active that week, once.
            weekly = queries.weekly_active(db.session, filters, weeks=ACTIVITY_WEEKS - 1, today=TODAY)
            monday = TODAY - dt.timedelta(days=TODAY.weekday())
            expected = []
            for entry in weekly:
                bit = (monday - dt.date.fromisoformat(entry["week"])).days // 7
                expected.append(len({r["user_id"] for r in rows if _in_scope(r, filters) and r["weeks"] >> bit & 1}))
            assert [entry["learners"] for entry in weekly] == expected, filters

            # The median days to complete, read as the middle rows: as statistics.median of every value.
            days = [r["days_to_complete"] for r in rows if _in_scope(r, filters) and r["days_to_complete"] is not None]
            completion = queries.completion(db.session, filters)
            assert completion["course_completions"] == len(days)
            assert completion["median_days"] == (round(statistics.median(days), 1) if days else None), filters

            # Learner-courses, completions and hours per course (of a period: added up per day).
            per_course: dict[int, list[float]] = {}
            for row in rows:
                if _in_scope(row, filters):
                    sums = per_course.setdefault(row["course_id"], [0, 0, 0.0, 0.0])
                    sums[0] += 1
                    sums[1] += row["completed_course"]
                    sums[2] += row["lab_hours"]
                    sums[3] += row["gpu_hours"]
            groups = queries.hour_groups(db.session, filters, "course")
            assert {g.key: [g.taken, g.done] for g in groups} == {k: s[:2] for k, s in per_course.items()}, filters
            assert {(g.key, "lab"): g.lab for g in groups} == pytest.approx(
                {(k, "lab"): s[2] for k, s in per_course.items()}), filters
            assert {(g.key, "gpu"): g.gpu for g in groups} == pytest.approx(
                {(k, "gpu"): s[3] for k, s in per_course.items()}), filters
        db.session.rollback()
