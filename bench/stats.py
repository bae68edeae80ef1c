"""The province's statistics at scale: page and command times against the same app's trivial page.

Run from the repository root with the portal's environment::

    .venv/bin/python bench/stats.py [--learners 100000] [--companies 2000] [--courses 40]
                                    [--sqlite-learners 10000] [--skip-sqlite] [--keep [--skip-rebuild]] [--requests 15]
                                    [--json]

What it does, in one run:

1. **Build.** For PostgreSQL (``--pg-admin-url``, default the local server) a scratch database
   ``academy_bench_stats``, and for SQLite a file in a temporary data directory: ``academy init``
   (the shipped catalogue), then ``academy synth --learners N --companies C --courses K`` (deterministic,
   seed 1: companies across the regions, cohorts, enrollments, labs, graded submissions, completions and
   certificates), then ``academy stats --refresh`` (the summary tables and the figures kept per view), each
   timed.  With ``--keep`` the PostgreSQL database is kept and reused by the next run when it holds the same
   size (building 100,000 learners takes minutes); ``--skip-rebuild`` then keeps its summary tables too and only
   computes the kept figures again (``page.warm``, as a rebuild does), so that the pages can be measured again
   within minutes.
2. **Command.** ``academy stats --json`` and ``academy stats --json --by region --industry battery`` (median of three).
3. **Pages**, through gunicorn with 2 workers (``wsgi:app``) on a free loopback port, signed in with real
   sessions: the admin's dashboard (``/admin/``) and six kinds of filter change (track, course, company, region,
   industry with job role, a period), each with ``COLDS`` different values: the median of their first requests
   ("cold"; the slowest is printed too) and the median of ``--requests`` more of the first ("warm"); the
   learner dashboard of ``COLDS`` typical learners (around the median number of enrollments; target), cold and
   warm the same way, and of the learner with the most completions (the worst case); and, as the floor, the
   trivial page of the same app: the certificate verification form (``/verify``) for the same signed-in
   learner (session, account, menu and layout, no figures), and the bare health check (``/healthz``).
4. **Throughput.** 8 client threads for 5 s each against the learner dashboard and the trivial page:
   requests per second and their ratio.

Targets (issue 14): dashboard < 300 ms and a filter change < 150 ms on PostgreSQL, learner dashboard < 50 ms,
learner dashboard rps >= 40 % of the trivial page's.  For comparison, nbgrader's formgrader needs 28 s to
list 1,126 submissions.  With ``--json`` the last line of standard output is one JSON object of every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from harness import (
    BIN,
    PG_ADMIN_URL,
    academy,
    cold_and_warm,
    colds_and_warm,
    gunicorn,
    in_the_app,
    log,
    pg_execute,
    pg_url,
    signed_in,
)

PG_DB = "academy_bench_stats"
ADMIN = ("bench-admin@example.kr", "Gyeongbuk-stats-2026!")
LEARNER_PASSWORD = "Pohang-learner-2026!"
TRIVIAL = "/verify"
#: The tables a rebuild rewrites (``academy.stats.refresh``): vacuumed after it when autovacuum is off.
SUMMARY_TABLES = ["stats_learner_course", "stats_learner_track", "stats_best_score", "stats_course_day"]
#: Different views of each kind measured cold (each new to the server).
COLDS = 5
TARGETS = {"dashboard_ms": 300.0, "filter_ms": 150.0, "learner_ms": 50.0, "rps_share": 0.40}


def _pg_size(url: str) -> int | None:
    """Learners in an existing bench database, or None when there is none."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM \"user\" WHERE email LIKE '%synth.academy.kr'"))
                       .scalar() or 0)
    except Exception:  # noqa: BLE001 - no database yet
        return None
    finally:
        with contextlib.suppress(Exception):
            engine.dispose()


def _pg_setting(url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(f"SHOW {name}")).scalar())
    finally:
        engine.dispose()


