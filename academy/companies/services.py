"""Company contacts: appointing, requesting, deciding, revoking, and the report a contact reads.

Everything a contact sees is limited to their own company by :func:`company_of`, the one place
that answers "which company may this person see?"; the views and the API ask it and nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.catalog.models import Assignment, Course, Track
from academy.certificates.models import Certificate
from academy.companies.models import CompanyContact, ContactStatus
from academy.completion.models import Completion
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import Conflict, NotFound, ValidationFailed
from academy.grading.models import Submission, SubmissionStatus
from academy.grading.standing import course_pass_mark
from academy.labs.models import LabSession
from academy.mail.services import queue_mail
from academy.users.models import Company, User

NOTE_MAX = 500
LIVE = (ContactStatus.requested, ContactStatus.approved)


def company_of(session: Session, user: User | None) -> Company | None:
    """The company whose employees ``user`` may see as its contact (approved, account active), or None."""
    if user is None or not getattr(user, "is_authenticated", True) or not user.active:
        return None
    return session.scalar(select(Company).join(CompanyContact, CompanyContact.company_id == Company.id)
                          .where(CompanyContact.user_id == user.id,
                                 CompanyContact.status == ContactStatus.approved))


def live_contact(session: Session, user_id: int) -> CompanyContact | None:
    """The user's request or appointment in force, if any."""
    return session.scalar(select(CompanyContact).where(CompanyContact.user_id == user_id,
                                                       CompanyContact.status.in_(LIVE)))


def _note(text: str | None) -> str | None:
    text = (text or "").strip()
    if len(text) > NOTE_MAX:
        raise ValidationFailed(_("Write at most %(n)d characters.", n=NOTE_MAX), field="note")
    return text or None


def _add(session: Session, row: CompanyContact) -> CompanyContact:
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(_("This person already is, or asked to be, a company contact.")) from None
    return row


def _tell(session: Session, contact: CompanyContact) -> None:
    user = contact.user
    with force_locale(user.locale or "ko"):
        name = contact.company.name
        if contact.status is ContactStatus.approved:
            queue_mail(session, user.email, _("You are now the contact of %(company)s", company=name),
                       _("You can now follow the learning of %(company)s's employees on the academy's portal "
                         "(menu: My company).", company=name))
        elif contact.status is ContactStatus.rejected:
            queue_mail(session, user.email, _("Your request to be the contact of %(company)s was declined",
                                              company=name),
                       _("An administrator declined your request. %(note)s", note=contact.note or ""))
        elif contact.status is ContactStatus.revoked:
            queue_mail(session, user.email, _("You are no longer the contact of %(company)s", company=name),
                       _("An administrator ended your access to %(company)s's employees. %(note)s",
                         company=name, note=contact.note or ""))


def appoint(session: Session, company: Company, user: User, *, actor: User, note: str | None = None
            ) -> CompanyContact:
    """An admin makes ``user`` the contact of ``company`` (approving their request if they asked)."""
    current = live_contact(session, user.id)
    if current is not None and current.company_id != company.id:
        raise Conflict(_("%(email)s is already bound to another company; end that first.", email=user.email))
    if current is not None and current.status is ContactStatus.approved:
        raise Conflict(_("%(email)s already is this company's contact.", email=user.email))
    if current is not None:
        return decide(session, current, approve=True, actor=actor, note=note)
    row = _add(session, CompanyContact(user_id=user.id, company_id=company.id, status=ContactStatus.approved,
                                       note=_note(note), decided_at=utcnow(), decided_by_id=actor.id))
    record(session, "company_contact.appoint", actor=actor, target_type="user", target_id=user.id,
           company=company.name)
    _tell(session, row)
    return row


def request_access(session: Session, user: User, *, note: str | None = None) -> CompanyContact:
    """An employee asks to be their company's contact; an admin decides."""
    if user.company_id is None:
        raise ValidationFailed(_("Your account names no company. Add your company to your profile first."),
                               field="company")
    row = _add(session, CompanyContact(user_id=user.id, company_id=user.company_id, status=ContactStatus.requested,
                                       note=_note(note)))
    record(session, "company_contact.request", actor=user, target_type="user", target_id=user.id,
           company=row.company.name if row.company else None)
    return row


