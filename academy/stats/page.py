"""The admin's statistics dashboard as plain data: every figure, each with the table it exports as."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from markupsafe import Markup, escape
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from academy.catalog.models import Course, Track
from academy.enrollment.models import Cohort
from academy.stats import queries
from academy.stats.export import Table
from academy.stats.models import CachedFigures, LearnerCourse, LearnerTrack
from academy.stats.queries import STAGES, Filters
from academy.stats.refresh import RefreshReport, last_refresh, rebuild
from academy.users import reference

TABLES = ("funnel", "by", "weekly", "hours_course", "hours_company", "hours_profile", "scores")


def stage_labels() -> dict[str, str]:
    """The funnel's stages in words."""
    return {"enrolled": _("Enrolled"), "started": _("Started a lab"), "submitted": _("Submitted"),
            "passed": _("Passed an assignment"), "completed_course": _("Completed a course"),
            "completed_track": _("Completed the track")}


@dataclass
class Dashboard:
    """Everything the statistics page shows for one set of filters."""

    filters: Filters
    dimension: str
    funnel: dict[str, int]
    completion: dict[str, Any]
    rows: list[dict[str, Any]]
    weekly: list[dict[str, Any]]
    hours_course: list[dict[str, Any]]
    hours_company: list[dict[str, Any]]
    hours_profile: dict[str, float]
    scores: list[dict[str, Any]] = field(default_factory=list)

    def chart_data(self, labels: dict[str, str]) -> dict[str, Any]:
        """What the page's script draws (``static/js/stats.js``), every label already in the user's language."""
        def hours(rows: list[dict[str, Any]]) -> dict[str, Any]:
            return {"labels": [str(r["label"]) for r in rows], "gpu": [r["gpu_hours"] for r in rows],
                    "shared": [r["gpu_shared_hours"] for r in rows], "lab": [r["lab_hours"] for r in rows],
                    "names": [_("GPU-hours"), _("Shared-GPU hours"), _("Lab hours")]}

        return {
            "funnel": {"labels": [labels[s] for s in STAGES], "values": [self.funnel[s] for s in STAGES],
                       "name": _("Learners")},
            "by": {"labels": [str(r["label"]) for r in self.rows],
                   "enrolled": [r["funnel"]["enrolled"] for r in self.rows],
                   "completed": [r["funnel"]["completed_course"] for r in self.rows],
                   "names": [labels["enrolled"], labels["completed_course"]]},
            "weekly": {"labels": [w["week"] for w in self.weekly], "values": [w["learners"] for w in self.weekly],
                       "name": _("Active learners")},
            "hours_course": hours(self.hours_course),
            "hours_company": hours(self.hours_company),
            "scores": [s["buckets"] for s in self.scores],
            "score_labels": [f"{10 * i}–{10 * (i + 1)}%" for i in range(10)],
            "score_name": _("Learners"),
        }

    def table(self, name: str) -> Table:
        """The export of one figure (``name`` in :data:`TABLES`)."""
        labels = stage_labels()
        stages = [labels[s] for s in STAGES]
        if name == "funnel":
            return Table("funnel", _("Completion funnel"), [_("Stage"), _("Learners")],
                         [[labels[s], self.funnel[s]] for s in STAGES])
        if name == "by":
            return Table(f"by-{self.dimension}", queries.dimension_label(self.dimension),
                         [queries.dimension_label(self.dimension), *stages],
                         [[r["label"], *[r["funnel"][s] for s in STAGES]] for r in self.rows])
        if name == "weekly":
            return Table("weekly-active", _("Active learners per week"), [_("Week of"), _("Learners")],
                         [[w["week"], w["learners"]] for w in self.weekly])
        hours_header = [_("Lab hours"), _("GPU-hours"), _("Shared-GPU hours")]
        if name == "hours_course":
            return Table("hours-by-course", _("Lab and GPU use by course"), [_("Course"), *hours_header],
                         [[r["label"], r["lab_hours"], r["gpu_hours"], r["gpu_shared_hours"]]
                          for r in self.hours_course])
        if name == "hours_company":
            return Table("hours-by-company", _("Lab and GPU use by company"), [_("Company"), *hours_header],
                         [[r["label"], r["lab_hours"], r["gpu_hours"], r["gpu_shared_hours"]]
                          for r in self.hours_company])
        if name == "hours_profile":
            return Table("hours-by-profile", _("Lab use by environment"), [_("Lab environment"), _("Hours")],
                         [[_("CPU and GPU labs, all hours"), self.hours_profile["lab_hours"]],
                          [_("Whole GPU (GPU-hours)"), self.hours_profile["gpu_hours"]],
                          [_("Shared GPU (hours)"), self.hours_profile["gpu_shared_hours"]]])
        if name == "scores":
            return Table("score-distribution", _("Score distribution per assignment"),
                         [_("Course"), _("Assignment"), *[f"{10 * i}–{10 * (i + 1)}%" for i in range(10)]],
                         [[s["course"], s["title"], *s["buckets"]] for s in self.scores])
        raise KeyError(name)


