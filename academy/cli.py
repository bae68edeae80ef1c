"""The ``academy`` command (also available as ``flask --app academy ...``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from academy.engine.grade import WORKERS_PER_CPU
from academy.stats.cli import stats_command
from academy.synth import synth_command
from academy.teaching.cli import gradebook_group


def main() -> None:
    """Entry point of the ``academy`` console script."""
    from academy import create_app

    group = FlaskGroup(create_app=lambda: create_app(), add_default_commands=True, add_version_option=False,
                       help="AI Saemaul Academy platform commands.")
    # Found on the group itself, a command is found without building the application first
    # (`academy grade` needs none). `flask --app academy ...` finds the same commands through
    # the `flask.commands` entry points in pyproject.toml.
    for command in COMMANDS:
        group.add_command(command)
    group.main(prog_name="academy")


@click.command("grade")
@click.option("--course", "course_dir", type=click.Path(path_type=Path),
              help="nbgrader course directory (holds source/NAME/).")
@click.option("--assignment", help="Assignment name: a folder under DIR/source/.")
@click.option("--student", default="learner", show_default=True, help="Student id used inside the grading job.")
@click.option("--feedback", "feedback_dir", type=click.Path(path_type=Path),
              help="Write the feedback HTML the learner would see into this directory.")
@click.option("--all", "grade_all", is_flag=True, help="Grade every DIR/submitted/STUDENT/NAME/.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help=f"Parallel jobs for --all [default: {WORKERS_PER_CPU} per CPU].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per student with --all).")
@click.argument("notebooks", nargs=-1, type=click.Path(path_type=Path))
def grade_command(course_dir: Path | None, assignment: str | None, student: str, feedback_dir: Path | None,
                  grade_all: bool, workers: int | None, as_json: bool, notebooks: tuple[Path, ...]) -> None:
    """Grade NOTEBOOK... (or every submission with --all) with nbgrader, in the grading sandbox."""
    from academy.engine.grade import run_grade

    raise click.exceptions.Exit(run_grade(course_dir, assignment, student, feedback_dir, grade_all, workers,
                                          as_json, notebooks))


@click.command("init")
@click.option("--skip-solution-check", is_flag=True,
              help="Do not grade each assignment's solution and learner version before loading it.")
@with_appcontext
def init_command(skip_solution_check: bool) -> None:
    """Create or upgrade the database and load courses/ (idempotent).

    Each course is checked before it is loaded; a course that fails is named with its notebook and cell,
    and the others load. Exit status 1 when a course was refused, 2 when nothing could be loaded.
    """
    from academy.bootstrap import run_init
    from academy.errors import AcademyError

    try:
        summary = run_init(check_solutions=not skip_solution_check)
    except AcademyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for line in summary.problems():
        click.echo(f"warning: {line}" if line in summary.notes else f"error: {line}", err=True)
    click.echo(f"database is at the latest migration; courses: {summary}")
    if summary.refused:
        sys.exit(1)


@click.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice(["learner", "instructor", "admin"]), default="learner", show_default=True)
@click.option("--name", default=None, help="Display name (defaults to the part of the email before @).")
@with_appcontext
def create_user_command(email: str, role: str, name: str | None) -> None:
    """Create an account; the password is read from standard input."""
    from academy.errors import AcademyError
    from academy.extensions import db
    from academy.users.models import Role
    from academy.users.services import create_user

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        user = create_user(db.session, email, password, Role(role), name=name)
    except AcademyError as exc:
        db.session.rollback()
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    db.session.commit()
    click.echo(f"created {user.role.value} {user.email} (id {user.id})")


@click.group("token")
def token_group() -> None:
    """Personal access tokens for the API."""


@token_group.command("create")
@click.argument("email")
@click.option("--scope", "scopes", multiple=True, help="A scope to grant (repeatable); default: read scopes.")
@click.option("--name", default="command line", show_default=True)
@click.option("--days", default=365, show_default=True, help="Days until the token expires (0: never).")
@with_appcontext
def token_create_command(email: str, scopes: tuple[str, ...], name: str, days: int) -> None:
    """Print a new personal access token for EMAIL."""
    from academy.errors import AcademyError
    from academy.extensions import db
    from academy.users.services import find_user_by_email
    from academy.users.tokens import create_token

    user = find_user_by_email(db.session, email)
    if user is None:
        click.echo(f"error: no account for {email}", err=True)
        sys.exit(2)
    try:
        _row, plain = create_token(db.session, user, name, list(scopes) or None, expires_in_days=days or None)
    except AcademyError as exc:
        db.session.rollback()
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    db.session.commit()
    click.echo(plain)


@click.group("completion")
def completion_group() -> None:
    """Course and track completions."""


@completion_group.command("recompute")
@click.option("--course", "course_slug", default=None, help="Only this course (its id in courses/).")
@click.option("--notify/--no-notify", default=False, show_default=True,
              help="Mail the learners whose completion was recorded or withdrawn.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@with_appcontext
def completion_recompute_command(course_slug: str | None, notify: bool, as_json: bool) -> None:
    """Judge every learner's completions again from scores and rules; changes only what differs."""
    import json

    from academy.catalog.services import get_course_by_slug
    from academy.completion.services import recompute
    from academy.errors import AcademyError
    from academy.extensions import db

    courses = None
    if course_slug is not None:
        try:
            courses = [get_course_by_slug(db.session, course_slug, include_inactive=True)]
        except AcademyError:
            click.echo(f"error: no course '{course_slug}'", err=True)
            sys.exit(2)
    report = recompute(db.session, courses=courses, notify=notify)
    db.session.commit()
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        click.echo(f"learners judged: {report.learners}; completions recorded: {report.recorded}, "
                   f"withdrawn: {report.withdrawn}; certificates issued: {report.certificates}")


