"""GPU grading (issue 17, part 3): the sandbox binds a device only for a granted GPU seat, seats held by grading
count with the labs' seats and lapse, and every way of not getting a usable GPU grades on the CPU and says so.

There is no GPU on the test machines: device files are stand-ins (plain files under ``tmp_path``, handed to the
sandbox through ``ACADEMY_GPU_DEVICE_ROOT``'s setting) and NVML is a fake module (``tests.labs.test_seats``).  One
test starts a real sandboxed kernel and reads the stand-in device file from inside.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from academy.engine.sandbox import GiB, GpuGrant, SandboxPolicy, isolation, run_cells, zygote
from academy.engine.sandbox.launch import Layout, _bwrap_args, _kernel_env, _rlimit_args
from academy.engine.sandbox.report import IsolationReport
from academy.labs import gpu
from academy.labs.models import GpuGradingHold, LabSession, LabState
from tests.engine.sandboxing import assert_no_leftovers
from tests.labs.fakehub import LABS, course_with_cohorts, lab_row
from tests.labs.test_seats import H200, FakeNvml, configure

NODES = ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")


def stand_in_devices(root: Path, names: tuple[str, ...] = NODES) -> Path:
    """Plain files standing in for NVIDIA device files; each holds its own name."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"stand-in {name}\n")
        os.chmod(root / name, 0o666)
    return root


def good_report(mode: str = "root") -> IsolationReport:
    return IsolationReport(bwrap="/usr/bin/bwrap", namespaces=True, mode=mode, uid_drop=mode == "root",
                           python_ok=True, cgroup_kill=True, memory_cgroup=True, cgroups={"memory": "/x"})


def argv(policy: SandboxPolicy, tmp_path: Path, mode: str = "root") -> list[str]:
    """The bubblewrap arguments of a kernel of ``policy`` (nothing is started)."""
    private = tmp_path / "private"
    layout = Layout(private=private, conn=private / "conn", etc=private / "etc", home=private / "home",
                    tmp=private / "tmp", workdir=tmp_path / "work", seccomp=None, host_uid=3_000_001)
    return _bwrap_args(policy, good_report(mode), layout)


def triples(args: list[str], option: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, arg in enumerate(args) if arg == option]


def grant_for(index: str, root: Path) -> GpuGrant:
    nodes = gpu.device_nodes(index, dev_root=str(root), use_nvml=False)
    return GpuGrant.for_nodes(index, nodes.visible, nodes.names, dev_root=str(root), memory_mb=4096)


# -- the sandbox's command line --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["root", "userns"])
def test_only_the_granted_device_is_bound_and_named(tmp_path: Path, mode: str) -> None:
    root = stand_in_devices(tmp_path / "dev")
    policy = SandboxPolicy(python=sys.executable).with_gpu(grant_for("1", root))
    args = argv(policy, tmp_path, mode)
    assert triples(args, "--dev-bind") == [
        (str(root / "nvidia1"), "/dev/nvidia1"), (str(root / "nvidiactl"), "/dev/nvidiactl"),
        (str(root / "nvidia-uvm"), "/dev/nvidia-uvm"), (str(root / "nvidia-uvm-tools"), "/dev/nvidia-uvm-tools")]
    assert not any("nvidia0" in arg for arg in args), "another GPU's device file is never bound"
    assert args.index("--dev-bind") > args.index("--dev"), "bound onto the minimal /dev, after it is made"
    env = dict(triples(args, "--setenv"))
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_a_kernel_without_a_grant_sees_no_gpu(tmp_path: Path) -> None:
    stand_in_devices(tmp_path / "dev")
    args = argv(SandboxPolicy(python=sys.executable), tmp_path)
    assert "--dev-bind" not in args and not any("nvidia" in arg for arg in args)
    assert "CUDA_VISIBLE_DEVICES" not in dict(triples(args, "--setenv"))
    assert "CUDA_VISIBLE_DEVICES" not in _kernel_env(SandboxPolicy(python=sys.executable), Layout(
        private=tmp_path, conn=tmp_path, etc=tmp_path, home=tmp_path, tmp=tmp_path, workdir=tmp_path, seccomp=None,
        host_uid=None), sandboxed=False)


