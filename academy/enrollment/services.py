"""Enrollment workflows: join, withdraw, approve, reject, and the waitlist.

Capacity is enforced by a conditional ``UPDATE cohort SET seats_taken = seats_taken + 1
WHERE seats_taken < capacity``: the database serialises concurrent updates of the row,
so two learners racing for the last seat cannot both get it, on SQLite or PostgreSQL.
Every status change writes an :class:`EnrollmentEvent` with its actor and time.

One active enrollment per track: a learner who is enrolled, on the waitlist or awaiting
approval (``ACTIVE_STATUSES``) in one cohort of a track cannot ask to join another cohort of
that track.  The partial unique index ``uq_enrollment_active_track`` on ``(user_id,
track_id)`` over active rows enforces it in the database, so two parallel requests for two
cohorts cannot both succeed; the services check first only to name the cohort already held.
Withdrawn and rejected rows do not count.  Changing cohorts is an explicit action:
:func:`move_enrollment`, an admin's, which follows the capacity rules (a learner holding a
seat is only moved into a free seat).  Learners do not move themselves: while waiting
(pending or waitlisted) they withdraw and ask again, which costs them nothing they hold; a
learner with a seat asks an admin, so that the seat is not lost in between.
"""

from __future__ import annotations

import datetime as dt

from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from academy.audit.services import record
from academy.catalog.models import Course, Track
from academy.db import utcnow
from academy.enrollment.models import (
    ACTIVE_STATUSES,
    Cohort,
    Enrollment,
    EnrollmentEvent,
    EnrollmentStatus,
)
from academy.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from academy.mail.services import queue_mail
from academy.permissions import can_enroll, can_manage_enrollments
from academy.users.models import User

S = EnrollmentStatus


# --- cohorts ----------------------------------------------------------------------


def create_cohort(
    session: Session,
    track: Track,
    *,
    name: str,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    capacity: int,
    requires_approval: bool = False,
    enroll_closes_at: dt.datetime | None = None,
    actor: User | None,
) -> Cohort:
    """Open a new cohort of ``track``; ``actor`` is the admin, ``None`` for the system.

    Raises ValidationFailed for an empty name, bad dates or capacity, Conflict for a
    name already used in this track.
    """
    name = name.strip()
    if not name:
        raise ValidationFailed(_("Give the cohort a name."), field="name")
    if ends_at <= starts_at:
        raise ValidationFailed(_("The cohort must end after it starts."), field="ends_at")
    if capacity < 1:
        raise ValidationFailed(_("Capacity must be at least 1."), field="capacity")
    exists = session.scalar(select(Cohort.id).where(Cohort.track_id == track.id, Cohort.name == name))
    if exists is not None:
        raise Conflict(_("This track already has a cohort with that name."), field="name")
    cohort = Cohort(
        track=track,
        name=name[:100],
        starts_at=starts_at,
        ends_at=ends_at,
        capacity=capacity,
        seats_taken=0,
        requires_approval=requires_approval,
        enroll_closes_at=enroll_closes_at,
    )
    session.add(cohort)
    session.flush()
    record(session, "cohort.create", actor=actor, target_type="cohort", target_id=cohort.id,
           track=track.slug, capacity=capacity, requires_approval=requires_approval)
    return cohort