def _pg_vacuum(url: str, tables: list[str]) -> float:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            for table in tables:
                conn.execute(text(f"VACUUM {table}"))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _has_admin(env: dict[str, str]) -> bool:
    code = f"""
import json
from sqlalchemy import select
from academy import create_app
from academy.extensions import db
from academy.users.models import User
app = create_app()
with app.app_context():
    print(json.dumps(db.session.scalar(select(User.id).where(User.email == {ADMIN[0]!r})) is not None))
"""
    return bool(in_the_app(env, code, "could not look for the bench admin"))


def _warm_kept(env: dict[str, str]) -> float:
    """Forget the kept figures and compute those a rebuild computes (``page.warm``), without rebuilding."""
    code = """
import json, time
from academy import create_app
from academy.extensions import db
from academy.stats import page
app = create_app()
with app.test_request_context():
    started = time.perf_counter()
    page.warm(db.session)
    db.session.commit()
    print(json.dumps(time.perf_counter() - started))
"""
    return float(in_the_app(env, code, "could not compute the kept figures"))


def build(env: dict[str, str], *, learners: int, companies: int, courses: int, reuse: bool,
          rebuild: bool = True) -> dict[str, Any]:
    """``academy init`` + ``synth`` + ``stats --refresh`` into the database of ``env``; returns the times.

    ``rebuild=False`` (a reused database only): the summary tables as they are, the kept figures forgotten and
    computed again as a rebuild does (``page.warm``), so that the pages' first requests are as after a rebuild.
    """
    figures: dict[str, Any] = {"learners": learners}
    if reuse:
        log(f"reusing the database ({learners} learners)")
        figures["reused"] = True
        academy(env, "db", "upgrade")  # not `academy init`: it would deactivate the synthetic tracks
    else:
        seconds, _ = academy(env, "init", "--skip-solution-check")  # not grading the solutions: not measured here
        figures["init_s"] = round(seconds, 1)
        log(f"init {seconds:.1f} s; synth {learners} learners ...")
        seconds, out = academy(env, "synth", "--learners", str(learners), "--companies", str(companies),
                               "--courses", str(courses), "--seed", "1", "--json")
        figures["synth_s"] = round(seconds, 1)
        with contextlib.suppress(ValueError, IndexError):
            figures["synth"] = json.loads(out.strip().splitlines()[-1])
        log(f"synth {seconds:.1f} s")
    if reuse and not rebuild:
        seconds = _warm_kept(env)
        figures["warm_s"] = round(seconds, 1)
        log(f"summary tables kept; the kept figures computed again (page.warm) in {seconds:.1f} s")
    else:
        seconds, _ = academy(env, "stats", "--refresh", "--json")
        figures["refresh_s"] = round(seconds, 1)
        log(f"stats --refresh {seconds:.1f} s")
    url = env.get("ACADEMY_DATABASE_URL", "")
    if "refresh_s" in figures and url.startswith("postgresql") and _pg_setting(url, "autovacuum") == "off":
        # A server without autovacuum keeps every rebuild's dead rows: reclaim them as autovacuum would have.
        seconds = _pg_vacuum(url, SUMMARY_TABLES)
        figures["vacuum_s"] = round(seconds, 1)
        log(f"autovacuum is off on this server: VACUUM of the summary tables {seconds:.1f} s")
    if not reuse or not _has_admin(env):  # a reused database whose first build stopped early has none
        academy(env, "create-user", ADMIN[0], "--role", "admin", stdin=f"{ADMIN[1]}\n{ADMIN[1]}\n")
    return figures


