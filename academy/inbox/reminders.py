"""Deadline reminders: the periodic job that tells learners what is due in the next 48 hours."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.grading.standing import learner_standings
from academy.inbox.services import tell
from academy.users.models import User

SEOUL = ZoneInfo("Asia/Seoul")


def remind_deadlines(session: Session, *, now: dt.datetime | None = None,
                     within: dt.timedelta = dt.timedelta(hours=48)) -> int:
    """Tell every enrolled learner whose deadline falls in the next ``within`` and who has not passed yet.

    Run periodically; each deadline is told once (its key holds the assignment and the deadline,
    so a new deadline after an extension is told again).  Returns how many were told.
    """
    now = now or utcnow()
    cohorts = session.scalars(select(Cohort).where(Cohort.starts_at <= now, Cohort.ends_at > now)).all()
    told = 0
    for cohort in cohorts:
        assignments = session.scalars(select(Assignment).join(Course).where(
            Course.track_id == cohort.track_id, Course.active.is_(True), Assignment.active.is_(True))).all()
        if not assignments:
            continue
        learners = session.scalars(select(User).join(Enrollment, Enrollment.user_id == User.id).where(
            Enrollment.cohort_id == cohort.id, Enrollment.status == EnrollmentStatus.enrolled,
            User.active.is_(True))).all()
        for learner in learners:
            standings = learner_standings(session, learner, assignments, cohort=cohort, now=now)
            for assignment in assignments:
                standing = standings[assignment.id]
                due = standing.due_at
                if due is None or not now < due <= now + within or standing.status in ("passed", "held", "grading",
                                                                                       "waiting_for_instructor"):
                    continue
                locale = learner.locale or "ko"
                with force_locale(locale):
                    title = assignment.title(locale)
                    message = tell(session, learner, "deadline", _("%(title)s is due soon", title=title),
                                   _("%(title)s is due on %(when)s. Submit your work before then.",
                                     title=title, when=due.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M KST")),
                                   link=f"/assignments/{assignment.id}",
                                   key=f"deadline:{assignment.id}:{due.isoformat()}")
                told += message is not None
    return told