def build(session: Session, filters: Filters, dimension: str = "region", *, locale: str = "ko") -> Dashboard:
    """Every figure of the page for ``filters``, grouped by ``dimension`` where grouped."""
    return build_locales(session, filters, dimension, (locale,))[locale]


def build_locales(session: Session, filters: Filters, dimension: str, locales: tuple[str, ...]
                  ) -> dict[str, Dashboard]:
    """:func:`build` in each of ``locales``: the figures counted once, then labelled in each language."""
    from flask_babel import force_locale

    queries.check_dimension(dimension)
    # Fewer scans of the summary table, same figures: grouped by an attribute of the learner, the groups'
    # funnels add up to the whole one; the sums per course add up to the totals.
    if dimension in queries.LEARNER_DIMENSIONS:  # the groups and the companies from one scan
        counted, companies = queries.counts_and_company_hours(session, dimension, filters)
        funnel = None
    else:
        counted = queries.by_counts(session, dimension, filters)
        companies = queries.hour_groups(session, filters, "company")
        funnel = queries.funnel(session, filters)
    courses = queries.hour_groups(session, filters, "course")
    counts = (sum(g.taken for g in courses), sum(g.done for g in courses))
    completion = queries.completion(session, filters, counts=counts)
    weekly = queries.weekly_active(session, filters)
    scores = queries.score_buckets(session, filters)
    boards = {}
    for locale in locales:
        with force_locale(locale):
            rows = queries.by(session, dimension, filters, locale=locale, counts=counted)
            boards[locale] = Dashboard(
                filters=filters, dimension=dimension,
                funnel=queries.funnel_of(rows) if funnel is None else funnel,
                completion=completion,
                rows=rows[:30],
                weekly=weekly,
                hours_course=queries.lab_hours(session, filters, "course", locale=locale, groups=courses),
                hours_company=queries.lab_hours(session, filters, "company", locale=locale, groups=companies),
                hours_profile=queries.hours_total(courses),
                scores=queries.score_distribution(session, filters, locale=locale, buckets=scores),
            )
    return boards


FIGURES = ("funnel", "completion", "rows", "weekly", "hours_course", "hours_company", "hours_profile", "scores")
DEFAULT_DIMENSION = "region"


def _key(filters: Filters, dimension: str, locale: str) -> str:
    view = {"filters": filters.as_query(), "by": dimension, "locale": locale}
    return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()


def cached(session: Session, filters: Filters, dimension: str = DEFAULT_DIMENSION, *, locale: str = "ko"
           ) -> Dashboard:
    """:func:`build`, answered from the figures kept for this view since the last rebuild when there are some.

    Keeps what it computes (in the caller's transaction: the caller commits); two processes computing the
    same view at once keep one answer, both right.
    """
    queries.check_dimension(dimension)
    state = last_refresh(session)
    if state is None:
        return build(session, filters, dimension, locale=locale)
    row = session.get(CachedFigures, _key(filters, dimension, locale))
    if row is not None and row.refreshed_at == state.refreshed_at:
        body = row.body
        return Dashboard(filters=filters, dimension=dimension, **{name: body[name] for name in FIGURES})
    board = build(session, filters, dimension, locale=locale)
    _keep(session, board, locale, state.refreshed_at, row)
    return board


def _keep(session: Session, board: Dashboard, locale: str, refreshed_at: Any, row: CachedFigures | None = None
          ) -> None:
    """Keep ``board``'s figures for its view (``row``: the stale ones kept for it, if any)."""
    body = {name: getattr(board, name) for name in FIGURES}
    try:
        with session.begin_nested():
            if row is None:
                session.add(CachedFigures(key=_key(board.filters, board.dimension, locale),
                                          refreshed_at=refreshed_at, body=body))
            else:
                row.refreshed_at, row.body = refreshed_at, body
            session.flush()
    except IntegrityError:
        pass  # another process kept the same figures first


