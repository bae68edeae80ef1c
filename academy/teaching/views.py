"""Course staff's pages: their home, a course's gradebook and rosters, one learner, question statistics."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select

from academy.catalog.models import Assignment, Course
from academy.enrollment.models import Cohort
from academy.extensions import db
from academy.grading.standing import STATUSES, learner_standings
from academy.permissions import can_manage_course
from academy.stats import export
from academy.teaching import nudges, questions, queue, risk, services
from academy.users.models import User
from academy.web.access import staff_required
from academy.web.labels import staff_standing_label
from academy.web.loaders import get_assignment_or_404

bp = Blueprint("teaching", __name__, url_prefix="/teach")


@bp.app_context_processor
def _labels() -> dict[str, Any]:
    return {"staff_standing_label": staff_standing_label}


def _course_or_404(course_id: int) -> Course:
    """The active course, when the signed-in user manages it (a 404 for others: nothing is revealed)."""
    course = db.session.get(Course, course_id)
    if course is None or not course.active or not can_manage_course(current_user, course):
        abort(404)
    return course


@bp.route("")
@staff_required
def home() -> Any:
    """Course staff's home: their courses and cohorts, what waits for them, links to every gradebook."""
    courses = services.courses_taught(db.session, current_user)
    at_risk = _risk_counts(courses)
    return render_template("teaching/home.html", courses=courses, at_risk=at_risk,
                           risky=[c for c in courses if at_risk[c.id]],
                           cohorts=services.cohorts_of(db.session, courses),
                           waiting=services.waiting_work(db.session, [c.id for c in courses]))


def _gradebook(course: Course, *, whole: bool = False) -> services.Gradebook:
    """The gradebook as the query string asks: one page of it, or every learner the filter keeps (``whole``)."""
    show = request.args.get("show", "all")
    sort = request.args.get("sort", "name")
    return services.build_gradebook(
        db.session, course, cohort_id=request.args.get("cohort", type=int),
        show=show if show in services.SHOWS else "all", search=request.args.get("q", "")[:100],
        sort=sort if sort in services.SORTS or (sort[:1] == "a" and sort[1:].isdigit()) else "name",
        descending=request.args.get("desc") == "1", page=request.args.get("page", 1, type=int),
        per_page=None if whole else services.PER_PAGE)


@bp.route("/courses/<id:course_id>/gradebook")
@staff_required
def gradebook(course_id: int) -> Any:
    """A course's learners × assignments, for every cohort or one (the cohort's roster)."""
    course = _course_or_404(course_id)
    book = _gradebook(course)
    cohorts = services.cohorts_of(db.session, [course], recent_only=False).get(course.track_id, [])
    return render_template("teaching/gradebook.html", book=book, cohorts=cohorts, args=request.args,
                           status_labels={status: staff_standing_label(status) for status in STATUSES})


@bp.route("/courses/<id:course_id>/gradebook.<any(csv, xlsx):fmt>")
@staff_required
def export_gradebook(course_id: int, fmt: str) -> Any:
    """The gradebook as shown (same cohort, filter and order), every page of it, as CSV or XLSX."""
    book = _gradebook(_course_or_404(course_id), whole=True)
    table = services.gradebook_table(book, locale=_locale(), status_label=staff_standing_label, header={
        "learner": _("Learner"), "email": _("Email"), "company": _("Company"), "cohort": _("Cohort"),
        "score": _("score"), "status": _("status"), "attempts": _("attempts"), "late_days": _("days late"),
        "passed": _("Assignments passed"), "completed": _("Course completed on")},
        title=_("Gradebook"))
    return _download(table, fmt)


