"""Pure permission predicates: plain arguments in, a yes or no out.

Views, the API and services call these; they never look at the request themselves.
Who holds a role is the user's own business (:attr:`User.is_admin`, :attr:`User.is_instructor`:
active accounts only); these predicates build on that answer and never repeat it.
"""

from __future__ import annotations

from academy.catalog.models import Course
from academy.users.models import User


def is_admin(user: User | None) -> bool:
    """True for an active admin (see :attr:`User.is_admin`)."""
    return user is not None and user.is_admin


def teaches(user: User | None, course: Course) -> bool:
    """True when ``user`` is an active instructor named in the course manifest."""
    if user is None or not user.is_instructor:
        return False
    email = user.email.lower()
    return any(ci.email.lower() == email for ci in course.instructors)


def can_manage_course(user: User | None, course: Course) -> bool:
    """Admins manage every course; instructors only the ones they teach."""
    return is_admin(user) or teaches(user, course)


def can_manage_enrollments(user: User | None) -> bool:
    """Approving, rejecting and withdrawing other people's enrollments is an admin's job."""
    return is_admin(user)


def can_enroll(user: User | None) -> bool:
    """Any active account may ask to join a cohort."""
    return user is not None and user.active


def can_see_certificate_files(user: User | None, holder_id: int) -> bool:
    """A certificate's PDF and credential: its holder and admins."""
    return user is not None and user.active and (user.id == holder_id or is_admin(user))
