"""GPU seats for grading jobs: taken from the labs' inventory and counted with the labs' holders.

A course whose ``course.toml`` says ``grading_profile = "gpu"`` has its submissions graded with a GPU: the grading
job takes one seat of the lab profile ``ACADEMY_GRADING_GPU_PROFILE`` (``gpu-shared`` by default: a 4,096 MiB seat)
on a device of the same inventory the labs use, as a ``GpuGradingHold`` row that ``queue.device_seats`` counts like
a running lab.  So a device is never oversubscribed by labs and grading together.

Rules (``acquire_grading_seat``):

* **Learners first.** A grading job takes only a seat that is free now and only while nobody waits in the labs'
  GPU line: it never takes a seat ahead of a waiting learner, and it never waits itself; it grades on the CPU
  instead and says why (``GradingSeat.refusal``).
* **One at a time.** The seat is chosen after ``queue.sync_inventory`` updated the device rows, as the labs' line
  does (``queue.serve_queue``): on PostgreSQL the rows stay locked until the caller commits, so two hand-outs
  (labs or grading) cannot both count the same free seat; SQLite has one writer at a time.
* **Nothing unaccounted for.** The hold expires ``seconds`` after it was taken unless renewed
  (``renew_grading_seat``, from the worker's heartbeat); ``release_grading_seat`` deletes it when the job is done.
  A worker killed mid-job stops renewing and its seat lapses; lapsed rows are deleted at the next hand-out.

Functions flush; the caller commits (at once: the device rows stay locked until then).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from academy.config import Settings
from academy.db import utcnow
from academy.labs.models import GpuGradingHold
from academy.labs.profiles import configured_profiles
from academy.labs.queue import cluster_gpus, device_seats, sync_inventory, waiting_line
from academy.labs.seats import best_fit, fits_somewhere


@dataclass(frozen=True)
class GradingSeat:
    """A grading job's GPU seat (``hold``), or why it has none (``refusal``, one plain English line)."""

    hold: GpuGradingHold | None = None
    refusal: str | None = None


def acquire_grading_seat(session: Session, settings: Settings, *, job_id: int, course_id: int, worker: str,
                         seconds: float, now: dt.datetime | None = None) -> GradingSeat:
    """Take a GPU seat for grading job ``job_id`` if one is free now (see the module's rules).

    The seat is of the lab profile ``settings.grading_gpu_profile``, placed as a lab of that profile would be
    (``seats.best_fit``), and held until ``now + seconds`` unless renewed.  Returns the hold, or the refusal: no
    GPU on this machine, learners waiting for one, every seat taken, no device big enough, the profile not a GPU
    profile.  Flushes; the caller commits.
    """
    now = now or utcnow()
    name = settings.grading_gpu_profile
    profile = configured_profiles(settings).get(name)
    if profile is None or not profile.uses_gpu:
        return GradingSeat(refusal=f"the grading seat's profile '{name}' (ACADEMY_GRADING_GPU_PROFILE) is not a GPU "
                                   f"profile of {settings.lab_profiles_file.name}")
    if cluster_gpus(settings):
        return GradingSeat(refusal="no GPU on this grader (the cluster hands out the labs' GPUs)")
    devices = sync_inventory(session, settings)  # updates (and on PostgreSQL locks) the device rows
    session.execute(delete(GpuGradingHold).where(GpuGradingHold.expires_at <= now)
                    .execution_options(synchronize_session=False))
    if not devices:
        return GradingSeat(refusal="no GPU on this grader")
    if waiting_line(session):
        return GradingSeat(refusal="learners are waiting for a GPU (they come first)")
    seats = device_seats(session, settings, devices)
    seat = best_fit(seats, profile)
    if seat is None:
        if not fits_somewhere(seats, profile):
            return GradingSeat(refusal=f"no GPU here can hold a seat of profile '{name}'")
        return GradingSeat(refusal="every GPU seat is taken")
    hold = GpuGradingHold(device=seat.index, profile=profile.name, gpu_memory_mb=seat.seat_memory_mb(profile),
                          grading_job_id=job_id, course_id=course_id, worker=worker, acquired_at=now,
                          expires_at=now + dt.timedelta(seconds=seconds))
    session.add(hold)
    session.flush()
    return GradingSeat(hold=hold)


def renew_grading_seat(session: Session, hold_id: int, *, seconds: float, now: dt.datetime | None = None) -> bool:
    """Keep hold ``hold_id`` for ``seconds`` more; False when it is gone (lapsed and deleted). Flushes."""
    result = session.execute(update(GpuGradingHold).where(GpuGradingHold.id == hold_id)
                             .values(expires_at=(now or utcnow()) + dt.timedelta(seconds=seconds))
                             .execution_options(synchronize_session=False))
    return bool(result.rowcount)


def release_grading_seat(session: Session, hold_id: int) -> None:
    """Give the seat of hold ``hold_id`` back (nothing happens when it already lapsed). Flushes."""
    session.execute(delete(GpuGradingHold).where(GpuGradingHold.id == hold_id)
                    .execution_options(synchronize_session=False))
