"""Domain exceptions and the HTTP status each one maps to.

Services raise these with a message that is already translated (or lazily
translatable); views and the API turn them into a flash message, an error page or a
JSON body without knowing the details.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping


class AcademyError(Exception):
    """Base of every expected, user-explainable failure.

    ``headers`` are HTTP headers the answer must carry (``WWW-Authenticate`` on a refused
    API token, for instance); the error handlers in ``academy.web.errors`` send them.
    """

    status_code = 400
    code = "error"

    def __init__(self, message: object, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.field = field
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return str(self.message)


class ValidationFailed(AcademyError):
    """The input is malformed or breaks a rule."""

    status_code = 400
    code = "invalid"


class NotFound(AcademyError):
    """The object does not exist, or the actor may not know it exists."""

    status_code = 404
    code = "not_found"


class PermissionDenied(AcademyError):
    """The actor is known but may not do this."""

    status_code = 403
    code = "forbidden"


class Conflict(AcademyError):
    """The action clashes with the current state (a duplicate, a full cohort, ...)."""

    status_code = 409
    code = "conflict"


class Gone(AcademyError):
    """The object existed but is no longer available (a revoked certificate's files)."""

    status_code = 410
    code = "gone"


@contextlib.contextmanager
def from_engine() -> Iterator[None]:
    """Re-raise the grading engine's refusals of its input (``UngradableInput``) as ``ValidationFailed``.

    The engine (``academy.engine``) knows nothing of the portal, so its errors are its own; a
    service that hands the engine a notebook says "that input is not valid" the portal's way.
    """
    from academy.engine.validation import UngradableInput

    try:
        yield
    except UngradableInput as exc:
        raise ValidationFailed(str(exc)) from exc
