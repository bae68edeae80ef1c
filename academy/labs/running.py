"""The learner's own open lab, as the portal's pages show it (``labs/_running.html``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from academy.config import Settings
from academy.labs.hub import HubUnavailable, client_for
from academy.labs.labels import lab_state_label, profile_title
from academy.labs.models import LabState
from academy.labs.queue import active_session
from academy.users.models import User


@dataclass(frozen=True)
class RunningLab:
    """What a page needs to show one open lab: words, a time and where its links go.

    ``lab_url`` is JupyterLab itself once the lab is ready; before that (queued, starting, notebooks
    still being copied) it is None and the page links to the lab's progress page instead.
    """

    id: int
    course_title: str
    course_slug: str
    profile_title: str
    state: LabState
    state_label: str
    since: dt.datetime  # UTC: when the server started, or when the learner asked for it
    lab_url: str | None

    @property
    def ready(self) -> bool:
        """True when the learner can work in it now."""
        return self.lab_url is not None


def running_lab(session: Session, settings: Settings, user: User, *, locale: str) -> RunningLab | None:
    """``user``'s queued, starting or running lab, described in ``locale``; None when they have none.

    Only ever the user's own lab (a lab is found by its owner, never by an id from the request).
    Reads the database only: no call to the hub.
    """
    if user is None or getattr(user, "id", None) is None:
        return None
    lab = active_session(session, user.id)
    if lab is None:
        return None
    lab_url = None
    if lab.state == LabState.running and lab.notebook_path is not None:
        try:
            lab_url = client_for(settings).lab_url(lab.hub_user, lab.notebook_path or None)
        except HubUnavailable:  # labs switched off since: the progress page says what it can
            lab_url = None
    return RunningLab(
        id=lab.id,
        course_title=lab.course.title(locale),
        course_slug=lab.course.slug,
        profile_title=profile_title(settings, lab.profile, locale),
        state=lab.state,
        state_label=lab_state_label(lab.state),
        since=lab.started_at or lab.requested_at or lab.queued_at,
        lab_url=lab_url,
    )