def prepare_people(env: dict[str, str]) -> dict[str, str]:
    """Sign-in-able learners: ``COLDS`` typical ones (around the median number of enrollments) and the heaviest
    (the most completions); and the bench admin's consent (an account made by create-user has none yet)."""
    code = f"""
import json
from sqlalchemy import func, select
from academy import create_app
from academy.completion.models import Completion
from academy.db import utcnow
from academy.enrollment.models import Enrollment
from academy.extensions import db
from academy.users.models import User
from academy.users.passwords import hash_password
app = create_app()
with app.app_context():
    admin = db.session.scalar(select(User).where(User.email == {ADMIN[0]!r}))
    admin.consent_at = admin.consent_at or utcnow()
    heavy = db.session.scalar(select(Completion.user_id).group_by(Completion.user_id)
                              .order_by(func.count().desc(), Completion.user_id).limit(1))
    counts = sorted(db.session.execute(select(func.count(), Enrollment.user_id).group_by(Enrollment.user_id)))
    middle = len(counts) // 2
    typical = [uid for _, uid in counts[middle:middle + {COLDS}]]
    emails = {{"typical": []}}
    for name, uid in [("typical", uid) for uid in typical] + [("heavy", heavy)]:
        user = db.session.get(User, uid)
        user.password_hash = hash_password({LEARNER_PASSWORD!r})
        user.consent_at = user.consent_at or utcnow()
        if name == "typical":
            emails[name].append(user.email)
        else:
            emails[name] = user.email
    db.session.commit()
    print(json.dumps(emails))
"""
    return in_the_app(env, code, "could not prepare the people")


def compute_times(env: dict[str, str], filters: dict[str, str]) -> dict[str, Any]:
    """Milliseconds to compute the dashboard's figures without kept ones: the default view, by company, and each
    filter change's view (``page.build``, the median of three, after one untimed run)."""
    code = f"FILTERS = {filters!r}\n" + """
import json, statistics, time
from academy import create_app
from academy.extensions import db
from academy.stats import page, queries
app = create_app()
with app.test_request_context():
    out = {}
    for name, dimension in (("default", "region"), ("by_company", "company")):
        started = time.perf_counter()
        page.build(db.session, queries.Filters(), dimension)
        out[name] = round((time.perf_counter() - started) * 1000, 1)
    out["filters"] = {}
    for name, query in FILTERS.items():
        filters = queries.parse_filters(db.session, dict(pair.split("=") for pair in query.split("&")))
        page.build(db.session, filters, "region")
        times = []
        for _ in range(3):
            started = time.perf_counter()
            page.build(db.session, filters, "region")
            times.append((time.perf_counter() - started) * 1000)
        out["filters"][name] = round(statistics.median(times), 1)
    print(json.dumps(out))
"""
    return in_the_app(env, code, "could not time the figures")


def filter_values(env: dict[str, str]) -> dict[str, list[str]]:
    """Query strings for each kind of filter change, ``COLDS`` different values each (the first one is the one
    timed warm), with real ids: the tracks, courses and companies with the most learners."""
    code = f"COLDS = {COLDS}\n" + """
import json
from sqlalchemy import select, func
from academy import create_app
from academy.extensions import db
from academy.stats.models import LearnerCourse
app = create_app()
with app.app_context():
    def largest(column):
        return list(db.session.scalars(select(column).where(column.is_not(None)).group_by(column)
                                       .order_by(func.count().desc(), column).limit(COLDS)))
    print(json.dumps({"track": largest(LearnerCourse.track_id), "course": largest(LearnerCourse.course_id),
                      "company": largest(LearnerCourse.company_id)}))
"""
    ids = in_the_app(env, code, "could not read the filter values")
    return {
        "track": [f"track={i}" for i in ids["track"]],
        "course": [f"course={i}" for i in ids["course"]],
        "company": [f"company={i}" for i in ids["company"]],
        "region": [f"region={r}" for r in ("gumi", "pohang", "andong", "gyeongju", "gimcheon")][:COLDS],
        "industry+job": [f"industry={i}&job_role={j}" for i, j in (
            ("battery", "quality"), ("auto_parts", "production"), ("steel", "maintenance"), ("electronics", "rnd"),
            ("energy", "office"))][:COLDS],
        # Whole months and periods that start and end inside one.
        "period": [f"from={a}&to={b}" for a, b in (
            ("2026-03-01", "2026-08-31"), ("2026-02-01", "2026-06-30"), ("2026-01-15", "2026-05-20"),
            ("2026-04-10", "2026-09-25"), ("2025-12-01", "2026-10-31"))][:COLDS],
    }