def test_a_grant_drops_the_address_space_limit_for_the_memory_cgroup(tmp_path: Path) -> None:
    if not _rlimit_args(SandboxPolicy()):
        pytest.skip("prlimit (util-linux) is not installed")
    cpu = SandboxPolicy(memory_bytes=2 * GiB, address_space_bytes=4 * GiB)
    granted = cpu.with_gpu(grant_for("0", stand_in_devices(tmp_path / "dev")))
    assert f"--as={4 * GiB}" in _rlimit_args(cpu)
    assert not any(arg.startswith("--as") for arg in _rlimit_args(granted)), "CUDA cannot start under RLIMIT_AS"
    assert granted.address_space_bytes is None and granted.memory_bytes == 4 * GiB
    assert any(arg.startswith("--cpu=") for arg in _rlimit_args(granted)), "the other limits stay"
    # Even a policy that names an address-space limit beside a grant gets none.
    from dataclasses import replace

    assert not any(arg.startswith("--as") for arg in _rlimit_args(replace(granted, address_space_bytes=GiB)))


def test_a_granted_kernel_never_comes_from_a_zygote(tmp_path: Path) -> None:
    cpu = SandboxPolicy(python=sys.executable)
    granted = cpu.with_gpu(grant_for("0", stand_in_devices(tmp_path / "dev")))
    report = good_report()
    assert zygote.usable(cpu, report) == (os.geteuid() == 0 and hasattr(os, "pidfd_open"))
    assert not zygote.usable(granted, report)
    assert zygote.lease(granted, report, tmp_path) is None
    # Zygotes are kept per policy: a CPU kernel's zygote is never one whose sandbox holds a device.
    assert cpu != granted and hash(cpu) != hash(granted)


def test_gpu_refusal_needs_the_sandbox_and_a_memory_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    reports = {"ok": good_report(), "no memory cgroup": IsolationReport(namespaces=True, python_ok=True),
               "unsandboxed": IsolationReport(memory_cgroup=True)}
    for name, report in reports.items():
        monkeypatch.setattr(isolation, "probe_isolation", lambda policy=None, report=report: report)
        refusal = isolation.gpu_refusal(SandboxPolicy())
        if name == "ok":
            assert refusal is None
        elif name == "no memory cgroup":
            assert refusal and "no memory cgroup" in refusal and "address-space limit" in refusal
        else:
            assert refusal and "sandbox is not available" in refusal


# -- which device files a device needs ---------------------------------------------------------------------------

def test_device_files_of_a_configured_gpu(tmp_path: Path) -> None:
    root = stand_in_devices(tmp_path / "dev", ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset"))
    assert gpu.device_nodes("0", dev_root=str(root), use_nvml=False) == gpu.DeviceNodes(
        visible="0", names=("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-modeset"))
    (root / "nvidia-uvm").unlink()
    with pytest.raises(gpu.DeviceGone, match="nvidia-uvm missing"):
        gpu.device_nodes("0", dev_root=str(root), use_nvml=False)
    with pytest.raises(gpu.DeviceGone, match="nvidia7"):
        gpu.device_nodes("7", dev_root=str(root), use_nvml=False)
    with pytest.raises(gpu.DeviceGone, match="not a GPU index"):
        gpu.device_nodes("../0", dev_root=str(root), use_nvml=False)
    with pytest.raises(ValueError):
        GpuGrant.for_nodes("0", "0", ("../sda",), dev_root=str(root))


class MigNvml(FakeNvml):
    """``FakeNvml`` that also finds devices by UUID (less those in ``vanished``) and knows minor numbers."""

    def __init__(self, slots: dict[int, tuple[str, str, int]], **kwargs: Any) -> None:
        super().__init__(slots, **kwargs)
        self.vanished: set[str] = set()

    def nvmlDeviceGetHandleByUUID(self, value: str) -> int:
        for slot, (found, _name, _mib) in self.slots.items():
            if found == value and found not in self.vanished:
                return slot
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: int) -> str:
        return "gpu0"

    def nvmlDeviceGetMinorNumber(self, handle: str) -> int:
        return {"gpu0": 0, "gpu1": 1}[handle]

    def nvmlDeviceGetGpuInstanceId(self, handle: int) -> int:
        return handle + 1

    def nvmlDeviceGetComputeInstanceId(self, handle: int) -> int:
        return 0

    def nvmlDeviceGetUUID(self, handle: str | int) -> bytes:
        return b"GPU-1d2c3b4a-0000-1111-2222-333344445555" if handle == "gpu1" else super().nvmlDeviceGetUUID(handle)


