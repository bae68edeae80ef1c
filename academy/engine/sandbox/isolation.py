"""What isolation holds on this machine: probed by trying, and the fail-closed check.

``probe_isolation`` builds the real sandbox around ``true`` and the lab interpreter and
reports which layers work (cached per interpreter, bwrap, uid); ``require_isolation``
raises ``SandboxUnavailable`` unless learner code can run isolated or unsandboxed runs
were explicitly allowed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import secrets
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from academy.engine.sandbox.cgroups import KernelCgroups, cgroup_bases
from academy.engine.sandbox.launch import Layout, launch_command
from academy.engine.sandbox.policy import (
    ALLOW_UNSANDBOXED_ENV,
    CGROUP_GROUP,
    LAB_PYTHON_ENV,
    SYSTEM_PATH,
    GiB,
    SandboxPolicy,
    SandboxUnavailable,
    system_tool,
)
from academy.engine.sandbox.report import IsolationReport
from academy.engine.sandbox.seccomp import seccomp_filter

log = logging.getLogger(__name__)


_probe_cache: dict[tuple[Any, ...], IsolationReport] = {}
_probe_lock = threading.Lock()


def probe_isolation(policy: SandboxPolicy | None = None, *, refresh: bool = False) -> IsolationReport:
    """Find out, by trying, which layers work here (cached per interpreter/bwrap/uid).

    Runs ``bwrap ... true`` and ``bwrap ... <lab python> -c pass`` with the real sandbox
    arguments, creates and removes a probe cgroup in each hierarchy, and looks for
    ``prlimit`` and ``setpriv``.
    """
    policy = policy or SandboxPolicy()
    key = (policy.bwrap, policy.python, policy.seccomp, policy.cgroup_root, policy.extra_ro_binds, os.geteuid())
    with _probe_lock:
        if not refresh and key in _probe_cache:
            return _probe_cache[key]
        report = _probe(policy)
        _probe_cache[key] = report
        return report


def _probe(policy: SandboxPolicy) -> IsolationReport:
    report = IsolationReport(bwrap=policy.bwrap, python=policy.python)
    notes = report.notes
    report.rlimits = system_tool("prlimit") is not None
    if not report.rlimits:
        notes.append("prlimit (util-linux) not found: no rlimits")

    bases = cgroup_bases(policy.cgroup_root)
    probe_name = f"{os.getpid()}-probe-{secrets.token_hex(3)}"
    trial = KernelCgroups(bases, probe_name, SandboxPolicy(memory_bytes=GiB, cpu_cores=None))
    report.cgroups = {k: os.path.join(bases[k], CGROUP_GROUP) for k in trial.dirs}
    report.cgroup_kill = trial.has_kill
    report.memory_cgroup = "memory" in trial.dirs or (
        "v2" in trial.dirs and os.path.exists(os.path.join(trial.dirs["v2"], "memory.max")))
    trial.remove()
    if "pids" not in report.cgroups and not (report.cgroup_kill and "v2" in report.cgroups):
        notes.append("no writable pids cgroup: the fork-bomb limit is RLIMIT_NPROC only")
    if "memory" not in report.cgroups:
        notes.append("no writable memory cgroup: the memory limit is RLIMIT_AS only")
    if not report.cgroup_kill:
        notes.append("no cgroup.kill: leftover processes are killed one by one")
    notes.extend(trial.problems)

    if not os.path.isfile(policy.python) or not os.access(policy.python, os.X_OK):
        notes.append(f"lab interpreter {policy.python} not found (build it with make; or set {LAB_PYTHON_ENV})")
    if not policy.bwrap or not os.access(policy.bwrap, os.X_OK):
        notes.insert(0, f"bubblewrap not found at {policy.bwrap or 'PATH'} (apt-get install bubblewrap)")
        report.python_ok = os.access(policy.python, os.X_OK)
        return report
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([policy.bwrap, "--version"], capture_output=True, text=True, timeout=10)
        report.bwrap_version = out.stdout.strip().split()[-1] if out.stdout.strip() else None

    modes = ["root", "userns"] if os.geteuid() == 0 else ["userns"]
    if modes[0] == "root" and not system_tool("setpriv"):
        notes.append("setpriv not found: the kernel cannot get its own host uid; trying a user namespace")
        modes = ["userns"]
    report.seccomp = policy.seccomp and seccomp_filter() is not None
    if policy.seccomp and not report.seccomp:
        notes.append(f"no seccomp filter for {platform.machine()}")

    failures = []
    for mode in modes:
        report.mode = mode
        ok, detail = _trial(policy, report, ["/usr/bin/true"])
        if ok:
            break
        failures.append(f"{mode}: {detail}")
    else:
        notes.insert(0, "bubblewrap cannot create namespaces here (" + "; ".join(failures) + ")")
        report.mode, report.seccomp = "none", False
        report.python_ok = os.access(policy.python, os.X_OK)
        return report
    report.namespaces = True
    report.uid_drop = report.mode == "root"
    if report.mode == "userns" and os.geteuid() == 0:
        notes.append("bwrap runs with a user namespace as root: the kernel is host uid 0 without capabilities")
    report.python_ok, detail = _trial(policy, report, [policy.python, "-I", "-S", "-c", "pass"])
    if not report.python_ok:
        notes.insert(0, f"lab interpreter {policy.python} does not run in the sandbox: {detail}")
    return report


def _trial(policy: SandboxPolicy, report: IsolationReport, inner: list[str]) -> tuple[bool, str]:
    """Run ``inner`` in a sandbox built exactly as for a kernel (minus cgroups)."""
    with tempfile.TemporaryDirectory(prefix="academy-probe-") as scratch:
        layout = Layout.create(policy, report, Path(scratch), for_probe=True)
        try:
            cmd = launch_command(policy, report, layout, inner, cgroups=None, sandboxed=True)
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=30, env={"PATH": SYSTEM_PATH}, cwd=scratch
            )
            return proc.returncode == 0, (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        except (OSError, subprocess.SubprocessError) as exc:
            return False, str(exc)
        finally:
            layout.remove()


def require_isolation(policy: SandboxPolicy | None = None) -> IsolationReport:
    """The isolation report, or SandboxUnavailable when learner code may not run ("fail closed").

    Running without bubblewrap is allowed only when ``policy.allow_unsandboxed`` is set
    (``ACADEMY_GRADER_ALLOW_UNSANDBOXED=1``), and only when the lab interpreter exists.
    """
    policy = policy or SandboxPolicy()
    report = probe_isolation(policy)
    if report.sandbox_available:
        return report
    reason = report.notes[0] if report.notes else "sandbox unavailable"
    if policy.allow_unsandboxed and os.access(policy.python, os.X_OK):
        log.warning("grading WITHOUT a sandbox (%s=1): %s", ALLOW_UNSANDBOXED_ENV, reason)
        return report
    raise SandboxUnavailable(
        f"Cannot grade: no sandbox for learner code ({reason}); "
        f"{ALLOW_UNSANDBOXED_ENV}=1 allows unsandboxed grading on a trusted development machine only."
    )


def gpu_refusal(policy: SandboxPolicy | None = None) -> str | None:
    """Why a kernel of ``policy`` may not be granted a GPU here, or None when it may.

    A kernel granted a GPU runs without ``RLIMIT_AS`` (CUDA cannot start under one), so its RAM is limited
    only by its memory cgroup: without a working memory cgroup the address-space limit is not dropped
    silently, the job is refused a GPU instead.  Unsandboxed (``allow_unsandboxed``) a kernel would see every
    device of the host, so it is refused one too.
    """
    report = probe_isolation(policy)
    if not report.sandbox_available:
        return "the grading sandbox is not available here (a GPU is granted only to a sandboxed kernel)"
    if not report.memory_cgroup:
        return ("no memory cgroup here to limit the kernel's memory (CUDA cannot start under the address-space "
                "limit that takes its place)")
    return None
