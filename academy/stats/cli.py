"""``academy stats``: the completion statistics on the command line (the same JSON as the API)."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--by", "dimension", default=None, help="Group by: track, course, cohort, company, region, industry, "
                                                      "job_role or month.")
@click.option("--track", default=None, help="Track id.")
@click.option("--course", default=None, help="Course id.")
@click.option("--cohort", default=None, help="Cohort id.")
@click.option("--company", default=None, help="Company business registration number (XXX-XX-XXXXX) or id.")
@click.option("--region", default=None, help="Region code (for example gumi, pohang).")
@click.option("--industry", default=None, help="Industry code (for example battery, steel).")
@click.option("--job-role", "job_role", default=None, help="Job role code (for example quality).")
@click.option("--from", "date_from", default=None, help="Enrolled on or after this date (YYYY-MM-DD, KST).")
@click.option("--to", "date_to", default=None, help="Enrolled on or before this date (YYYY-MM-DD, KST).")
@click.option("--refresh/--no-refresh", default=False, help="Rebuild the summary tables first (otherwise only "
                                                             "when they were never built).")
@with_appcontext
def stats_command(as_json: bool, dimension: str | None, track: str | None, course: str | None, cohort: str | None,
                  company: str | None, region: str | None, industry: str | None, job_role: str | None,
                  date_from: str | None, date_to: str | None, refresh: bool) -> None:
    """Completion statistics: the funnel (enrolled, started, submitted, passed, completed) for the filters given."""
    from flask_babel import force_locale

    from academy.errors import AcademyError
    from academy.extensions import db
    from academy.stats import queries
    from academy.stats.page import recount
    from academy.stats.refresh import last_refresh

    with force_locale("ko"):
        try:
            if dimension is not None:
                queries.check_dimension(dimension)
            filters = queries.parse_filters(db.session, {
                "track": track, "course": course, "cohort": cohort, "company": company, "region": region,
                "industry": industry, "job_role": job_role, "from": date_from, "to": date_to})
        except AcademyError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        if refresh or last_refresh(db.session) is None:
            recount(db.session)
            db.session.commit()
        body = queries.summary(db.session, filters, dimension)
        state = last_refresh(db.session)
        body["refreshed_at"] = state.refreshed_at.isoformat() if state else None
    if as_json:
        click.echo(json.dumps(body, ensure_ascii=False, default=str))
        return
    if dimension is None:
        click.echo("  ".join(f"{stage}={body['funnel'][stage]}" for stage in queries.STAGES))
        rate = body["completion"]["rate"]
        click.echo(f"completion rate: {'-' if rate is None else f'{100 * rate:.1f}%'}; median days to complete: "
                   f"{body['completion']['median_days'] or '-'}")
    else:
        for row in body["rows"]:
            click.echo(f"{row['label']}: " + "  ".join(f"{s}={row['funnel'][s]}" for s in queries.STAGES))