# --- the web server -------------------------------------------------------------------------------------------------


def throughput(make_session: Any, url: str, *, threads: int = 8, seconds: float = 5.0) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def run(index: int) -> None:
        browser = make_session()
        while time.monotonic() < stop:
            if browser.get(url).status_code == 200:
                counts[index] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def measure(env: dict[str, str], repeat: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    times = [academy(env, "stats", "--json")[0] for _ in range(3)]
    figures["cli_stats_s"] = round(statistics.median(times), 2)
    times = [academy(env, "stats", "--json", "--by", "region", "--industry", "battery")[0] for _ in range(3)]
    figures["cli_stats_by_s"] = round(statistics.median(times), 2)
    people = prepare_people(env)
    learner = people["typical"][0]
    filters = filter_values(env)
    figures["compute_ms"] = compute_times(env, {name: queries[0] for name, queries in filters.items()})
    with gunicorn(env) as base:
        admin = signed_in(base, *ADMIN)
        figures["dashboard"] = cold_and_warm(admin, base + "/admin/", repeat)
        figures["filters"] = {name: colds_and_warm([(admin, f"{base}/admin/?{query}") for query in queries], repeat)
                              for name, queries in filters.items()}
        figures["filter_warm_ms_max"] = max(f["warm_ms"] for f in figures["filters"].values())
        typical = [signed_in(base, email, LEARNER_PASSWORD) for email in people["typical"]]
        figures["learner_dashboard"] = colds_and_warm([(person, base + "/dashboard") for person in typical], repeat)
        person = typical[0]
        heavy = signed_in(base, people["heavy"], LEARNER_PASSWORD)
        figures["learner_dashboard_heaviest"] = cold_and_warm(heavy, base + "/dashboard", repeat)
        # The trivial page: the verification form, rendered for the same signed-in learner (session, account,
        # menu and layout, no figures); the health check (no session, no template) is the bare floor.
        figures["trivial"] = cold_and_warm(person, base + TRIVIAL, repeat)
        figures["healthz"] = cold_and_warm(requests.Session(), base + "/healthz", repeat)
        figures["rps_learner"] = round(throughput(lambda: signed_in(base, learner, LEARNER_PASSWORD),
                                                  base + "/dashboard"), 1)
        figures["rps_trivial"] = round(throughput(lambda: signed_in(base, learner, LEARNER_PASSWORD),
                                                  base + TRIVIAL), 1)
        figures["rps_share"] = round(figures["rps_learner"] / figures["rps_trivial"], 3) \
            if figures["rps_trivial"] else None
    return figures


def report(name: str, figures: dict[str, Any]) -> None:
    def mark(value: float | None, target: float, *, above: bool = False) -> str:
        if value is None:
            return "?"
        return "ok" if (value >= target if above else value < target) else "MISSED"

    trivial = figures["trivial"]["warm_ms"] or 1.0
    print(f"\n== {name}: {figures['build']['learners']:,} learners ==")
    build = figures["build"]
    rebuilt = (f"stats --refresh {build['refresh_s']} s" if "refresh_s" in build
               else f"no rebuild, kept figures computed again {build['warm_s']} s")
    print(f"build: init {build.get('init_s', '-')} s, synth {build.get('synth_s', '-')} s, {rebuilt}"
          + (f" (then VACUUM {build['vacuum_s']} s: autovacuum is off on this server)" if "vacuum_s" in build else ""))
    print(f"academy stats --json: {figures['cli_stats_s']} s; --by region --industry battery: "
          f"{figures['cli_stats_by_s']} s")
    print(f"computing the dashboard's figures without kept ones: default view {figures['compute_ms']['default']} ms, "
          f"by company {figures['compute_ms']['by_company']} ms (kept per view until the next rebuild; "
          f"'cold' below is the median of the first requests after the rebuild of {COLDS} views of each kind, "
          f"'slowest' the slowest of them; the default view is computed by the rebuild)")
    if "filters" in figures["compute_ms"]:
        print("computing each filter change's figures (warm caches): " + ", ".join(
            f"{name} {ms} ms" for name, ms in figures["compute_ms"]["filters"].items()))
    print(f"{'page':34} {'cold ms':>9} {'slowest':>9} {'warm ms':>9} {'x trivial':>10} {'target':>8}")
    rows = [("admin dashboard /admin/", figures["dashboard"], TARGETS["dashboard_ms"])]
    rows += [(f"  filter: {k}", v, TARGETS["filter_ms"]) for k, v in figures["filters"].items()]
    rows += [("learner dashboard (typical)", figures["learner_dashboard"], TARGETS["learner_ms"]),
             ("learner dashboard (most completions)", figures["learner_dashboard_heaviest"], None),
             (f"trivial page {TRIVIAL} (floor)", figures["trivial"], None),
             ("health check /healthz (no session)", figures["healthz"], None)]
    for label, value, target in rows:
        # The target holds for both: the first request of a view after a rebuild (cold) and the next ones (warm).
        verdict = "" if target is None else (f"<{target:g}: cold {mark(value['cold_ms'], target)}, "
                                             f"warm {mark(value['warm_ms'], target)}")
        slowest = f"{value['cold_max_ms']:.1f}" if value.get("colds", 1) > 1 else ""
        print(f"{label:34} {value['cold_ms']:>9.1f} {slowest:>9} {value['warm_ms']:>9.1f} "
              f"{value['warm_ms'] / trivial:>10.1f}  {verdict}")
    print(f"requests/s (8 threads, 2 gunicorn workers): learner dashboard {figures['rps_learner']}, trivial page "
          f"{figures['rps_trivial']}, share {figures['rps_share']} "
          f"({mark(figures['rps_share'], TARGETS['rps_share'], above=True)} >= {TARGETS['rps_share']})")


def run_backend(name: str, env: dict[str, str], args: argparse.Namespace, learners: int, reuse: bool
                ) -> dict[str, Any]:
    figures: dict[str, Any] = {"backend": name}
    figures["build"] = build(env, learners=learners, companies=max(3, args.companies * learners // args.learners),
                             courses=args.courses, reuse=reuse, rebuild=not args.skip_rebuild)
    figures.update(measure(env, args.requests))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=100_000)
    parser.add_argument("--companies", type=int, default=2_000)
    parser.add_argument("--courses", type=int, default=40)
    parser.add_argument("--sqlite-learners", type=int, default=10_000)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the PostgreSQL database")
    parser.add_argument("--skip-rebuild", action="store_true",
                        help="with a reused database: keep its summary tables, only compute the kept figures again")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {"targets": TARGETS}
    workdir = Path(tempfile.mkdtemp(prefix="academy-bench-stats-"))
    base_env = {**os.environ, "ACADEMY_ENV": "development", "PATH": f"{BIN}:{os.environ['PATH']}"}
    base_env.pop("ACADEMY_BROKER_URL", None)  # the embedded queue: nothing is graded here
    try:
        if not args.skip_postgresql:
            url = pg_url(PG_DB)
            size = _pg_size(url) if args.keep else None
            reuse = size == args.learners
            if not reuse:
                pg_execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
                pg_execute(f'CREATE DATABASE "{PG_DB}"')
            data = workdir / "pg"
            if args.keep:
                data = Path(tempfile.gettempdir()) / "academy-bench-stats-pg"
            data.mkdir(parents=True, exist_ok=True)
            env = {**base_env, "ACADEMY_DATA_DIR": str(data), "ACADEMY_DATABASE_URL": url}
            results["postgresql"] = run_backend("postgresql", env, args, args.learners, reuse)
            report("PostgreSQL", results["postgresql"])
            if not args.keep:
                pg_execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        if not args.skip_sqlite:
            data = workdir / "sqlite"
            data.mkdir()
            env = {**base_env, "ACADEMY_DATA_DIR": str(data)}
            results["sqlite"] = run_backend("sqlite", env, args, args.sqlite_learners, False)
            report("SQLite", results["sqlite"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
