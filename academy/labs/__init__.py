"""Labs: JupyterHub servers for learners (launch, GPU inventory and queue, quotas, metering).

``queue`` (who may launch, GPU inventory, the fair line, quotas), ``launch`` (the launch request,
the ``academy.start_lab`` job, stopping), ``notebooks`` (the learner's workspace), ``usage``
(hub events, the periodic sweep, quota warnings), ``reports`` (GPU use for admins).
"""

from academy.errors import AcademyError


class LabRefused(AcademyError):
    """A launch or workspace action the portal will not make; the message tells the learner why."""