@click.group("certificate")
def certificate_group() -> None:
    """Certificates of completion."""


@certificate_group.command("list")
@click.option("--status", type=click.Choice(["valid", "revoked"]), default=None, help="Only these.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_appcontext
def certificate_list_command(status: str | None, as_json: bool) -> None:
    """Every certificate, newest first: code, holder, title and status."""
    import json

    from sqlalchemy import select

    from academy.certificates.models import Certificate
    from academy.extensions import db

    query = select(Certificate).order_by(Certificate.issued_at.desc(), Certificate.id.desc())
    if status == "valid":
        query = query.where(Certificate.revoked_at.is_(None))
    elif status == "revoked":
        query = query.where(Certificate.revoked_at.is_not(None))
    for certificate in db.session.scalars(query).yield_per(500):
        if as_json:
            stated = certificate.statement()
            click.echo(json.dumps({"code": certificate.code, "holder": certificate.holder_name,
                                   "title": certificate.title_ko, "title_en": certificate.title_en,
                                   "kind": certificate.kind, "status": certificate.status,
                                   "completed_on": stated["completed_on"], "issued_at": stated["issued_at"],
                                   "user_id": certificate.user_id}, ensure_ascii=False))
        else:
            click.echo(f"{certificate.code}  {certificate.status:<7}  {certificate.holder_name}  "
                       f"{certificate.title_ko}")


@certificate_group.command("revoke")
@click.argument("code")
@click.option("--reason", required=True, help="Why (the learner is told).")
@with_appcontext
def certificate_revoke_command(code: str, reason: str) -> None:
    """Revoke the certificate CODE."""
    from academy.certificates.services import get_by_code, revoke
    from academy.errors import AcademyError
    from academy.extensions import db

    try:
        certificate = revoke(db.session, get_by_code(db.session, code), actor=None, reason=reason)
    except AcademyError as exc:
        db.session.rollback()
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    db.session.commit()
    click.echo(f"revoked {certificate.code}")


@certificate_group.command("new-key")
@with_appcontext
def certificate_new_key_command() -> None:
    """Make a new certificate signing key; older keys stay published so their credentials still verify."""
    from academy.certificates.keys import current_key, new_key

    data_dir = current_app.config["ACADEMY_SETTINGS"].data_dir
    path = new_key(data_dir)
    click.echo(f"new key {current_key(data_dir).kid} in {path}")


@click.command("worker")
@click.option("--concurrency", "-c", type=int, default=None, help="Grading processes (default: one per core).")
@click.option("--beat/--no-beat", default=None,
              help="Also run the sweeper that re-sends lost jobs (default: on with the embedded queue).")
@click.option("--loglevel", default="info", show_default=True)
@with_appcontext
def worker_command(concurrency: int | None, beat: bool | None, loglevel: str) -> None:
    """Run grading workers (Celery) for the configured queue."""
    from academy import create_app
    from academy.jobs import default_concurrency
    from academy.jobs.tasks import worker_celery

    settings = current_app.config["ACADEMY_SETTINGS"]
    celery = worker_celery(create_app)
    workers = concurrency or settings.grading_workers or default_concurrency()
    if beat is None:
        beat = settings.broker_url is None
    argv = ["worker", f"--loglevel={loglevel}", "--queues=academy", f"--concurrency={workers}",
            "--pool=prefork", "--without-gossip", "--without-mingle"]
    if beat:
        argv.append("--beat")
    # The worker runs as root on purpose: the sandbox gives each learner kernel its own
    # unprivileged uid, which needs root; Celery's advice against root does not apply.
    import warnings

    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning)
    click.echo(f"grading workers: {workers}, queue: {settings.broker_url or 'embedded (filesystem)'}, "
               f"sweeper: {'on' if beat else 'off'}")
    celery.worker_main(argv)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--skip-solution-check", is_flag=True,
              help="Load the courses without grading each assignment's solution first (as `academy init` can).")
@with_appcontext
def demo_command(host: str, port: int, skip_solution_check: bool) -> None:
    """Run the platform on 127.0.0.1 with sample tracks and demo accounts."""
    from academy.demo import run_demo

    run_demo(current_app._get_current_object(), host=host, port=port,  # type: ignore[attr-defined]
             check_solutions=not skip_solution_check)


#: Every ``academy`` command (also registered as ``flask.commands`` entry points).
COMMANDS = (init_command, create_user_command, token_group, completion_group, certificate_group, stats_command,
            demo_command, worker_command, grade_command, synth_command, gradebook_group)


if __name__ == "__main__":
    main()
