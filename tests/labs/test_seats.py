"""GPU seats by memory: seats per device from memory, reserve and profile; best-fit packing with mixed seat
sizes; exclusive labs beside seats; the fair line across profiles; devices of unknown memory; MIG devices
from NVML (a fake ``pynvml``: the only thing faked) and one that disappears; the configured inventory with
memory; a profile too big for every device; the admins' report."""

from __future__ import annotations

import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from academy.errors import AcademyError
from academy.labs import gpu
from academy.labs.models import LabSession, LabState
from academy.labs.profiles import Profile, load_profiles
from academy.labs.seats import DeviceSeats, best_fit, fits_somewhere
from tests.labs.fakehub import LABS, FakeHub, course_with_cohorts, enrolled_learner, lab_row, launch_lab

H200 = 143_771  # MiB, as NVML reports an H200
PROFILES = """
[profiles.cpu]
title = { ko = "CPU 실습 환경", en = "CPU lab" }
gpus = 0

[profiles.gpu]
title = { ko = "전용 GPU", en = "Dedicated GPU" }
gpus = 1
exclusive = true

[profiles.gpu-shared]
title = { ko = "공유 GPU", en = "Shared GPU" }
gpus = 1
gpu_memory_mb = 4096
per_device = 4

[profiles.gpu-large]
title = { ko = "큰 공유 GPU", en = "Large shared GPU" }
gpus = 1
gpu_memory_mb = 16384
per_device = 2

[profiles.gpu-counted]
title = { ko = "개수로 나눈 GPU", en = "Counted shared GPU" }
gpus = 1
shared = true
per_device = 3

[profiles.gpu-huge]
title = { ko = "아주 큰 GPU", en = "Huge GPU" }
gpus = 1
gpu_memory_mb = 200000
"""


def mig_uuid() -> str:
    """A MIG device's UUID as NVML gives it (R470 and later): "MIG-" and 36 characters, 40 in all."""
    return f"MIG-{uuid.uuid4()}"


@pytest.fixture
def profiles(tmp_path: Path) -> dict[str, Profile]:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES, encoding="utf-8")
    return load_profiles(path)


def configure(app: Flask, tmp_path: Path, devices: str | None, *, reserve: int = 1024) -> Any:
    """The app's settings with the test profiles, ``devices`` as the inventory and ``reserve`` MiB held back."""
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES, encoding="utf-8")
    settings = app.config["ACADEMY_SETTINGS"]
    settings.lab_profiles_file, settings.gpu_devices, settings.gpu_reserve_mb = path, devices, reserve
    return settings


def seat(profile: str, memory: int | None) -> LabSession:
    return LabSession(profile=profile, gpu_memory_mb=memory)


def gpu_course(app: Flask, make_track: Any, make_cohort: Any, profile: str) -> tuple[int, int]:
    """A course whose lab is ``profile``, and one of its cohorts."""
    from academy.catalog.models import Course
    from academy.extensions import db

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    with app.app_context():
        db.session.get(Course, course_id).lab_profile = profile
        db.session.commit()
    return course_id, cohort


def holders(app: Flask, make_user: Any, course_id: int, device: str, profile: str, memory: int | None,
            count: int = 1) -> list[int]:
    """``count`` learners running ``profile`` on ``device``, granted ``memory`` MiB each; their lab ids."""
    return [lab_row(app, make_user("learner"), course_id, profile=profile, gpus=1, device=device,
                    gpu_memory_mb=memory, state=LabState.running) for _ in range(count)]


# -- profiles and the inventory -----------------------------------------------------------------------------------

def test_shipped_shared_profile_is_a_4096_mib_seat_and_gpu_is_exclusive() -> None:
    from tests.support import ROOT

    shipped = load_profiles(ROOT / "hub_config" / "profiles.toml")
    assert shipped["gpu"].exclusive and shipped["gpu"].gpu_memory_mb is None
    assert shipped["gpu-shared"].shared and not shipped["gpu-shared"].exclusive
    assert (shipped["gpu-shared"].gpu_memory_mb, shipped["gpu-shared"].per_device) == (4096, 4)
    assert not shipped["cpu"].exclusive