def decide(session: Session, contact: CompanyContact, *, approve: bool, actor: User, note: str | None = None
           ) -> CompanyContact:
    """Approve or decline a request."""
    if contact.status is not ContactStatus.requested:
        raise Conflict(_("This request was already decided."))
    contact.status = ContactStatus.approved if approve else ContactStatus.rejected
    contact.note = _note(note) or contact.note
    contact.decided_at, contact.decided_by_id = utcnow(), actor.id
    record(session, "company_contact.approve" if approve else "company_contact.reject", actor=actor,
           target_type="user", target_id=contact.user_id, company=contact.company.name)
    _tell(session, contact)
    return contact


def revoke(session: Session, contact: CompanyContact, *, actor: User, note: str | None = None) -> CompanyContact:
    """End a contact's access."""
    if contact.status is not ContactStatus.approved:
        raise Conflict(_("This person is not a company contact now."))
    contact.status = ContactStatus.revoked
    contact.note = _note(note)
    contact.decided_at, contact.decided_by_id = utcnow(), actor.id
    record(session, "company_contact.revoke", actor=actor, target_type="user", target_id=contact.user_id,
           company=contact.company.name)
    _tell(session, contact)
    return contact


def contacts(session: Session) -> list[CompanyContact]:
    """Requests waiting first, then contacts in force, for the admin's page."""
    rows = session.scalars(select(CompanyContact).where(CompanyContact.status.in_(LIVE))
                           .order_by(CompanyContact.requested_at, CompanyContact.id)).all()
    return sorted(rows, key=lambda r: r.status is not ContactStatus.requested)  # stable: by time within each


def get_contact(session: Session, contact_id: int) -> CompanyContact:
    """A contact row or :class:`NotFound`."""
    row = session.get(CompanyContact, contact_id)
    if row is None:
        raise NotFound(_("No such company contact."))
    return row


# --- the report -------------------------------------------------------------------------------------------------------


@dataclass
class EnrollmentLine:
    """One enrollment of an employee, with their progress in that track."""

    track_id: int
    track: str
    cohort: str
    status: str
    starts_at: dt.datetime
    passed: int = 0  # assignments of the track passed
    assignments: int = 0  # active assignments of the track
    lab_hours: float = 0.0
    courses_completed: list[str] = field(default_factory=list)
    track_completed_on: dt.datetime | None = None


@dataclass
class EmployeeLine:
    """An employee of the company and their learning."""

    user: User
    enrollments: list[EnrollmentLine] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)

    def as_json(self, base_url: str) -> dict[str, Any]:
        """The API's shape."""
        return {
            "name": self.user.name, "email": self.user.email, "job_role": self.user.job_role,
            "enrollments": [{
                "track": {"id": e.track_id, "title": e.track}, "cohort": e.cohort, "status": e.status,
                "progress": {"passed": e.passed, "assignments": e.assignments},
                "lab_hours": round(e.lab_hours, 2), "courses_completed": e.courses_completed,
                "track_completed_on": e.track_completed_on.isoformat() if e.track_completed_on else None,
            } for e in self.enrollments],
            "certificates": [{"code": c.code, "title": c.title_ko, "title_en": c.title_en, "status": c.status,
                              "completed_on": c.statement()["completed_on"],
                              "verify_url": f"{base_url.rstrip('/')}/verify/{c.code}"} for c in self.certificates],
        }