def precomputed_views(session: Session) -> list[Filters]:
    """The views computed at each rebuild besides the landing one: each track, course, region, industry and job
    role that has learners, alone (the filters an admin changes to most; the large ones too).  Any other view
    (a company, a cohort, a period, a combination) is computed on its first request."""
    views = []
    for key, column in (("track", LearnerTrack.track_id), ("course", LearnerCourse.course_id),
                        ("region", LearnerTrack.region), ("industry", LearnerTrack.industry),
                        ("job_role", LearnerTrack.job_role)):
        values = session.scalars(select(column).where(column.is_not(None)).distinct().order_by(column))
        views += [Filters(**{key: value}) for value in values]
    return views


def warm(session: Session, locales: tuple[str, ...] = ("ko", "en"), *, precompute: bool = True) -> int:
    """After a rebuild: forget the old figures and compute the view admins land on and, with ``precompute``,
    those of :func:`precomputed_views`, in each language (counted once for all).  Returns how many views (in
    one language) it computed."""
    session.execute(delete(CachedFigures))
    state = last_refresh(session)
    if state is None:
        return 0
    views = [Filters(), *(precomputed_views(session) if precompute else [])]
    for filters in views:
        for locale, board in build_locales(session, filters, DEFAULT_DIMENSION, locales).items():
            _keep(session, board, locale, state.refreshed_at)
    return len(views)


def recount(session: Session) -> RefreshReport:
    """Rebuild the summary tables and compute the kept views again (:func:`warm`; the job, the button, the
    command)."""
    report = rebuild(session)
    warm(session)
    return report


def filter_choices(session: Session, locale: str) -> dict[str, list[tuple[str, str]]]:
    """The options of each filter: (value as in the query string, text)."""
    choices: dict[str, list[tuple[Any, str]]] = {
        "track": [(t.id, t.title(locale)) for t in session.scalars(select(Track).order_by(Track.position, Track.id))],
        "course": [(c.id, c.title(locale)) for c in session.scalars(select(Course).order_by(Course.track_id,
                                                                                         Course.position))],
        "cohort": [(c.id, c.name) for c in session.scalars(select(Cohort).order_by(Cohort.starts_at.desc())
                                                           .limit(200))],
        "company": queries.company_options(session),
        "region": [(k, str(v)) for k, v in reference.REGIONS.items()],
        "industry": [(k, str(v)) for k, v in reference.INDUSTRIES.items()],
        "job_role": [(k, str(v)) for k, v in reference.JOB_ROLES.items()],
    }
    return {name: [(str(value), text) for value, text in options] for name, options in choices.items()}


@dataclass(frozen=True)
class FilterOptions:
    """One filter's ``<option>`` elements, rendered once (the company filter has one per company: 2,000 of them
    rendered by the template took a fifth of a warm page's time)."""

    options: tuple[tuple[str, str], ...]  # (value, text), as :func:`filter_choices` gives them
    rendered: tuple[str, ...]
    positions: dict[str, int]

    @classmethod
    def of(cls, options: list[tuple[str, str]]) -> FilterOptions:
        return cls(options=tuple(options), rendered=tuple(_option(value, text) for value, text in options),
                   positions={value: i for i, (value, _text) in enumerate(options)})

    def html(self, chosen: str | None) -> Markup:
        """The options, ``chosen`` (a value, as in the query string) marked selected."""
        i = self.positions.get(chosen) if chosen else None
        if i is None:
            return Markup("".join(self.rendered))  # noqa: S704 - every value and text escaped by _option
        selected = _option(*self.options[i], selected=True)
        return Markup("".join((*self.rendered[:i], selected, *self.rendered[i + 1:])))  # noqa: S704 - as above


def _option(value: str, text: str, *, selected: bool = False) -> str:
    """One ``<option>``, its value and text escaped."""
    return f'<option value="{escape(value)}"{" selected" if selected else ""}>{escape(text)}</option>'


def filter_options(session: Session, locale: str, stamp: Any, kept: dict[Any, Any]) -> dict[str, FilterOptions]:
    """:func:`filter_choices` rendered as options, computed once per rebuild (``stamp``, when the figures were
    counted) and language, and kept in ``kept`` (the portal process's).  The figures are as of their rebuild, and
    so are the choices to filter them by: a company or cohort added since has no figures yet, and is offered
    from the next rebuild (every ten minutes, or "count again now")."""
    key = (locale, stamp)
    options = kept.get(key)
    if options is None:
        if any(other != stamp for _locale, other in list(kept)):
            kept.clear()  # an older rebuild's
        options = {name: FilterOptions.of(choices) for name, choices in filter_choices(session, locale).items()}
        kept[key] = options
    return options
