"""The sandbox's limits, with real kernels: loops, memory and fork bombs, CPU time, output, files, daemons.

Like ``test_sandbox.py``: every kernel must end and leave no process or cgroup behind.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest

from academy.engine.sandbox import (
    SANDBOX_WORKDIR,
    AsyncSandboxedKernelManager,
    SandboxedKernelManager,
    SandboxPolicy,
    kernel_manager_class,
    probe_isolation,
    reap_stale_cgroups,
)
from tests.engine.sandboxing import TRY, as_json, assert_no_leftovers, gone, processes, run
from tests.support import skip_or_fail


@pytest.mark.slow
def test_infinite_loop_is_interrupted_and_killed(base_policy: SandboxPolicy, workdir: Path) -> None:
    policy = dataclasses.replace(base_policy, interrupt_grace=1.0)
    started = time.monotonic()
    out = run(policy, workdir, ["x = 0\nwhile True:\n    x += 1", "'never runs'"], timeout=2.0)
    elapsed = time.monotonic() - started
    assert out[0].status == "timeout" and "cell time limit (2 s)" in out[0].error and "killed" in out[0].error
    assert out[1].status == "skipped"
    assert elapsed < 2.0 + 1.0 + 5.0, elapsed


@pytest.mark.slow
def test_sigint_proof_loop_is_killed(base_policy: SandboxPolicy, workdir: Path) -> None:
    policy = dataclasses.replace(base_policy, interrupt_grace=1.0)
    cell = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    started = time.monotonic()
    out = run(policy, workdir, [cell, "1"], timeout=2.0)
    assert out[0].status == "timeout" and "killed" in out[0].error
    assert out[1].status == "skipped"
    assert time.monotonic() - started < 2.0 + 1.0 + 5.0


@pytest.mark.slow
def test_memory_bomb_hits_the_cgroup(base_policy: SandboxPolicy, workdir: Path) -> None:
    if "memory" not in probe_isolation(base_policy).cgroups:
        skip_or_fail("no writable memory cgroup here")
    policy = dataclasses.replace(base_policy, memory_bytes=384 * 1024 * 1024, address_space_bytes=None)
    out = run(policy, workdir, ["hog = bytearray(3 * 1024**3)", "'after'"])
    assert out[0].status == "died" and "kernel died" in out[0].error, out[0]
    assert "out of memory" in out[0].error
    assert out[1].status == "skipped"


@pytest.mark.slow
def test_memory_bomb_hits_the_address_space_limit(base_policy: SandboxPolicy, workdir: Path) -> None:
    policy = dataclasses.replace(base_policy, address_space_bytes=2 * 1024**3)
    out = run(policy, workdir, ["hog = bytearray(3 * 1024**3)", "'after'"])
    assert out[0].status == "error" and out[0].ename == "MemoryError"
    assert out[1].result == repr("after")


NO_CGROUPS = "/nonexistent-cgroup-root"


@pytest.mark.slow
@pytest.mark.parametrize("cgroup_root", ["/sys/fs/cgroup", NO_CGROUPS], ids=["cgroups", "rlimit-only"])
def test_fork_bomb_stops_at_the_process_limit(base_policy: SandboxPolicy, workdir: Path, cgroup_root: str) -> None:
    if cgroup_root == NO_CGROUPS and os.geteuid() != 0:
        skip_or_fail("RLIMIT_NPROC needs the per-kernel host uid, which needs root")
    policy = dataclasses.replace(base_policy, cgroup_root=cgroup_root)
    cell = """
import os, time, json
children, error = [], None
try:
    for _ in range(5000):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    error = exc.errno
for pid in children:  # free the slots again so that the kernel can go on
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps({"children": len(children), "errno": error}))
"""
    out = run(policy, workdir, [cell, "'responsive'"])
    seen = as_json(out[0])
    assert seen["errno"] == 11 and seen["children"] < policy.max_processes, seen
    assert out[1].result == repr("responsive")


@pytest.mark.slow
def test_cpu_time_limit_ends_the_kernel(base_policy: SandboxPolicy, workdir: Path) -> None:
    policy = dataclasses.replace(base_policy, cpu_seconds=3)
    started = time.monotonic()
    out = run(policy, workdir, ["while True:\n    pass"], timeout=20.0)
    assert out[0].status == "died" and "kernel died" in out[0].error
    assert time.monotonic() - started < 12


@pytest.mark.slow
def test_notebook_deadline_bounds_slow_cells(base_policy: SandboxPolicy, workdir: Path) -> None:
    policy = dataclasses.replace(base_policy, notebook_timeout=2.5, interrupt_grace=1.0)
    started = time.monotonic()
    out = run(policy, workdir, ["import time; time.sleep(1.5)", "time.sleep(1.5)", "'never'"], timeout=10.0)
    assert [o.status for o in out] == ["ok", "timeout", "skipped"]
    assert "notebook time limit" in out[1].error
    assert time.monotonic() - started < 2.5 + 1.0 + 5.0


def test_output_is_capped(base_policy: SandboxPolicy, workdir: Path) -> None:
    policy = dataclasses.replace(base_policy, output_bytes=10_000)
    out = run(policy, workdir, ["print('x' * 2_000_000)", "print('y' * 100)"])
    assert out[0].truncated and len(out[0].stdout) <= 10_000
    assert out[1].truncated and out[1].stdout == ""


def test_stale_cgroups_of_a_dead_worker_are_reaped(base_policy: SandboxPolicy) -> None:
    groups = probe_isolation(base_policy).cgroups
    if not groups:
        skip_or_fail("no writable cgroups here")
    dead = subprocess.Popen(["true"])
    dead.wait()
    made = []
    for group in groups.values():
        Path(group).mkdir(exist_ok=True)
        stale = Path(group, f"{dead.pid}-deadbeef-000000")
        stale.mkdir()
        made.append(stale)
    assert reap_stale_cgroups(base_policy) >= len(made)
    assert not [path for path in made if path.exists()]


def test_a_removal_that_timed_out_is_tried_again(base_policy: SandboxPolicy) -> None:
    """A group still busy when its removal gives up (a loaded machine) is removed by a later attempt."""
    from academy.engine.sandbox.cgroups import KernelCgroups, cgroup_bases, retry_unremoved

    if not probe_isolation(base_policy).cgroups:
        skip_or_fail("no writable cgroups here")
    groups = KernelCgroups(cgroup_bases(base_policy.cgroup_root), f"{os.getpid()}-busy-{os.urandom(3).hex()}",
                           base_policy)
    paths = list(groups.dirs.values())
    busy = subprocess.Popen(["sleep", "60"])
    try:
        for path in paths:
            Path(path, "cgroup.procs").write_text(str(busy.pid))
        groups.remove(timeout=0.2)  # busy: gives up
        assert all(Path(path).is_dir() for path in paths)
        assert set(paths) <= set(retry_unremoved())
    finally:
        busy.kill()
        busy.wait()
    deadline = time.monotonic() + 10
    while retry_unremoved() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [path for path in paths if Path(path).exists()]


def test_huge_file_write_fails_with_efbig(base_policy: SandboxPolicy, workdir: Path) -> None:
    policy = dataclasses.replace(base_policy, max_file_bytes=1_000_000)
    cell = TRY + """