@bp.route("/courses/<id:course_id>/at-risk")
@staff_required
def at_risk(course_id: int) -> Any:
    """Learners of the course's running cohorts who may not finish it, each with the reasons in words.

    Listed ``services.PER_PAGE`` at a time (``?page=``); the nudge to all of them goes to every page's learners.
    """
    course = _course_or_404(course_id)
    cohort_id = request.args.get("cohort", type=int)
    rows = _risk_rows(course, cohort_id)
    pages = max(1, -(-len(rows) // services.PER_PAGE))
    page = min(max(request.args.get("page", 1, type=int), 1), pages)
    cohorts = services.cohorts_of(db.session, [course], recent_only=False).get(course.track_id, [])
    sent = nudges.outcomes(db.session, course, cohort_id=cohort_id)
    return render_template("teaching/at_risk.html", course=course, rows=rows, cohorts=cohorts, cohort_id=cohort_id,
                           shown=rows[(page - 1) * services.PER_PAGE:page * services.PER_PAGE], page=page, pages=pages,
                           names={a.id: a.title(_locale()) for a in course.assignments},
                           nudged=nudges.latest_by_learner(sent), sent=sent[:50], sent_total=len(sent),
                           shares=nudges.shares(sent), nudge_text=_nudge_text(course),
                           # Translated once, filled in for each of the page's (many) stuck questions.
                           stuck_text=_("Failed %(question)s in %(assignment)s in %(n)d attempts in a row"))


def _risk_rows(course: Course, cohort_id: int | None = None) -> list[risk.RiskRow]:
    return risk.at_risk(db.session, course, cohort_id=cohort_id,
                        margin=current_app.config["ACADEMY_SETTINGS"].at_risk_margin_percent / 100)


def _risk_counts(courses: list[Course]) -> dict[int, int]:
    """Course id → learners at risk now, by the at-risk list's own rules (read from the gradebook's kept cells)."""
    margin = current_app.config["ACADEMY_SETTINGS"].at_risk_margin_percent / 100
    return {course.id: risk.count_at_risk(db.session, course, margin=margin) for course in courses}


def _nudge_text(course: Course) -> dict[str, str]:
    """The subject and message a nudge form starts with, in the instructor's language (they may edit both)."""
    title = course.title(_locale())
    return {"subject": _("How is %(course)s going?", course=title),
            "body": _("We have not seen you in %(course)s for a while. The next assignment is waiting for you in "
                      "the portal, and your lab opens with one click. If something is in the way, tell your "
                      "instructor: we are glad to help.", course=title)}


@bp.route("/courses/<id:course_id>/nudge", methods=["POST"])
@staff_required
def nudge(course_id: int) -> Any:
    """A nudge to one learner at risk or to all of those listed (form fields ``user``, ``subject``, ``body``)."""
    from academy.errors import AcademyError

    course = _course_or_404(course_id)
    cohort_id = request.form.get("cohort", type=int)
    back = url_for("teaching.at_risk", course_id=course.id, cohort=cohort_id)
    wanted = [int(v) for v in request.form.getlist("user") if v.isdigit()]
    reasons = {row.user.id: [r.code for r in row.reasons] for row in _risk_rows(course)}
    try:
        sent = nudges.send_nudges(db.session, course, wanted, request.form.get("subject", ""),
                                  request.form.get("body", ""), sender=current_user, reasons=reasons,
                                  link=url_for("catalog.course", slug=course.slug))
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(back, 303)
    db.session.commit()
    flash(ngettext("The nudge went to %(num)d learner.", "The nudge went to %(num)d learners.", len(sent)),
          "success")
    return redirect(back, 303)


@bp.route("/courses/<id:course_id>/learners/<id:user_id>")
@staff_required
def learner(course_id: int, user_id: int) -> Any:
    """One learner's attempts at every assignment of the course."""
    course = _course_or_404(course_id)
    person = db.session.get(User, user_id)
    if person is None:
        abort(404)
    assignments = [a for a in course.assignments if a.active]
    standings = learner_standings(db.session, person, assignments, cohort=None, staff=True, look_up_cohort=True)
    return render_template("teaching/learner.html", course=course, person=person, assignments=assignments,
                           standings=standings)


def _locale() -> str:
    from academy.i18n import current_locale

    return current_locale()


def _download(table: export.Table, fmt: str) -> Response:
    data, mimetype = export.encode(table, fmt)
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="academy-{table.name}.{fmt}"'
    return response


def _assignment_or_404(assignment_id: int) -> Assignment:
    assignment = get_assignment_or_404(assignment_id)
    if not can_manage_course(current_user, assignment.course):
        abort(404)
    return assignment


def _question_report(assignment: Assignment) -> tuple[questions.QuestionReport, Cohort | None]:
    """The report for everyone, or for one cohort's learners (``?cohort=``)."""
    cohort_id = request.args.get("cohort", type=int)
    cohort = db.session.get(Cohort, cohort_id) if cohort_id else None
    if cohort is not None and cohort.track_id != assignment.course.track_id:
        cohort = None
    learners = None if cohort is None else services.learner_ids(db.session, cohort)
    return questions.question_report(db.session, assignment, learners), cohort


@bp.route("/assignments/<id:assignment_id>/questions")
@staff_required
def question_statistics(assignment_id: int) -> Any:
    """Question statistics of one assignment: how each graded cell went, the tests failed most and why."""
    assignment = _assignment_or_404(assignment_id)
    report, cohort = _question_report(assignment)
    cohorts = services.cohorts_of(db.session, [assignment.course], recent_only=False).get(
        assignment.course.track_id, [])
    return render_template("teaching/questions.html", assignment=assignment, report=report, cohort=cohort,
                           cohorts=cohorts)


@bp.route("/assignments/<id:assignment_id>/questions.<any(csv, xlsx):fmt>")
@staff_required
def export_questions(assignment_id: int, fmt: str) -> Any:
    """The question statistics as CSV or XLSX."""
    report, _cohort = _question_report(_assignment_or_404(assignment_id))
    return _download(questions.question_table(report, {
        "title": _("Question statistics"), "question": _("Question"), "unnamed": _("Question %(n)d"),
        "max_score": _("Points"), "manual": _("Written answer"), "hidden": _("Hidden tests"),
        "learners": _("Learners"), "mean": _("Mean"), "mean_percent": _("Mean (%)"), "zero": _("No points"),
        "partial": _("Some points"), "full": _("Full points"), "waiting": _("Waiting for grading"),
        "failed_learners": _("Learners who failed"), "failed_attempts": _("Failing attempts"),
        "top_error": _("Most frequent error")}), fmt)


@bp.route("/courses/<id:course_id>/cohorts/<id:cohort_id>/announce", methods=["POST"])
@staff_required
def announce(course_id: int, cohort_id: int) -> Any:
    """An announcement to every learner of the cohort, in their inbox (and by mail)."""
    from academy.errors import AcademyError
    from academy.inbox.services import announce as send

    course = _course_or_404(course_id)
    cohort = db.session.get(Cohort, cohort_id)
    if cohort is None or cohort.track_id != course.track_id:
        abort(404)
    back = url_for("teaching.gradebook", course_id=course.id, cohort=cohort.id)
    learners = db.session.scalars(select(User).where(User.id.in_(services.learner_ids(db.session, cohort)))).all()
    try:
        sent = send(db.session, learners, request.form.get("subject", ""), request.form.get("body", ""),
                    sender=current_user, link=url_for("catalog.course", slug=course.slug),
                    audit_target=("cohort", cohort.id))
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(back, 303)
    db.session.commit()
    flash(ngettext("The announcement went to %(num)d learner.", "The announcement went to %(num)d learners.", sent),
          "success")
    return redirect(back, 303)


@bp.route("/queue")
@staff_required
def grading_queue() -> Any:
    """Written answers to grade and flagged attempts to decide, one at a time (``?course=``, ``?i=`` the place)."""
    courses = services.courses_taught(db.session, current_user)
    course_id = request.args.get("course", type=int)
    if course_id is not None and course_id not in {c.id for c in courses}:
        abort(404)
    found = queue.entries(db.session, [course_id] if course_id is not None else [c.id for c in courses])
    place = min(max(request.args.get("i", 0, type=int), 0), max(len(found) - 1, 0))
    current = queue.item(db.session, found[place], current_app.config["ACADEMY_DATA_DIR"]) if found else None
    at = partial(url_for, "teaching.grading_queue", course=course_id)
    return render_template("teaching/queue.html", courses=courses, course_id=course_id, total=len(found),
                           place=place, item=current, here=at(i=place),
                           previous=at(i=place - 1) if place > 0 else None,
                           following=at(i=place + 1) if place + 1 < len(found) else None)
