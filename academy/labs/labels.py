"""Words for the labs' stored codes: the one place that turns a profile key or a lab state into text.

Pages (through ``views.lab_labels``), the running-lab service and the launch's refusals all go
through these two functions, so no page ever shows ``cpu`` or ``running`` where a title belongs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask_babel import gettext as _

from academy.errors import AcademyError
from academy.labs.profiles import configured_profiles

if TYPE_CHECKING:
    from academy.config import Settings


def profile_title(settings: Settings, name: str | None, locale: str) -> str:
    """The title of lab profile ``name`` in ``locale`` (from ``hub_config/profiles.toml``).

    A profile that is no longer configured (an old lab row, an edited or unreadable file) gets a
    generic title: the key itself is never shown.
    """
    try:
        profile = configured_profiles(settings).get(name or "")
    except AcademyError:
        profile = None
    if profile is None or not profile.title:
        return _("Lab environment")
    return profile.title_for(locale)


def lab_state_label(state: object) -> str:
    """The learner-facing name of a lab state (a ``LabState`` or its value)."""
    value = str(getattr(state, "value", state))
    labels = {
        "queued": _("Waiting for a GPU"), "starting": _("Starting"), "running": _("Running"),
        "stopped": _("Stopped"), "failed": _("Failed"), "cancelled": _("Left the queue"),
    }
    return labels.get(value, _("Unknown"))