def fill():
    with open("huge.bin", "wb") as fh:
        for _ in range(50):
            fh.write(b"x" * 100_000)
print(json.dumps({"write": attempt(fill)}))
"""
    seen = as_json(run(policy, workdir, [cell])[0])
    assert seen["write"] == "OSError:27", seen  # EFBIG
    assert (workdir / "huge.bin").stat().st_size <= 1_000_000


@pytest.mark.parametrize("cgroup_root", ["/sys/fs/cgroup", NO_CGROUPS], ids=["cgroups", "no-cgroups"])
def test_daemonised_child_does_not_survive_shutdown(
    base_policy: SandboxPolicy, workdir: Path, cgroup_root: str
) -> None:
    policy = dataclasses.replace(base_policy, cgroup_root=cgroup_root)
    cell = """
import os
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/sleep", ["sleep", "313"])
    os._exit(0)
os.waitpid(pid, 0)
"""
    # Polled: on a busy machine the grandchild may not have reached its execv yet when the cell returns.
    check = (
        "import os, time\n"
        "def _cmdline(p):\n"
        "    try:\n"
        "        return open(f'/proc/{p}/cmdline', 'rb').read()\n"
        "    except OSError:\n"
        "        return b''\n"
        "def _seen():\n"
        "    return any(b'sleep\\x00313' in _cmdline(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "_until = time.monotonic() + 10\n"
        "while not _seen() and time.monotonic() < _until:\n"
        "    time.sleep(0.05)\n"
        "_seen()"
    )
    km = SandboxedKernelManager(policy=policy, workdir=str(workdir))
    km.start_kernel()
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        assert kc.execute_interactive(cell, timeout=20)["content"]["status"] == "ok"
        seen: list[str] = []
        kc.execute_interactive(check, timeout=20, output_hook=lambda m: seen.append(str(m["content"])))
        assert any("'text/plain': 'True'" in s for s in seen), seen
        host_uid = km.host_uid
        pids = km.kernel_pids()
        assert bool(pids) == (cgroup_root != NO_CGROUPS and bool(probe_isolation(policy).cgroups))
        private = km.private_dir
        assert private and os.path.isdir(private)
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    # The daemonised child, polled: the kernel kills what is left in the sandbox's namespaces as its init exits, and
    # on a loaded machine the child may not have finished dying when the shutdown returns (a survivor sleeps 313 s).
    assert_no_leftovers(workdir, marker="sleep\x00313")
    if host_uid is not None:
        assert not [p for p in processes() if p[1] == host_uid]
    assert gone(pids), "processes of the kernel's cgroups are still running"
    assert not os.path.exists(private)
    assert_no_leftovers(workdir, marker=private)


# ----------------------------------------------------------------------------- integration


def test_nbclient_runs_a_notebook_with_the_async_manager(base_policy: SandboxPolicy, workdir: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.getcwd())"), nbformat.v4.new_code_cell("6 * 7")]
    manager_class = kernel_manager_class(base_policy, workdir)
    assert issubclass(manager_class, AsyncSandboxedKernelManager)
    client = NotebookClient(nb, kernel_manager_class=manager_class, timeout=30)
    client.execute()
    assert nb.cells[0].outputs[0]["text"] == SANDBOX_WORKDIR + "\n"
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert client.km is None  # nbclient owned the manager and shut it down
    assert_no_leftovers(workdir)


def test_kernel_manager_class_bakes_in_policy_and_workdir(base_policy: SandboxPolicy, workdir: Path) -> None:
    cls = kernel_manager_class(base_policy, workdir, asynchronous=False)
    km = cls()
    assert km.policy is base_policy and km.workdir == str(workdir)
    assert issubclass(cls, SandboxedKernelManager)
    assert km.kernel_spec.interrupt_mode == "message"