def employees_report(session: Session, company_id: int, *, locale: str = "ko", search: str = "",
                     track_id: int | None = None, page: int = 1, per_page: int = 50,
                     now: dt.datetime | None = None) -> tuple[list[EmployeeLine], int]:
    """The company's employees (page ``page``) with their enrollments, progress, lab hours, completions and
    certificates; and how many employees match in all.  Only ``company_id``'s employees, ever."""
    now = now or utcnow()
    query = select(User).where(User.company_id == company_id)
    search = search.strip()
    if search:
        like = f"%{search.lower()}%"
        query = query.where(or_(func.lower(User.name).like(like), func.lower(User.email).like(like)))
    if track_id is not None:
        query = query.where(User.id.in_(select(Enrollment.user_id).where(Enrollment.track_id == track_id)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    users = session.scalars(query.order_by(User.name, User.id).offset((max(page, 1) - 1) * per_page)
                            .limit(per_page)).all()
    ids = [u.id for u in users]
    if not ids:
        return [], total
    lines = {u.id: EmployeeLine(u) for u in users}
    courses_of: dict[int, list[Course]] = defaultdict(list)
    for course in session.scalars(select(Course).where(Course.active).order_by(Course.position)):
        courses_of[course.track_id].append(course)
    assignments_of = {tid: sum(1 for c in cs for a in c.assignments if a.active) for tid, cs in courses_of.items()}
    hours: dict[tuple[int, int], float] = defaultdict(float)
    for user_id, track, start, stop in session.execute(
            select(LabSession.user_id, Course.track_id, LabSession.started_at, LabSession.stopped_at)
            .join(Course, Course.id == LabSession.course_id)
            .where(LabSession.user_id.in_(ids), LabSession.started_at.is_not(None))):
        hours[(user_id, track)] += max(((stop or now) - start).total_seconds(), 0) / 3600
    marks = {c.id: course_pass_mark(c.passing_rule) / 100 for cs in courses_of.values() for c in cs}
    passed: dict[tuple[int, int], set[int]] = defaultdict(set)
    for user_id, assignment_id, course_id, track, score, max_score in session.execute(
            select(Submission.user_id, Submission.assignment_id, Assignment.course_id, Course.track_id,
                   func.max(Submission.score), Assignment.max_score)
            .join(Assignment, Assignment.id == Submission.assignment_id).join(Course, Course.id == Assignment.course_id)
            .where(Submission.user_id.in_(ids), Submission.status == SubmissionStatus.graded,
                   Submission.score.is_not(None))
            .group_by(Submission.user_id, Submission.assignment_id, Assignment.course_id, Course.track_id,
                      Assignment.max_score)):
        if max_score and score >= max_score * marks.get(course_id, 0.6):
            passed[(user_id, track)].add(assignment_id)
    done_courses: dict[tuple[int, int], list[str]] = defaultdict(list)
    done_tracks: dict[tuple[int, int], dt.datetime] = {}
    for row in session.scalars(select(Completion).where(Completion.user_id.in_(ids),
                                                        Completion.withdrawn_at.is_(None))):
        if row.course_id is None:
            done_tracks[(row.user_id, row.track_id)] = row.completed_at
        else:
            done_courses[(row.user_id, row.track_id)].append(row.course.title(locale))
    for enrollment, cohort, track in session.execute(
            select(Enrollment, Cohort, Track).join(Cohort, Cohort.id == Enrollment.cohort_id)
            .join(Track, Track.id == Cohort.track_id)
            .where(Enrollment.user_id.in_(ids), Enrollment.status != EnrollmentStatus.rejected)
            .order_by(Cohort.starts_at.desc())):
        if track_id is not None and track.id != track_id:
            continue
        key = (enrollment.user_id, track.id)
        lines[enrollment.user_id].enrollments.append(EnrollmentLine(
            track_id=track.id, track=track.title(locale), cohort=cohort.name, status=enrollment.status.value,
            starts_at=cohort.starts_at, passed=len(passed.get(key, ())), assignments=assignments_of.get(track.id, 0),
            lab_hours=hours.get(key, 0.0), courses_completed=done_courses.get(key, []),
            track_completed_on=done_tracks.get(key)))
    for certificate in session.scalars(select(Certificate).where(Certificate.user_id.in_(ids))
                                       .order_by(Certificate.issued_at.desc())):
        lines[certificate.user_id].certificates.append(certificate)
    return [lines[i] for i in ids], total