@pytest.mark.parametrize("table, complaint", [
    ("gpus = 1\ngpu_memory_mb = 0", "gpu_memory_mb must be a positive"),
    ("gpus = 1\ngpu_memory_mb = -4096", "gpu_memory_mb must be a positive"),
    ("gpus = 1\ngpu_memory_mb = 40.5", "gpu_memory_mb must be a positive"),
    ("gpus = 1\ngpu_memory_mb = \"4G\"", "gpu_memory_mb must be a positive"),
    ("gpus = 1\nexclusive = true\ngpu_memory_mb = 4096", "not both"),
    ("gpus = 1\nexclusive = true\nshared = true", "not both"),
    ("gpus = 1\nshared = false\ngpu_memory_mb = 4096", "cannot go with shared = false"),
    ("gpus = 0\ngpu_memory_mb = 4096", "CPU profile"),
    ("gpus = 0\nexclusive = true", "CPU profile"),
    ("gpus = 1\nexclusive = \"yes\"", "exclusive is true or false"),
    ("gpus = 1\ngpu_memory_mb = 2048\ngpu_compute_percent = 0", "gpu_compute_percent is a whole number from 1"),
    ("gpus = 1\ngpu_memory_mb = 2048\ngpu_compute_percent = 101", "from 1 to 100"),
    ("gpus = 1\nexclusive = true\ngpu_compute_percent = 50", "for a seat"),
])
def test_nonsense_gpu_memory_is_refused_naming_file_and_profile(tmp_path: Path, table: str, complaint: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(f"[profiles.cpu]\ngpus = 0\n[profiles.odd]\n{table}\n", encoding="utf-8")
    with pytest.raises(AcademyError, match=complaint) as refused:
        load_profiles(path)
    assert str(path) in str(refused.value) and "'odd'" in str(refused.value)


def test_configured_inventory_takes_memory_and_names_a_malformed_entry() -> None:
    mig = mig_uuid()
    devices = gpu.parse_configured(f"0:NVIDIA H200:{H200}, 1::81559, {mig}:NVIDIA H200 MIG 1g.18gb:16384, 7")
    assert [(d.index, d.name, d.memory_mb) for d in devices] == [
        ("0", "NVIDIA H200", H200), ("1", "GPU 1", 81559), (mig, "NVIDIA H200 MIG 1g.18gb", 16384),
        ("7", "GPU 7", None)]
    for bad in ("0:NVIDIA H200:lots", "0:H200:0", "0:H200:-1", "0:H200:", "0:H200:1.5", "0:H200:٣", "0:H200:1e5"):
        with pytest.raises(ValueError, match="memory") as refused:
            gpu.parse_configured(f"1:ok:100,{bad}")
        assert repr(bad) in str(refused.value)
    with pytest.raises(ValueError, match="bad device index"):
        gpu.parse_configured("MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0")  # too long for the database


# -- seats per device ---------------------------------------------------------------------------------------------

def test_seats_per_device_from_memory_reserve_and_profile(profiles: dict[str, Profile]) -> None:
    h200 = DeviceSeats(index="0", name="NVIDIA H200", memory_mb=H200, reserve_mb=1024)
    shared, large, counted, exclusive = (profiles[n] for n in ("gpu-shared", "gpu-large", "gpu-counted", "gpu"))
    assert h200.capacity(shared) == (H200 - 1024) // 4096 == 34  # not 4
    assert h200.capacity(large) == 8 and h200.capacity(exclusive) == 1
    assert h200.capacity(counted) == 3  # a shared profile without memory: per_device of any device
    assert DeviceSeats(index="0", name="H200", memory_mb=H200, reserve_mb=0).capacity(shared) == 35
    assert DeviceSeats(index="0", name="H200", memory_mb=H200, reserve_mb=20_000).capacity(shared) == 30
    unknown = DeviceSeats(index="0", name="GPU 0", memory_mb=None, reserve_mb=1024)
    assert (unknown.capacity(shared), unknown.capacity(large), unknown.capacity(exclusive)) == (4, 2, 1)
    small = DeviceSeats(index="1", name="MIG 1g.5gb", memory_mb=4864, reserve_mb=1024)
    assert small.capacity(shared) == 0 and small.capacity(exclusive) == 1
    assert DeviceSeats(index="1", name="tiny", memory_mb=900, reserve_mb=1024).capacity(counted) == 0
    assert not fits_somewhere([small], shared) and fits_somewhere([small, unknown], shared)
    assert not fits_somewhere([h200], profiles["gpu-huge"])


def test_mixed_seat_sizes_add_up_by_memory(profiles: dict[str, Profile]) -> None:
    shared, large, exclusive = profiles["gpu-shared"], profiles["gpu-large"], profiles["gpu"]
    device = DeviceSeats(index="0", name="L40S", memory_mb=46_068, reserve_mb=1024)  # 45,044 MiB for seats
    for lab in (seat("gpu-large", 16384), seat("gpu-large", 16384), seat("gpu-shared", 4096)):
        device.add(lab, profiles)
    assert device.used_mb == 36_864 and not device.held_exclusively
    assert (device.free_seats(shared), device.free_seats(large), device.free_seats(exclusive)) == (1, 0, 0)
    assert (device.in_use(large), device.in_use(shared)) == (2, 1)
    device.add(seat("gpu-shared", 4096), profiles)
    assert device.free_seats(shared) == 0  # 4,084 MiB left: less than a seat


def test_old_holders_count_as_a_share_of_their_device(profiles: dict[str, Profile]) -> None:
    """Labs granted before seats had memory (no gpu_memory_mb): a shared profile's lab is 1/per_device."""
    known = DeviceSeats(index="0", name="H200", memory_mb=H200, reserve_mb=1024)
    old = known.add(seat("gpu-shared", None), profiles)
    assert not old.exclusive and old.memory_mb == (H200 - 1024) // 4
    assert known.free_seats(profiles["gpu-shared"]) == 26  # three quarters of 142,747 MiB in 4,096 MiB seats
    unknown = DeviceSeats(index="1", name="GPU 1", memory_mb=None, reserve_mb=1024)
    for _ in range(3):
        unknown.add(seat("gpu-shared", None), profiles)
    assert unknown.free_seats(profiles["gpu-shared"]) == 1 and unknown.free_seats(profiles["gpu-large"]) == 0
    whole = DeviceSeats(index="2", name="GPU 2", memory_mb=H200, reserve_mb=1024)
    assert whole.add(seat("gpu", None), profiles).exclusive
    assert whole.add(seat("removed-profile", None), profiles).exclusive  # unknown now: the safe reading
    assert whole.free_seats(profiles["gpu-shared"]) == 0 and whole.used_mb == H200


def test_best_fit_takes_the_fullest_device_that_fits(profiles: dict[str, Profile]) -> None:
    shared, exclusive = profiles["gpu-shared"], profiles["gpu"]
    big = DeviceSeats(index="0", name="H200", memory_mb=H200, reserve_mb=1024)
    other = DeviceSeats(index="1", name="H200", memory_mb=H200, reserve_mb=1024)
    mig = DeviceSeats(index=mig_uuid(), name="NVIDIA H200 MIG 1g.18gb", memory_mb=17_408, reserve_mb=1024)
    assert best_fit([big, other, mig], shared) is mig  # the smallest that fits: whole H200s stay free
    assert best_fit([big, other, mig], exclusive) is big
    for _ in range(4):
        mig.add(seat("gpu-shared", 4096), profiles)
    big.add(seat("gpu-shared", 4096), profiles)
    assert best_fit([big, other, mig], shared) is big  # the MIG device is full; "0" is fuller than "1"
    assert best_fit([big, other, mig], exclusive) is other
    other.add(seat("gpu", None), profiles)
    assert best_fit([big, other, mig], exclusive) is None
    assert best_fit([big, other, mig], shared) is big


# -- on the database, through launch and the queue ----------------------------------------------------------------

@pytest.mark.app_config(**LABS)
def test_launches_pack_seats_by_memory_and_record_the_grant(app: Flask, tmp_path: Path, make_user: Any,
                                                            make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db

    mig = mig_uuid()
    configure(app, tmp_path, f"0:NVIDIA H200:{H200},{mig}:NVIDIA H200 MIG 1g.18gb:17408")
    course_id, cohort = gpu_course(app, make_track, make_cohort, "gpu-shared")
    hub = FakeHub()
    learners = [enrolled_learner(app, make_user, cohort) for _ in range(5)]
    results = [launch_lab(app, hub, user, course_id) for user in learners]
    assert [state for _id, state, _device in results] == ["running"] * 5
    assert [device for _id, _state, device in results] == [mig] * 4 + ["0"]  # 16,384 MiB: four seats
    assert hub.running[f"u{learners[0]}"]["device"] == mig  # the hub sets CUDA_VISIBLE_DEVICES to it
    with app.app_context():
        assert {db.session.get(LabSession, lab_id).gpu_memory_mb for lab_id, _s, _d in results} == {4096}


@pytest.mark.app_config(**LABS)
def test_exclusive_and_seats_never_share_a_device(app: Flask, tmp_path: Path, make_user: Any,
                                                   make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.profiles import configured_profiles
    from academy.labs.queue import free_device

    settings = configure(app, tmp_path, f"0:NVIDIA H200:{H200},1:NVIDIA H200:{H200}")
    course_id, _cohort = course_with_cohorts(app, make_track, make_cohort)
    with app.app_context():
        profiles = configured_profiles(settings)
        assert free_device(db.session, settings, profiles["gpu"]) == "0"
    holders(app, make_user, course_id, "0", "gpu-shared", 4096)
    with app.app_context():
        assert free_device(db.session, settings, profiles["gpu"]) == "1"  # never beside a seat
        assert free_device(db.session, settings, profiles["gpu-shared"]) == "0"  # "1" stays whole
    holders(app, make_user, course_id, "1", "gpu", None)
    holders(app, make_user, course_id, "0", "gpu-large", 16384, count=8)  # with the seat: 135,168 of 142,747
    with app.app_context():
        assert free_device(db.session, settings, profiles["gpu"]) is None
        assert free_device(db.session, settings, profiles["gpu-large"]) is None  # 7,579 MiB left
        assert free_device(db.session, settings, profiles["gpu-shared"]) == "0"
    holders(app, make_user, course_id, "0", "gpu-shared", 4096)
    with app.app_context():
        assert free_device(db.session, settings, profiles["gpu-shared"]) is None  # 3,483 MiB left: not on "1"


@pytest.mark.app_config(**LABS)
def test_devices_of_unknown_memory_fall_back_to_per_device(app: Flask, tmp_path: Path, make_user: Any,
                                                           make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.profiles import configured_profiles
    from academy.labs.queue import free_device

    settings = configure(app, tmp_path, "0,1")
    course_id, _cohort = course_with_cohorts(app, make_track, make_cohort)
    with app.app_context():
        profiles = configured_profiles(settings)
    holders(app, make_user, course_id, "0", "gpu-shared", 4096, count=2)
    holders(app, make_user, course_id, "0", "gpu-shared", None)  # granted before seats had memory
    with app.app_context():
        assert free_device(db.session, settings, profiles["gpu-shared"]) == "0"  # 3 of 4: fill it first
        assert free_device(db.session, settings, profiles["gpu-large"]) == "1"  # half a device: not on "0"
    holders(app, make_user, course_id, "0", "gpu-shared", 4096)
    holders(app, make_user, course_id, "1", "gpu-large", 16384)
    with app.app_context():
        assert free_device(db.session, settings, profiles["gpu-shared"]) == "1"
        assert free_device(db.session, settings, profiles["gpu-large"]) == "1"
        assert free_device(db.session, settings, profiles["gpu"]) is None


@pytest.mark.app_config(**LABS)
def test_the_fair_line_across_profiles(app: Flask, tmp_path: Path, make_user: Any, make_track: Any,
                                       make_cohort: Any) -> None:
    """The whole-GPU waiter at the head keeps its place; a seat that fits behind it is still given."""
    from academy.extensions import db
    from academy.labs.launch import stop_lab
    from academy.labs.queue import place_in_line

    settings = configure(app, tmp_path, f"0:NVIDIA H200:{H200}")
    whole_course, whole_cohort = gpu_course(app, make_track, make_cohort, "gpu")
    seat_course, seat_cohort = gpu_course(app, make_track, make_cohort, "gpu-shared")
    hub = FakeHub()
    (first_seat,) = holders(app, make_user, seat_course, "0", "gpu-shared", 4096)
    whole_a, whole_b = (enrolled_learner(app, make_user, whole_cohort) for _ in range(2))
    seated = enrolled_learner(app, make_user, seat_cohort)
    a_id, a_state, _ = launch_lab(app, hub, whole_a, whole_course)
    b_id, b_state, _ = launch_lab(app, hub, whole_b, whole_course)
    seat_id, seat_state, seat_device = launch_lab(app, hub, seated, seat_course)
    assert (a_state, b_state) == ("queued", "queued")  # the device has a seat holder: no whole GPU
    assert (seat_state, seat_device) == ("running", "0")  # behind them, a seat on the shared device
    with app.app_context():
        a, b = db.session.get(LabSession, a_id), db.session.get(LabSession, b_id)
        assert (place_in_line(db.session, a), place_in_line(db.session, b)) == (1, 2)
        for lab_id in (first_seat, seat_id):
            stop_lab(db.session, hub, settings, db.session.get(LabSession, lab_id), reason="user",
                     actor=None)  # type: ignore[arg-type]
        db.session.commit()
        db.session.refresh(a)
        db.session.refresh(b)
        assert (a.state, a.device, a.gpu_memory_mb) == (LabState.starting, "0", None)  # the head, not B
        assert b.state == LabState.queued and place_in_line(db.session, b) == 1


@pytest.mark.app_config(**LABS)
def test_a_profile_bigger_than_every_device_is_refused_at_launch(app: Flask, tmp_path: Path, make_user: Any,
                                                                 make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs import LabRefused

    settings = configure(app, tmp_path, f"0:NVIDIA H200:{H200},1")
    course_id, cohort = gpu_course(app, make_track, make_cohort, "gpu-huge")
    hub = FakeHub()
    learner = enrolled_learner(app, make_user, cohort)
    assert launch_lab(app, hub, learner, course_id)[1] == "running"  # "1" has unknown memory: per_device
    with app.app_context():
        db.session.execute(LabSession.__table__.delete())
        db.session.commit()
    hub.running.clear()
    settings.gpu_devices = f"0:NVIDIA H200:{H200}"
    with pytest.raises(LabRefused, match="200,000") as refused:
        launch_lab(app, hub, learner, course_id)
    assert "gpu-huge" not in str(refused.value)
    assert hub.calls == [("ensure_user", f"u{learner}"), ("start", f"u{learner}")]  # only the first launch
    with app.app_context():
        assert db.session.scalar(select(func.count(LabSession.id))) == 0  # nothing queued
    assert launch_lab(app, hub, learner, course_id, profile="cpu")[1] == "running"


@pytest.mark.app_config(**LABS)
def test_the_reserve_decides_whether_a_seat_fits(app: Flask, tmp_path: Path, make_user: Any, make_track: Any,
                                                 make_cohort: Any) -> None:
    from academy.labs import LabRefused

    settings = configure(app, tmp_path, "0:NVIDIA L4:23034,1:NVIDIA L4:23034", reserve=8000)
    course_id, cohort = gpu_course(app, make_track, make_cohort, "gpu-large")
    hub = FakeHub()
    learner = enrolled_learner(app, make_user, cohort)
    with pytest.raises(LabRefused, match="16,384"):  # 15,034 MiB after the reserve
        launch_lab(app, hub, learner, course_id)
    settings.gpu_reserve_mb = 1024
    assert launch_lab(app, hub, learner, course_id)[1:] == ("running", "0")


# -- MIG through NVML ---------------------------------------------------------------------------------------------

class FakeNvml(types.ModuleType):
    """``pynvml`` as an H200 machine answers: GPU 0 in MIG mode with the instances in ``slots`` (slot -> UUID,
    name, MiB), GPU 1 (when ``gpus`` is 2) an H200 that does not support MIG."""

    NVML_DEVICE_MIG_ENABLE = 1

    class NVMLError(Exception):
        pass

    def __init__(self, slots: dict[int, tuple[str, str, int]], *, gpus: int = 2) -> None:
        super().__init__("pynvml")
        self.slots, self.gpus = slots, gpus

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"gpu{i}"

    def nvmlDeviceGetMigMode(self, handle: str) -> tuple[int, int]:
        if handle == "gpu1":
            raise self.NVMLError("Not Supported")
        return (1, 1)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: str) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: str, slot: int) -> int:
        if slot not in self.slots:
            raise self.NVMLError("Not Found")
        return slot

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        return self.slots[handle][0].encode()

    def nvmlDeviceGetName(self, handle: str | int) -> bytes:
        return (self.slots[handle][1] if isinstance(handle, int) else "NVIDIA H200").encode()

    def nvmlDeviceGetMemoryInfo(self, handle: str | int) -> Any:
        mib = self.slots[handle][2] if isinstance(handle, int) else H200
        return types.SimpleNamespace(total=mib * 1024 * 1024)


def test_nvml_lists_each_mig_instance_as_a_device_and_not_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    small, large = mig_uuid(), mig_uuid()
    fake = FakeNvml({0: (small, "NVIDIA H200 MIG 1g.18gb", 16_128), 2: (large, "NVIDIA H200 MIG 3g.71gb", 71_424),
                     3: ("MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0", "NVIDIA H200 MIG 1g.18gb", 16_128)})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    devices = gpu.inventory(None)
    assert [(d.index, d.name, d.memory_mb, d.source) for d in devices] == [
        (small, "NVIDIA H200 MIG 1g.18gb", 16_128, "nvml"), (large, "NVIDIA H200 MIG 3g.71gb", 71_424, "nvml"),
        ("1", "NVIDIA H200", H200, "nvml")]  # GPU 0 itself is not handed out; the old-style name is skipped
    assert all(len(d.index) <= gpu.MAX_INDEX for d in devices)


@pytest.mark.app_config(**{**LABS, "gpu_devices": None})
def test_a_mig_device_that_disappears_keeps_its_holders_and_takes_nobody_new(
        app: Flask, tmp_path: Path, make_user: Any, make_track: Any, make_cohort: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.catalog.models import Course
    from academy.extensions import db
    from academy.labs import LabRefused
    from academy.labs.launch import launch, stop_lab
    from academy.labs.models import GpuDevice
    from academy.labs.profiles import configured_profiles
    from academy.labs.queue import free_device, serve_queue
    from academy.labs.reports import device_report
    from academy.users.models import User

    small, large = mig_uuid(), mig_uuid()
    fake = FakeNvml({0: (small, "NVIDIA H200 MIG 1g.18gb", 16_128), 2: (large, "NVIDIA H200 MIG 3g.71gb", 71_424)},
                    gpus=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    settings = configure(app, tmp_path, None)
    course_id, cohort = gpu_course(app, make_track, make_cohort, "gpu-large")
    hub = FakeHub()
    # The 3g.71gb instance holds four 16,384 MiB seats (70,400 MiB after the reserve); the 1g.18gb none.
    learners = [enrolled_learner(app, make_user, cohort) for _ in range(5)]
    results = [launch_lab(app, hub, user, course_id) for user in learners]
    assert [r[1:] for r in results] == [("running", large)] * 4 + [("queued", None)]
    with app.app_context():
        profiles = configured_profiles(settings)
        # Best fit: the 4,864 MiB left on the 3g.71gb instance before the 15,104 MiB of the 1g.18gb one.
        assert free_device(db.session, settings, profiles["gpu-shared"]) == large
    fake.slots.pop(2)  # the 3g.71gb instance is destroyed (nvidia-smi mig -dci/-dgi)
    with app.app_context():
        assert free_device(db.session, settings, profiles["gpu-large"]) is None
        assert db.session.scalar(select(GpuDevice.present).where(GpuDevice.index == large)) is False
        held = db.session.get(LabSession, results[0][0])
        assert held.state == LabState.running and held.device == large  # runs on until it stops
        # Nothing left here can hold a 16,384 MiB seat: the waiter is told so instead of waiting for ever.
        serve_queue(db.session, settings)
        db.session.commit()
        waiter = db.session.get(LabSession, results[4][0])
        assert (waiter.state, waiter.stop_reason, waiter.device) == (LabState.failed, "too_big", None)
        # Its learners reopen their running labs as before; a new learner is told no GPU here can hold the lab.
        again = launch(db.session, hub, settings, user=db.session.get(User, learners[0]),  # type: ignore[arg-type]
                       course=db.session.get(Course, course_id), assignment=None)
        assert (again.id, again.state, again.device) == (results[0][0], LabState.running, large)
        db.session.commit()
        with pytest.raises(LabRefused, match="16,384"):
            launch(db.session, hub, settings, user=db.session.get(User, enrolled_learner(app, make_user, cohort)),
                   course=db.session.get(Course, course_id), assignment=None)  # type: ignore[arg-type]
        db.session.rollback()
        gone = next(d for d in device_report(db.session, settings) if d.device.index == large)
        assert not gone.present and len(gone.holders) == 4
        assert all(s.free == 0 for s in gone.seats)
        for lab_id, _state, _device in results[:4]:
            stop_lab(db.session, hub, settings, db.session.get(LabSession, lab_id), reason="user",
                     actor=None)  # type: ignore[arg-type]
        db.session.commit()
        assert large not in {d.device.index for d in device_report(db.session, settings)}
        db.session.commit()


# -- the admins' report -------------------------------------------------------------------------------------------

@pytest.mark.app_config(**LABS, WTF_CSRF_ENABLED=False)
def test_admin_report_shows_memory_seats_and_holders(app: Flask, tmp_path: Path, make_user: Any,
                                                     make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.reports import device_report
    from academy.users.models import User
    from tests.conftest import login

    settings = configure(app, tmp_path, f"0:NVIDIA H200:{H200},1")
    course_id, _cohort = course_with_cohorts(app, make_track, make_cohort)
    two = holders(app, make_user, course_id, "0", "gpu-shared", 4096, count=2)
    holders(app, make_user, course_id, "0", "gpu-shared", None)  # from before seats had memory: 35,686 MiB
    holders(app, make_user, course_id, "0", "gpu-large", 16384)
    holders(app, make_user, course_id, "1", "gpu", None)
    with app.app_context():
        learner = db.session.get(User, db.session.get(LabSession, two[0]).user_id)
        learner.name = "좌석학습자"
        db.session.commit()
        report = {d.device.index: d for d in device_report(db.session, settings)}
        h200, unknown = report["0"], report["1"]
        assert (h200.memory_mb, h200.reserve_mb, h200.used_mb) == (H200, 1024, 2 * 4096 + 35_686 + 16_384)
        assert h200.free_mb == H200 - 1024 - 60_262
        seats = {s.profile.name: (s.capacity, s.in_use, s.free) for s in h200.seats}
        # 142,747 MiB less 8,192 + 142,747/4 + 16,384 leaves 82,484.25 MiB: 20 seats of 4,096, 5 of 16,384.
        assert seats == {"gpu": (1, 0, 0), "gpu-shared": (34, 3, 20), "gpu-large": (8, 1, 5), "gpu-counted": (3, 0, 1),
                         "gpu-huge": (0, 0, 0)}
        named = [(h.learner, h.course.id, h.profile, h.memory_mb) for h in h200.holders if h.learner == "좌석학습자"]
        assert named == [("좌석학습자", course_id, "gpu-shared", 4096)]
        assert sorted(h.memory_mb or 0 for h in h200.holders) == [4096, 4096, 16384, 35_686]
        assert (unknown.memory_mb, unknown.used_mb, unknown.free_mb) == (None, None, None)
        assert {s.profile.name: (s.capacity, s.in_use, s.free) for s in unknown.seats}["gpu-shared"] == (4, 0, 0)
        assert [h.exclusive for h in unknown.holders] == [True]
    make_user("admin", email="admin@example.kr")
    client = app.test_client()
    assert login(client, "admin@example.kr").status_code == 302
    page = client.get("/labs/manage").get_data(as_text=True)
    assert "143,771 MiB" in page and "1,024 MiB" in page and "좌석학습자" in page
    assert "공유 GPU" in page and "큰 공유 GPU" in page and "아주 큰 GPU" in page  # profile titles ...
    assert "gpu-shared" not in page and "gpu-large" not in page  # ... never their keys
    # A running lab's device is named as in the GPUs table, not by a bare number (which reads as "no GPU").
    running = page.split("data-gpu-device=")[0]
    assert 'NVIDIA H200 <span class="text-muted small">0</span>' in running
    assert 'GPU 1 <span class="text-muted small">1</span>' in running and "<td>0</td>" not in running