def set_capacity(session: Session, cohort: Cohort, capacity: int, *, actor: User | None) -> Cohort:
    """Change a cohort's capacity; raising it promotes waiting learners.

    Raises ValidationFailed when the new capacity is below the seats already taken.
    """
    session.refresh(cohort)
    if capacity < max(cohort.seats_taken, 1):
        raise ValidationFailed(
            _("Capacity cannot be lower than the %(n)d seats already taken.", n=cohort.seats_taken),
            field="capacity",
        )
    result = session.execute(
        update(Cohort)
        .where(Cohort.id == cohort.id, Cohort.seats_taken <= capacity)
        .values(capacity=capacity)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict(_("Seats were taken meanwhile; try again."), field="capacity")
    record(session, "cohort.set_capacity", actor=actor, target_type="cohort", target_id=cohort.id,
           capacity=capacity)
    session.expire(cohort)
    _promote_waitlist(session, cohort.id, actor=actor)
    return cohort


def get_cohort(session: Session, cohort_id: int) -> Cohort:
    """The cohort with this id. Raises NotFound."""
    cohort = session.get(Cohort, cohort_id)
    if cohort is None:
        raise NotFound(_("No such cohort."))
    return cohort


def open_cohorts(session: Session, track_id: int | None = None, *, now: dt.datetime | None = None) -> list[Cohort]:
    """Cohorts that still accept requests, soonest first."""
    now = now or utcnow()
    query = select(Cohort).where(Cohort.ends_at > now).order_by(Cohort.starts_at, Cohort.id)
    if track_id is not None:
        query = query.where(Cohort.track_id == track_id)
    return [c for c in session.scalars(query) if accepts_requests(c, now)]


def accepts_requests(cohort: Cohort, now: dt.datetime | None = None) -> bool:
    """True while the cohort has not ended and its enrollment deadline has not passed."""
    now = now or utcnow()
    if cohort.ends_at <= now:
        return False
    return cohort.enroll_closes_at is None or cohort.enroll_closes_at > now


# --- seats --------------------------------------------------------------------------


def _take_seat(session: Session, cohort_id: int) -> bool:
    result = session.execute(
        update(Cohort)
        .where(Cohort.id == cohort_id, Cohort.seats_taken < Cohort.capacity)
        .values(seats_taken=Cohort.seats_taken + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _release_seat(session: Session, cohort_id: int) -> None:
    session.execute(
        update(Cohort)
        .where(Cohort.id == cohort_id, Cohort.seats_taken > 0)
        .values(seats_taken=Cohort.seats_taken - 1)
        .execution_options(synchronize_session=False)
    )


def _change(
    session: Session,
    enrollment: Enrollment,
    to: EnrollmentStatus,
    *,
    actor: User | None,
    note: str | None = None,
    new: bool = False,
    previous_status: EnrollmentStatus | None = None,
) -> None:
    if previous_status is None and not new:
        previous_status = enrollment.status
    previous = None if new or previous_status is None else previous_status.value
    enrollment.status = to
    enrollment.updated_at = utcnow()
    actor_id = None if actor is None else actor.id
    session.add(
        EnrollmentEvent(
            enrollment=enrollment, actor_id=actor_id, from_status=previous, to_status=to.value, note=note
        )
    )


def _notify(session: Session, enrollment: Enrollment, subject: object, body: object, *,
            note: str | None = None) -> None:
    """Mail the learner in their own language: ``subject`` and ``body`` are lazy texts, made here.

    The actor (an admin approving a request, a learner leaving and freeing a seat) may use
    another language than the learner who reads the mail.
    """
    with force_locale(enrollment.user.locale or "ko"):
        text = str(body) + (f"\n\n{note}" if note else "")
        queue_mail(session, enrollment.user.email, str(subject), text)


def _promote_waitlist(session: Session, cohort_id: int, *, actor: User | None) -> list[Enrollment]:
    """Give freed seats to waiting learners, first come first served."""
    promoted: list[Enrollment] = []
    while True:
        query = (
            select(Enrollment)
            .where(Enrollment.cohort_id == cohort_id, Enrollment.status == S.waitlisted)
            .order_by(Enrollment.requested_at, Enrollment.id)
            .limit(1)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        waiting = session.scalar(query)
        if waiting is None or not _take_seat(session, cohort_id):
            break
        _change(session, waiting, S.enrolled, actor=actor, note="promoted from waitlist")
        _notify(
            session,
            waiting,
            _l("A seat opened up for you"),
            _l("A seat in %(cohort)s opened up and you are now enrolled.", cohort=waiting.cohort.name),
        )
        promoted.append(waiting)
    session.flush()
    return promoted


# --- learner actions -------------------------------------------------------------


def active_enrollment_in_track(session: Session, user_id: int, track_id: int) -> Enrollment | None:
    """The learner's active enrollment (pending, enrolled or waitlisted) in any cohort of the track, or None."""
    return session.scalar(
        select(Enrollment).where(
            Enrollment.user_id == user_id,
            Enrollment.track_id == track_id,
            Enrollment.status.in_(ACTIVE_STATUSES),
        )
    )


def _already_in_track(held: Enrollment | None, cohort: Cohort) -> Conflict:
    """The refusal for a learner who holds ``held`` in the track of ``cohort``."""
    if held is None:  # the other request has not committed a row we can name
        return Conflict(_("You already have an enrollment in another cohort of this track."))
    if held.cohort_id == cohort.id:
        return Conflict(_("You have already asked to join this cohort."))
    name = held.cohort.name
    if held.status is S.enrolled:
        return Conflict(_("You are already enrolled in %(cohort)s, a cohort of the same track. "
                          "To change cohorts, ask an administrator to move you.", cohort=name))
    if held.status is S.waitlisted:
        return Conflict(_("You are already on the waitlist of %(cohort)s, a cohort of the same track. "
                          "To join this cohort instead, first withdraw from that waitlist in My enrollments.",
                          cohort=name))
    return Conflict(_("You have already asked to join %(cohort)s, a cohort of the same track. "
                      "To join this cohort instead, first withdraw that request in My enrollments.", cohort=name))


def _claim_row(
    session: Session, cohort: Cohort, user_id: int, status: EnrollmentStatus
) -> tuple[Enrollment, EnrollmentStatus | None]:
    """Make the learner's row in ``cohort`` active with ``status``: a new row, or their inactive
    (withdrawn, rejected) one.  Returns it and its previous status (None when new).

    Inside a savepoint, so a refusal leaves the caller's transaction usable.  Raises
    IntegrityError when the learner already holds an active row in the track (the partial
    unique index) or a parallel request inserted this row first, and Conflict when the row
    is already active (perhaps made so meanwhile: the update is conditional on its status).
    """
    now = utcnow()
    # Read before the savepoint: on SQLite a read inside the write transaction would pin a
    # snapshot that a parallel writer's commit makes unwritable ("database is locked").
    row = session.scalar(select(Enrollment).where(Enrollment.cohort_id == cohort.id, Enrollment.user_id == user_id))
    with session.begin_nested():
        if row is None:
            row = Enrollment(cohort_id=cohort.id, track_id=cohort.track_id, user_id=user_id, status=status,
                             requested_at=now, updated_at=now)
            session.add(row)
            return row, None
        previous = row.status
        claimed = session.execute(
            update(Enrollment)
            .where(Enrollment.id == row.id, Enrollment.status.not_in(ACTIVE_STATUSES))
            .values(status=status, requested_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    if claimed.rowcount != 1:
        session.refresh(row)
        raise _already_in_track(row, cohort)
    session.refresh(row)
    return row, previous


def request_enrollment(session: Session, cohort: Cohort, user: User, *, actor: User | None = None) -> Enrollment:
    """Ask to join ``cohort``: enrolled when a seat is free, waitlisted when full, or
    pending when the cohort requires approval.  ``actor`` is who asks: ``user`` unless given.

    Raises ValidationFailed when the cohort no longer accepts requests, and Conflict when
    the user already holds or waits for a place in it or in another cohort of its track
    (the message names that cohort).  Nothing is stored when it raises.
    """
    actor = user if actor is None else actor
    if not can_enroll(user):
        raise PermissionDenied(_("This account is not active."))
    if not accepts_requests(cohort):
        raise ValidationFailed(_("This cohort no longer accepts enrollment requests."))
    held = active_enrollment_in_track(session, user.id, cohort.track_id)
    if held is not None:
        raise _already_in_track(held, cohort)
    # Claiming the row as pending first takes the learner's one active place in the track
    # (the partial unique index) and the (cohort, user) pair, so a parallel request for this
    # or another cohort of the track fails here, before any seat is taken.
    try:
        enrollment, previous = _claim_row(session, cohort, user.id, S.pending)
    except IntegrityError:
        raise _already_in_track(active_enrollment_in_track(session, user.id, cohort.track_id), cohort) from None
    new = previous is None

    if cohort.requires_approval:
        target = S.pending
    elif _take_seat(session, cohort.id):
        target = S.enrolled
    else:
        target = S.waitlisted
    _change(session, enrollment, target, actor=actor, note="requested", new=new, previous_status=previous)
    session.flush()
    return enrollment


def withdraw(session: Session, enrollment: Enrollment, *, actor: User) -> Enrollment:
    """Leave a cohort (or its waitlist or approval queue); a freed seat goes to the
    first waiting learner.

    Raises PermissionDenied for someone else's enrollment (unless admin) and Conflict
    when it is not active.
    """
    if enrollment.user_id != actor.id and not can_manage_enrollments(actor):
        raise PermissionDenied(_("You can only withdraw your own enrollment."))
    if enrollment.status not in ACTIVE_STATUSES:
        raise Conflict(_("This enrollment is not active."))
    held_seat = enrollment.status is S.enrolled
    _change(session, enrollment, S.withdrawn, actor=actor)
    session.flush()
    if held_seat:
        _release_seat(session, enrollment.cohort_id)
        _promote_waitlist(session, enrollment.cohort_id, actor=actor)
    return enrollment


# --- admin actions ---------------------------------------------------------------


def approve(session: Session, enrollment: Enrollment, *, actor: User) -> Enrollment:
    """Approve a pending request: enrolled if a seat is free, otherwise waitlisted.

    Raises Conflict when the request is not pending.
    """
    if enrollment.status is not S.pending:
        raise Conflict(_("Only pending requests can be approved."))
    target = S.enrolled if _take_seat(session, enrollment.cohort_id) else S.waitlisted
    _change(session, enrollment, target, actor=actor, note="approved")
    if target is S.enrolled:
        _notify(session, enrollment, _l("Your enrollment was approved"),
                _l("You are enrolled in %(cohort)s.", cohort=enrollment.cohort.name))
    else:
        _notify(session, enrollment, _l("Your enrollment was approved"),
                _l("%(cohort)s is full; you are on its waitlist.", cohort=enrollment.cohort.name))
    record(session, "enrollment.approve", actor=actor, target_type="enrollment", target_id=enrollment.id,
           result=target.value)
    session.flush()
    return enrollment


def reject(session: Session, enrollment: Enrollment, *, actor: User, note: str | None = None) -> Enrollment:
    """Reject a pending request. Raises Conflict when it is not pending."""
    if enrollment.status is not S.pending:
        raise Conflict(_("Only pending requests can be rejected."))
    _change(session, enrollment, S.rejected, actor=actor, note=note or None)
    _notify(session, enrollment, _l("Your enrollment request was not approved"),
            _l("Your request to join %(cohort)s was not approved.", cohort=enrollment.cohort.name), note=note)
    record(session, "enrollment.reject", actor=actor, target_type="enrollment", target_id=enrollment.id)
    session.flush()
    return enrollment


def move_enrollment(session: Session, enrollment: Enrollment, target: Cohort, *, actor: User) -> Enrollment:
    """Move a learner's active enrollment to another cohort of the same track (an admin's action).

    The learner leaves their cohort (its row becomes withdrawn, a seat they held goes to the
    first waiting learner there) and takes a seat in ``target`` when one is free, otherwise
    its waitlist, at the end; an admin's move counts as approval in a cohort that requires
    it.  A learner holding a seat is only moved into a free seat, so a move never costs
    them their place.  Returns the enrollment in ``target``; audited as ``enrollment.move``.

    Raises PermissionDenied for a non-admin, Conflict when the enrollment is not active or
    the target is full for a learner holding a seat, and ValidationFailed for the same
    cohort, another track's cohort or a cohort that has ended.
    """
    if not can_manage_enrollments(actor):
        raise PermissionDenied(_("Only administrators can move learners between cohorts."))
    if enrollment.status not in ACTIVE_STATUSES:
        raise Conflict(_("This enrollment is not active."))
    source = enrollment.cohort
    if target.id == source.id:
        raise ValidationFailed(_("The learner is already in this cohort."), field="target")
    if target.track_id != source.track_id:
        raise ValidationFailed(_("Learners can only be moved to another cohort of the same track."), field="target")
    if target.ends_at <= utcnow():
        raise ValidationFailed(_("%(cohort)s has already ended.", cohort=target.name), field="target")
    held_seat = enrollment.status is S.enrolled
    if _take_seat(session, target.id):
        status = S.enrolled
    elif held_seat:
        raise Conflict(_("%(cohort)s is full, and the learner would lose their seat. "
                         "Raise its capacity first.", cohort=target.name), field="target")
    else:
        status = S.waitlisted
    _change(session, enrollment, S.withdrawn, actor=actor, note=_("Moved to %(cohort)s.", cohort=target.name))
    session.flush()  # frees the learner's active place in the track for the new row
    try:
        moved, previous = _claim_row(session, target, enrollment.user_id, status)
    except (IntegrityError, Conflict):
        raise Conflict(_("The learner's enrollments changed meanwhile; reload the page and try again.")) from None
    new = previous is None
    _change(session, moved, status, actor=actor, note=_("Moved from %(cohort)s.", cohort=source.name),
            new=new, previous_status=previous)
    session.flush()
    if held_seat:
        _release_seat(session, source.id)
        _promote_waitlist(session, source.id, actor=actor)
    with force_locale(moved.user.locale or "ko"):  # the learner's language, not the admin's
        if status is S.enrolled:
            body = _("An administrator moved you from %(source)s to %(target)s. You are enrolled in %(target)s.",
                     source=source.name, target=target.name)
        else:
            body = _("An administrator moved you from %(source)s to %(target)s. %(target)s is full; "
                     "you are on its waitlist.", source=source.name, target=target.name)
        _notify(session, moved, _("You were moved to another cohort"), body)
    record(session, "enrollment.move", actor=actor, target_type="enrollment", target_id=moved.id,
           from_cohort=source.name, to_cohort=target.name, from_cohort_id=source.id, to_cohort_id=target.id)
    session.flush()
    return moved


def move_targets(session: Session, cohort: Cohort, *, now: dt.datetime | None = None) -> list[Cohort]:
    """Where an admin may move learners of ``cohort``: the other cohorts of its track that have not ended."""
    now = now or utcnow()
    return list(session.scalars(
        select(Cohort)
        .where(Cohort.track_id == cohort.track_id, Cohort.id != cohort.id, Cohort.ends_at > now)
        .order_by(Cohort.starts_at, Cohort.id)
    ))


# --- queries -------------------------------------------------------------------------


def get_enrollment(session: Session, enrollment_id: int) -> Enrollment:
    """The enrollment with this id. Raises NotFound."""
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None:
        raise NotFound(_("No such enrollment."))
    return enrollment


def enrollments_of(session: Session, user: User, *, active_only: bool = False, with_catalog: bool = False
                   ) -> list[Enrollment]:
    """A user's enrollments, newest cohort first.

    ``with_catalog``: with their cohorts, tracks, courses and assignments, in three queries (for a caller that
    walks them all: loaded on first use, they cost a query per course).
    """
    query = (
        select(Enrollment)
        .join(Cohort)
        .where(Enrollment.user_id == user.id)
        .order_by(Cohort.starts_at.desc(), Enrollment.id.desc())
    )
    if active_only:
        query = query.where(Enrollment.status.in_(ACTIVE_STATUSES))
    if with_catalog:
        query = query.options(joinedload(Enrollment.cohort).joinedload(Cohort.track)
                              .selectinload(Track.courses).selectinload(Course.assignments))
    return list(session.scalars(query).unique())


def waitlist_position(session: Session, enrollment: Enrollment) -> int | None:
    """1 for the first waiting learner, and so on; None when not waitlisted."""
    if enrollment.status is not S.waitlisted:
        return None
    ahead = session.scalar(
        select(func.count())
        .select_from(Enrollment)
        .where(
            Enrollment.cohort_id == enrollment.cohort_id,
            Enrollment.status == S.waitlisted,
            (Enrollment.requested_at < enrollment.requested_at)
            | ((Enrollment.requested_at == enrollment.requested_at) & (Enrollment.id < enrollment.id)),
        )
    )
    return int(ahead or 0) + 1


def pending_requests(session: Session) -> list[Enrollment]:
    """Requests waiting for an admin, oldest first."""
    return list(
        session.scalars(
            select(Enrollment).where(Enrollment.status == S.pending).order_by(Enrollment.requested_at)
        )
    )


def roster(session: Session, cohort: Cohort) -> list[Enrollment]:
    """Everyone who ever asked to join ``cohort``, by status then request time."""
    return list(
        session.scalars(
            select(Enrollment)
            .where(Enrollment.cohort_id == cohort.id)
            .order_by(Enrollment.status, Enrollment.requested_at, Enrollment.id)
        )
    )
