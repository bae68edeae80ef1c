"""Seats on GPUs: how many labs of a profile a device holds, what is taken, where the next lab goes.

An exclusive profile takes a whole device with nobody else on it.  A shared profile takes a seat of
``gpu_memory_mb`` MiB: a device holds ``(memory_mb - ACADEMY_GPU_RESERVE_MB) // gpu_memory_mb`` of them,
and seats of different profiles on one device add up by memory.  A device whose memory is unknown (a
configured inventory such as ``"0,1"``) holds ``per_device`` seats of a shared profile, and a shared
profile that states no memory takes ``1 / per_device`` of any device.

Every holder takes a share of its device (a fraction of the memory left after the reserve, or of the
seats when the memory is unknown), kept exact with ``Fraction`` so that 34 seats of 4,096 MiB on an
H200 are 34 and never 33.  Pure accounting over rows already loaded: no query, no NVML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from academy.labs.profiles import Profile

if TYPE_CHECKING:
    from academy.labs.models import GpuGradingHold, LabSession

WHOLE = Fraction(1)


@dataclass(frozen=True)
class Holder:
    """A starting or running lab on a device (or a grading job's seat) and what it takes of it."""

    lab: LabSession | GpuGradingHold
    exclusive: bool  # holds the whole device
    share: Fraction  # of the device's usable memory (of its seats when the memory is unknown)
    memory_mb: int | None  # the MiB it counts for (the whole device when exclusive); None when unknown


@dataclass
class DeviceSeats:
    """One device's seats: its memory, the reserve held back, its holders."""

    index: str
    name: str
    memory_mb: int | None
    reserve_mb: int
    present: bool = True
    holders: list[Holder] = field(default_factory=list)

    @property
    def usable_mb(self) -> int | None:
        """Memory seats may take: the device's memory less the reserve; None when unknown."""
        return None if self.memory_mb is None else max(self.memory_mb - self.reserve_mb, 0)

    @property
    def held_exclusively(self) -> bool:
        return any(h.exclusive for h in self.holders)

    @property
    def used(self) -> Fraction:
        """The share of the device its holders take (1: full)."""
        return WHOLE if self.held_exclusively else sum((h.share for h in self.holders), Fraction(0))

    @property
    def used_mb(self) -> int | None:
        """MiB in use by the holders (the whole memory when one holds it alone); None when unknown."""
        if self.memory_mb is None:
            return None
        if self.held_exclusively:
            return self.memory_mb
        return sum(h.memory_mb or 0 for h in self.holders)

    def seat_share(self, profile: Profile) -> Fraction | None:
        """The share one lab of ``profile`` takes here; None when not even one fits (no usable memory)."""
        if profile.exclusive:
            return WHOLE
        usable = self.usable_mb
        if usable == 0:
            return None
        if usable is None or profile.gpu_memory_mb is None:
            return Fraction(1, profile.per_device)
        return Fraction(profile.gpu_memory_mb, usable)

    def capacity(self, profile: Profile) -> int:
        """Labs of ``profile`` this device holds when nobody is on it."""
        share = self.seat_share(profile)
        return 0 if share is None else int(WHOLE // share)

    def free_seats(self, profile: Profile) -> int:
        """Labs of ``profile`` that could go on this device now (0 when it is no longer present)."""
        share = self.seat_share(profile)
        if not self.present or share is None or self.held_exclusively:
            return 0
        if profile.exclusive:
            return 0 if self.holders else 1
        return int((WHOLE - self.used) // share)

    def in_use(self, profile: Profile) -> int:
        """Labs of ``profile`` on this device now."""
        return sum(1 for h in self.holders if h.lab.profile == profile.name)

    def seat_memory_mb(self, profile: Profile) -> int | None:
        """The memory a lab of ``profile`` is granted here (``LabSession.gpu_memory_mb``); None: the whole device."""
        if profile.exclusive:
            return None
        if profile.gpu_memory_mb is not None:
            return profile.gpu_memory_mb
        usable = self.usable_mb
        return None if usable is None else usable // profile.per_device

    def free_key(self) -> tuple[bool, Fraction, str]:
        """Best fit: devices of known memory first, then the least free memory (or share of seats)."""
        left = WHOLE - self.used
        usable = self.usable_mb
        return (usable is None, left if usable is None else left * usable, self.index)

    def add(self, lab: LabSession | GpuGradingHold, profiles: Mapping[str, Profile]) -> Holder:
        """Count ``lab`` (or a grading job's seat, which counts the same way) as a holder of this device.

        A lab granted a seat counts its ``gpu_memory_mb``.  A lab without one counts as a whole device,
        unless its profile is shared: then it is a holder from before seats were measured in memory and
        takes ``1 / per_device`` of the device.  On a device of unknown memory a seat is ``1 / per_device``.
        """
        profile = profiles.get(lab.profile)
        shared = profile is not None and profile.shared
        per_device = profile.per_device if profile is not None and shared else 1
        usable = self.usable_mb
        if lab.gpu_memory_mb is None and not shared:
            holder = Holder(lab=lab, exclusive=True, share=WHOLE, memory_mb=self.memory_mb)
        elif usable is None or lab.gpu_memory_mb is None:
            memory = lab.gpu_memory_mb if usable is None else usable // per_device
            holder = Holder(lab=lab, exclusive=False, share=Fraction(1, per_device), memory_mb=memory)
        else:
            holder = Holder(lab=lab, exclusive=False, memory_mb=lab.gpu_memory_mb,
                            share=Fraction(lab.gpu_memory_mb, usable) if usable else WHOLE)
        self.holders.append(holder)
        return holder


def best_fit(devices: Iterable[DeviceSeats], profile: Profile) -> DeviceSeats | None:
    """Where a lab of ``profile`` goes now; None when nothing is free for it.

    Exclusive: the first device with nobody on it.  A seat: the device with the least free memory that
    still fits it and no exclusive holder, so that shared devices fill up and whole devices (and large
    ones) stay free for exclusive use.
    """
    candidates = [d for d in devices if d.free_seats(profile) > 0]
    if not candidates:
        return None
    if profile.exclusive:
        return min(candidates, key=lambda d: d.index)
    return min(candidates, key=DeviceSeats.free_key)


def fits_somewhere(devices: Iterable[DeviceSeats], profile: Profile) -> bool:
    """True when some present device could hold a lab of ``profile`` once free (it asks no more than one has)."""
    return any(d.present and d.capacity(profile) > 0 for d in devices)
