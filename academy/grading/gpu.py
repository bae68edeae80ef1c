"""Which device grades a submission: the CPU, or for a GPU course (``grading_profile = "gpu"``) a GPU seat.

``grading_device`` is called by the grading worker before it grades a job.  For a GPU course it takes a seat
from the labs' inventory (``academy.labs.grading_seats``: only a free seat, never ahead of a learner waiting for
one), finds the device's files (``academy.labs.gpu.device_nodes``) and returns the sandbox policy that binds them
into the kernel's sandbox and names the device in ``CUDA_VISIBLE_DEVICES`` (``SandboxPolicy.with_gpu``: no
address-space limit, the memory cgroup instead).  Whenever that cannot be done (no GPU here, all seats taken,
learners waiting, the device gone, a MIG instance destroyed, no memory cgroup or no sandbox on this machine) the
submission is graded on the CPU as any other and ``problem`` says so and why, in the result's ``problems``
(``academy.grading.problem_text`` words it for learners).  A seat taken but not usable is given back at once, so
nothing is held that no kernel uses; a kernel is never granted a device it was not given a seat on.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from academy.catalog.models import Course
from academy.config import Settings
from academy.engine.sandbox import GpuGrant, SandboxPolicy, gpu_refusal
from academy.labs import gpu
from academy.labs.grading_seats import acquire_grading_seat, release_grading_seat

log = logging.getLogger(__name__)

CPU_FALLBACK = "graded on the CPU, not a GPU: "
"""How the problem line of a GPU course's attempt graded on the CPU starts (the reason follows)."""


@dataclass(frozen=True)
class GradingDevice:
    """Where one job grades: ``policy`` None means the usual CPU sandbox; ``hold_id`` is the GPU seat to renew
    and give back; ``problem`` why a GPU course's job grades on the CPU."""

    policy: SandboxPolicy | None = None
    hold_id: int | None = None
    problem: str | None = None

    @property
    def on_gpu(self) -> bool:
        return self.hold_id is not None


def grading_device(session: Session, settings: Settings, course: Course, *, job_id: int, worker: str,
                   hold_seconds: float, base_policy: SandboxPolicy | None = None,
                   now: dt.datetime | None = None) -> GradingDevice:
    """The device grading job ``job_id`` of ``course`` uses (see the module).  Flushes; the caller commits at once.

    ``base_policy`` is the sandbox policy a GPU policy is made from (the default one when None).
    """
    if course.grading_profile != "gpu":
        return GradingDevice()
    base = base_policy or SandboxPolicy()
    refused = gpu_refusal(base)  # before the seat: nothing is taken that this machine cannot use
    if refused:
        return GradingDevice(problem=CPU_FALLBACK + refused)
    seat = acquire_grading_seat(session, settings, job_id=job_id, course_id=course.id, worker=worker,
                                seconds=hold_seconds, now=now)
    if seat.hold is None:
        return GradingDevice(problem=CPU_FALLBACK + (seat.refusal or "no GPU seat"))
    hold = seat.hold
    try:
        nodes = gpu.device_nodes(hold.device, dev_root=settings.gpu_device_root,
                                 use_nvml=settings.gpu_devices is None)
    except gpu.DeviceGone as exc:
        log.warning("grading job %s: GPU seat on %s given back: %s", job_id, hold.device, exc)
        release_grading_seat(session, hold.id)
        return GradingDevice(problem=CPU_FALLBACK + str(exc))
    grant = GpuGrant.for_nodes(hold.device, nodes.visible, nodes.names, dev_root=settings.gpu_device_root,
                               memory_mb=hold.gpu_memory_mb)
    return GradingDevice(policy=base.with_gpu(grant), hold_id=hold.id)