def mig_uuid() -> str:
    return f"MIG-{uuid.uuid4()}"


def test_a_mig_instance_needs_its_gpu_and_its_two_capability_files(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    small, large = mig_uuid(), mig_uuid()
    fake = MigNvml({0: (small, "NVIDIA H200 MIG 1g.18gb", 16_128), 2: (large, "NVIDIA H200 MIG 3g.71gb", 71_424)})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    minors = tmp_path / "mig-minors"
    minors.write_text("config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n"
                      "gpu0/gi3/access 30\ngpu0/gi3/ci0/access 31\n")
    root = stand_in_devices(tmp_path / "dev", (*NODES, "nvidia-caps/nvidia-cap12", "nvidia-caps/nvidia-cap13",
                                               "nvidia-caps/nvidia-cap30", "nvidia-caps/nvidia-cap31"))
    nodes = gpu.device_nodes(large, dev_root=str(root), mig_minors=str(minors))
    assert nodes.visible == large
    assert nodes.names[:3] == ("nvidia0", "nvidia-caps/nvidia-cap30", "nvidia-caps/nvidia-cap31")
    args = argv(SandboxPolicy(python=sys.executable).with_gpu(
        GpuGrant.for_nodes(large, nodes.visible, nodes.names, dev_root=str(root))), tmp_path)
    bound = [dest for _src, dest in triples(args, "--dev-bind")]
    assert "/dev/nvidia-caps/nvidia-cap30" in bound and "/dev/nvidia-caps/nvidia-cap12" not in bound
    assert "/dev/nvidia1" not in bound and dict(triples(args, "--setenv"))["CUDA_VISIBLE_DEVICES"] == large
    # A whole GPU through NVML is named by its UUID and bound by its minor number.
    assert gpu.device_nodes("1", dev_root=str(root), mig_minors=str(minors)) == gpu.DeviceNodes(
        visible="GPU-1d2c3b4a-0000-1111-2222-333344445555",
        names=("nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"))
    fake.vanished.add(large)  # nvidia-smi mig -dci / -dgi
    with pytest.raises(gpu.DeviceGone, match=f"MIG device {large} is no longer present"):
        gpu.device_nodes(large, dev_root=str(root), mig_minors=str(minors))
    minors.write_text("gpu0/gi1/access 12\n")  # the instance's compute instance went away
    with pytest.raises(gpu.DeviceGone, match="no longer present"):
        gpu.device_nodes(small, dev_root=str(root), mig_minors=str(minors))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML at all: a MIG instance cannot be found
    with pytest.raises(gpu.DeviceGone, match="NVML"):
        gpu.device_nodes(small, dev_root=str(root), use_nvml=False)


# -- a real kernel with a stand-in device ------------------------------------------------------------------------

def test_a_sandboxed_kernel_sees_its_granted_device_file_and_no_other(base_policy: SandboxPolicy, workdir: Path,
                                                                      tmp_path: Path) -> None:
    root = stand_in_devices(tmp_path / "dev")
    policy = base_policy.with_gpu(grant_for("0", root))
    out = run_cells(policy, workdir, [
        "open('/dev/nvidia0').read()",
        "import os\nsorted(n for n in os.listdir('/dev') if n.startswith('nvidia'))",
        "os.environ['CUDA_VISIBLE_DEVICES']",
        "import resource\nresource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY",
    ], timeout=30)
    assert [o.status for o in out] == ["ok"] * 4, [o.error for o in out]
    assert out[0].result == repr("stand-in nvidia0\n")
    assert out[1].result == repr(["nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidiactl"])
    assert out[2].result == repr("0") and out[3].result == "True"
    assert_no_leftovers(workdir)
    plain = run_cells(base_policy, workdir, ["import os\n[n for n in os.listdir('/dev') if 'nvidia' in n]"])
    assert plain[0].result == "[]"


# -- seats: grading and labs count against each other ------------------------------------------------------------

def gpu_settings(app: Flask, tmp_path: Path, devices: str | None, **extra: Any) -> Any:
    """The test profiles, ``devices`` as the inventory, stand-in device files; grading seats of gpu-shared."""
    settings = configure(app, tmp_path, devices)
    settings.gpu_device_root = str(stand_in_devices(tmp_path / "dev"))
    settings.grading_gpu_profile = "gpu-shared"
    for name, value in extra.items():
        setattr(settings, name, value)
    return settings


def grading_course(app: Flask, make_track: Any, make_cohort: Any, grading_profile: str = "gpu") -> tuple[int, int]:
    from academy.catalog.models import Course
    from academy.extensions import db

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    with app.app_context():
        course = db.session.get(Course, course_id)
        course.lab_profile, course.grading_profile = "gpu-shared", grading_profile
        db.session.commit()
    return course_id, cohort


def job_id_for(app: Flask, make_user: Any, course_id: int) -> int:
    """A grading job row (its submission is never graded here)."""
    from academy.catalog.models import Assignment, Course
    from academy.extensions import db
    from academy.grading.models import AssignmentRelease, GradingJob, Submission

    learner = make_user("learner")
    with app.app_context():
        course = db.session.get(Course, course_id)
        assignment = db.session.scalar(select(Assignment).where(Assignment.course_id == course_id))
        if assignment is None:
            assignment = Assignment(course=course, slug="a1", title_ko="과제", title_en="A1")
            db.session.add(assignment)
            db.session.flush()
        release = db.session.scalar(select(AssignmentRelease).where(AssignmentRelease.assignment_id == assignment.id))
        if release is None:
            release = AssignmentRelease(assignment=assignment, version=1, path="/nonexistent", source_hash="0" * 64)
            db.session.add(release)
            db.session.flush()
        attempt = db.session.scalar(select(func.count()).select_from(Submission)) or 0
        submission = Submission(user_id=learner, assignment=assignment, release=release, attempt=attempt + 1)
        db.session.add(submission)
        db.session.flush()
        job = GradingJob(submission_id=submission.id)
        db.session.add(job)
        db.session.commit()
        return job.id


def free_shared(app: Flask, settings: Any) -> int:
    from academy.extensions import db
    from academy.labs.profiles import configured_profiles
    from academy.labs.queue import device_seats, sync_inventory

    with app.app_context():
        seats = device_seats(db.session, settings, sync_inventory(db.session, settings))
        db.session.commit()
        return sum(s.free_seats(configured_profiles(settings)["gpu-shared"]) for s in seats)


@pytest.mark.app_config(**LABS)
def test_a_grading_seat_takes_a_lab_seat_and_lapses(app: Flask, tmp_path: Path, make_user: Any, make_track: Any,
                                                    make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.grading_seats import acquire_grading_seat, release_grading_seat, renew_grading_seat

    settings = gpu_settings(app, tmp_path, f"0:NVIDIA H200:{H200}")
    course_id, _cohort = grading_course(app, make_track, make_cohort)
    job = job_id_for(app, make_user, course_id)
    assert free_shared(app, settings) == 34  # (143,771 - 1,024) // 4,096
    with app.app_context():
        seat = acquire_grading_seat(db.session, settings, job_id=job, course_id=course_id, worker="w:1", seconds=60)
        db.session.commit()
        assert seat.hold is not None and (seat.hold.device, seat.hold.gpu_memory_mb) == ("0", 4096)
        hold_id = seat.hold.id
    assert free_shared(app, settings) == 33, "the grading seat is one lab seat fewer"
    with app.app_context():
        from academy.labs.reports import device_report

        holders = device_report(db.session, settings)[0].holders
        assert [(h.grading_job_id, h.memory_mb, h.lab) for h in holders] == [(job, 4096, None)]
        assert renew_grading_seat(db.session, hold_id, seconds=-1)  # its worker stopped renewing: lapsed
        db.session.commit()
    assert free_shared(app, settings) == 34, "a lapsed seat counts for nothing"
    with app.app_context():  # the next hand-out deletes the lapsed row
        again = acquire_grading_seat(db.session, settings, job_id=job, course_id=course_id, worker="w:2", seconds=60)
        db.session.commit()
        assert again.hold is not None
        assert db.session.scalars(select(GpuGradingHold.worker)).all() == ["w:2"], "the lapsed row was deleted"
        again_id = again.hold.id
        release_grading_seat(db.session, again_id)
        db.session.commit()
        assert not renew_grading_seat(db.session, again_id, seconds=60)
        assert db.session.scalar(select(func.count()).select_from(GpuGradingHold)) == 0
    assert free_shared(app, settings) == 34


@pytest.mark.app_config(**LABS)
def test_labs_fill_a_device_and_grading_goes_to_the_cpu(app: Flask, tmp_path: Path, make_user: Any,
                                                        make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.grading_seats import acquire_grading_seat
    from academy.labs.queue import serve_queue

    settings = gpu_settings(app, tmp_path, "0:NVIDIA H200:20000")  # (20,000 - 1,024) // 4,096 = 4 seats
    course_id, _cohort = grading_course(app, make_track, make_cohort)
    job = job_id_for(app, make_user, course_id)

    def acquire() -> Any:
        with app.app_context():
            seat = acquire_grading_seat(db.session, settings, job_id=job, course_id=course_id, worker="w", seconds=60)
            db.session.commit()
            return seat

    for _ in range(3):
        lab_row(app, make_user("learner"), course_id, profile="gpu-shared", gpus=1, device="0", gpu_memory_mb=4096,
                state=LabState.running)
    assert acquire().hold is not None, "the fourth seat"
    assert acquire().refusal == "every GPU seat is taken"
    # A learner arriving now waits in line for the seat grading holds, and grading never goes ahead of them.
    waiter = lab_row(app, make_user("learner"), course_id, profile="gpu-shared", gpus=1, device=None,
                     gpu_memory_mb=None, state=LabState.queued)
    with app.app_context():
        serve_queue(db.session, settings)
        db.session.commit()
        assert db.session.get(LabSession, waiter).state is LabState.queued, "grading's seat is not given twice"
        db.session.execute(GpuGradingHold.__table__.delete())
        db.session.commit()
    assert acquire().refusal == "learners are waiting for a GPU (they come first)"
    with app.app_context():
        serve_queue(db.session, settings)
        db.session.commit()
        assert db.session.get(LabSession, waiter).state is LabState.starting
    assert acquire().refusal == "every GPU seat is taken"


@pytest.mark.app_config(**LABS)
@pytest.mark.parametrize("devices, profile, refusal", [
    ("none", "gpu-shared", "no GPU on this grader"),
    ("cluster", "gpu-shared", "no GPU on this grader (the cluster hands out the labs' GPUs)"),
    ("0:NVIDIA H200:4000", "gpu-shared", "no GPU here can hold a seat of profile 'gpu-shared'"),
    (f"0:NVIDIA H200:{H200}", "cpu", "the grading seat's profile 'cpu' (ACADEMY_GRADING_GPU_PROFILE) is not a GPU "
                                     "profile of profiles.toml"),
])
def test_no_gpu_seat_to_take(app: Flask, tmp_path: Path, make_user: Any, make_track: Any, make_cohort: Any,
                             devices: str, profile: str, refusal: str) -> None:
    from academy.extensions import db
    from academy.labs.grading_seats import acquire_grading_seat

    settings = gpu_settings(app, tmp_path, devices, grading_gpu_profile=profile)
    course_id, _cohort = grading_course(app, make_track, make_cohort)
    job = job_id_for(app, make_user, course_id)
    with app.app_context():
        seat = acquire_grading_seat(db.session, settings, job_id=job, course_id=course_id, worker="w", seconds=60)
        db.session.commit()
        assert (seat.hold, seat.refusal) == (None, refusal)
        assert db.session.scalar(select(func.count()).select_from(GpuGradingHold)) == 0


# -- the grading device: GPU, or the CPU and why -----------------------------------------------------------------

@pytest.fixture
def sandbox_allows_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's sandbox treated as having a memory cgroup (tested above and by the real kernel test)."""
    monkeypatch.setattr("academy.grading.gpu.gpu_refusal", lambda policy=None: None)


def device_for(app: Flask, settings: Any, course_id: int, job: int) -> Any:
    from academy.catalog.models import Course
    from academy.extensions import db
    from academy.grading.gpu import grading_device

    with app.app_context():
        device = grading_device(db.session, settings, db.session.get(Course, course_id), job_id=job, worker="w:1",
                                hold_seconds=60, base_policy=SandboxPolicy(python=sys.executable))
        db.session.commit()
        held = db.session.scalar(select(func.count()).select_from(GpuGradingHold))
    return device, held


@pytest.mark.app_config(**LABS)
def test_a_gpu_course_is_graded_with_its_seats_device(app: Flask, tmp_path: Path, make_user: Any, make_track: Any,
                                                      make_cohort: Any, sandbox_allows_gpus: None) -> None:
    settings = gpu_settings(app, tmp_path, f"0:NVIDIA H200:{H200},1:NVIDIA H200:{H200}")
    course_id, _cohort = grading_course(app, make_track, make_cohort)
    cpu_course, _ = grading_course(app, make_track, make_cohort, grading_profile="cpu")
    device, held = device_for(app, settings, course_id, job_id_for(app, make_user, course_id))
    assert device.on_gpu and held == 1 and device.problem is None
    grant = device.policy.gpu
    root = settings.gpu_device_root
    assert (grant.device, grant.visible, grant.memory_mb) == ("0", "0", 4096)
    assert grant.nodes[0] == (f"{root}/nvidia0", "/dev/nvidia0")
    assert not any("nvidia1" in src or "nvidia1" in dest for src, dest in grant.nodes)
    assert device.policy.address_space_bytes is None
    # A CPU course never takes a seat, and its policy is the usual one.
    device, held = device_for(app, settings, cpu_course, job_id_for(app, make_user, cpu_course))
    assert (device.policy, device.hold_id, device.problem, held) == (None, None, None, 1)


@pytest.mark.app_config(**LABS)
def test_a_missing_device_file_gives_the_seat_back_and_grades_on_the_cpu(
        app: Flask, tmp_path: Path, make_user: Any, make_track: Any, make_cohort: Any,
        sandbox_allows_gpus: None) -> None:
    settings = gpu_settings(app, tmp_path, f"0:NVIDIA H200:{H200}")
    (Path(settings.gpu_device_root) / "nvidia0").unlink()
    course_id, _cohort = grading_course(app, make_track, make_cohort)
    device, held = device_for(app, settings, course_id, job_id_for(app, make_user, course_id))
    assert (device.policy, device.hold_id, held) == (None, None, 0)
    assert device.problem == (f"graded on the CPU, not a GPU: GPU 0: device file "
                              f"{settings.gpu_device_root}/nvidia0 missing")


@pytest.mark.app_config(**LABS)
def test_without_a_memory_cgroup_nothing_is_taken(app: Flask, tmp_path: Path, make_user: Any, make_track: Any,
                                                  make_cohort: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "probe_isolation", lambda policy=None: IsolationReport(namespaces=True,
                                                                                            python_ok=True))
    settings = gpu_settings(app, tmp_path, f"0:NVIDIA H200:{H200}")
    course_id, _cohort = grading_course(app, make_track, make_cohort)
    device, held = device_for(app, settings, course_id, job_id_for(app, make_user, course_id))
    assert (device.policy, device.hold_id, held) == (None, None, 0)
    assert device.problem and device.problem.startswith("graded on the CPU, not a GPU: no memory cgroup here")


@pytest.mark.app_config(**{**LABS, "gpu_devices": None})
def test_a_mig_instance_that_vanishes_is_given_back_and_the_cpu_grades(
        app: Flask, tmp_path: Path, make_user: Any, make_track: Any, make_cohort: Any,
        monkeypatch: pytest.MonkeyPatch, sandbox_allows_gpus: None) -> None:
    small, large = mig_uuid(), mig_uuid()
    fake = MigNvml({0: (small, "NVIDIA H200 MIG 1g.18gb", 16_128), 2: (large, "NVIDIA H200 MIG 3g.71gb", 71_424)},
                   gpus=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    settings = gpu_settings(app, tmp_path, None)
    course_id, _cohort = grading_course(app, make_track, make_cohort)
    fake.vanished.add(small)  # destroyed between NVML's listing and the grant: best fit chose it
    device, held = device_for(app, settings, course_id, job_id_for(app, make_user, course_id))
    assert (device.policy, device.hold_id, held) == (None, None, 0), "nothing held that no kernel uses"
    assert device.problem and device.problem.startswith(f"graded on the CPU, not a GPU: MIG device {small} is no "
                                                        f"longer present")


def test_the_learner_reads_why_their_gpu_course_was_graded_on_the_cpu() -> None:
    from flask_babel import Babel, force_locale

    from academy.grading.problem_text import describe_problem

    lines = {"graded on the CPU, not a GPU: every GPU seat is taken": "every GPU was in use",
             "graded on the CPU, not a GPU: learners are waiting for a GPU (they come first)": "they come first",
             "graded on the CPU, not a GPU: no GPU on this grader": "has no GPU",
             "graded on the CPU, not a GPU: MIG device MIG-x is no longer present (Not Found)": "no longer available",
             "graded on the CPU, not a GPU: no memory cgroup here to limit": "could not be used (no memory cgroup"}
    app = Flask(__name__)
    Babel(app)
    with app.app_context(), force_locale("en"):
        for line, words in lines.items():
            text = describe_problem(line)
            assert text.startswith("This course is graded with a GPU, but this attempt was graded on the CPU: ")
            assert words in text, text


def test_shipped_gpu_course_grades_with_a_gpu() -> None:
    from academy.catalog.manifest import read_catalog
    from tests.support import ROOT

    courses = {c.slug: c for c in read_catalog(ROOT / "courses").courses}
    assert courses["dl-vision"].grading_profile == "gpu"
    assert {c.grading_profile for slug, c in courses.items() if slug != "dl-vision"} == {"cpu"}


# -- bench/gpu_check.py ------------------------------------------------------------------------------------------

def test_gpu_check_says_there_is_no_gpu_and_exits_0() -> None:
    import importlib.util
    import json
    import subprocess

    from tests.support import ROOT

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    present, said = check.nvml_status()
    if present:
        pytest.skip(f"an NVIDIA GPU is here ({said}): run bench/gpu_check.py itself")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--json"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    first, *_rest, last = done.stdout.strip().splitlines()
    assert first.startswith("gpu_check: no NVIDIA GPU on this machine: ") and said in first
    assert json.loads(last) == {"gpu": False, "reason": said}
