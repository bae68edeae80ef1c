"""Pure permission predicates: plain arguments in, a yes or no out.

Views and the API call these; they never look at the request themselves.
"""

from __future__ import annotations

from academy.catalog.models import Course
from academy.users.models import Role, User


def is_admin(user: User | None) -> bool:
    """True for an active admin."""
    return user is not None and user.active and user.role is Role.admin


def teaches(user: User | None, course: Course) -> bool:
    """True when ``user`` is an instructor named in the course manifest."""
    if user is None or not user.active or user.role is not Role.instructor:
        return False
    email = user.email.lower()
    return any(ci.email.lower() == email for ci in course.instructors)


def can_manage_course(user: User | None, course: Course) -> bool:
    """Admins manage every course; instructors only the ones they teach."""
    return is_admin(user) or teaches(user, course)


def can_manage_enrollments(user: User | None) -> bool:
    """Approving, rejecting and creating cohorts is an admin's job."""
    return is_admin(user)


def can_enroll(user: User | None) -> bool:
    """Any active account may ask to join a cohort."""
    return user is not None and user.active


def can_view_outbox(user: User | None) -> bool:
    """The local outbox holds reset links: admins only."""
    return is_admin(user)


def can_import_users(user: User | None) -> bool:
    """Importing a company's employees creates accounts: admins only."""
    return is_admin(user)
