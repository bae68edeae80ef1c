"""A sandboxed Jupyter kernel for learners' untrusted notebook code.

The trusted grader (nbgrader / nbclient, or :func:`run_cells`) stays outside the sandbox
and talks to the kernel over ZeroMQ ``ipc`` sockets (Unix socket files in a private,
per-kernel directory that is bind-mounted into the sandbox at the same path), because the
sandbox has its own, empty network namespace.

Layers, outermost first (``docs/sandbox.md`` explains each and how it is tested):

1. **cgroups** (where writable): a per-kernel cgroup v1 ``memory`` (RAM cap, OOM kill of
   the kernel only), ``pids`` (fork-bomb cap) and ``cpu`` (CPU quota) group, and a cgroup v2
   group whose ``cgroup.kill`` ends every process of the kernel at once on shutdown.
   They are created *below the worker's own cgroup* and removed afterwards.
2. **rlimits** (``prlimit``): address space, CPU seconds, file size, open files, processes
   and no core dumps.  ``RLIMIT_NPROC`` is ignored for root and counted per host uid, so it
   only works together with layer 4; the ``pids`` cgroup is the primary fork-bomb limit.
3. **bubblewrap** namespaces: new pid, net (only a loopback of its own), ipc, uts and
   cgroup namespaces and a mount namespace whose root holds only read-only ``/usr``, a few
   ``/etc`` files, a generated ``/etc/passwd``, the lab venv, a private ``/proc``, a minimal
   ``/dev``, size-capped tmpfs ``/tmp``, ``/dev/shm`` and ``HOME``, the submission's scratch
   directory (the only writable host directory) and the connection directory.  The root is
   remounted read-only.  The environment is cleared and rebuilt from an allow-list.
   ``--die-with-parent`` and the pid namespace take every process down with the kernel.
4. **uid drop**: when the worker is root, ``bwrap`` runs without a user namespace and
   ``setpriv`` switches the kernel to a fresh, unused host uid per kernel, with no
   capabilities, an empty bounding set and ``no_new_privs``.  When the worker is not root,
   bwrap makes a user namespace (uid 1000 inside) and disables further user namespaces.
5. **seccomp** (x86-64): a small deny-list (``unshare``/``setns``, ``clone`` with
   ``CLONE_NEWUSER``, ``clone3`` as ENOSYS, mount API, ``ptrace``, ``bpf``, ``io_uring``,
   ``userfaultfd``, ``perf_event_open``, keyrings, module and kexec calls, 32-bit and x32
   syscall ABIs).

What does not hold: this is a kernel-shared sandbox (a kernel bug can break out; gVisor or a
VM is the stronger boundary); CPU time is capped per process, not per notebook tree; wall
time and output size are enforced by the caller (``cell_timeout`` / ``notebook_timeout``
/ ``output_bytes`` are carried here so that every caller uses the same numbers).  Without
bubblewrap or namespaces there is no filesystem or network isolation at all: the default is
to refuse (:class:`SandboxUnavailable`), and ``ACADEMY_GRADER_ALLOW_UNSANDBOXED=1`` is an
explicit, development-only escape hatch that keeps only layers 1, 2 and 4 and reports
``sandboxed = False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import platform
import queue
import re
import secrets
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager, KernelManager
from traitlets import HasTraits, Instance, Unicode, default

from academy.errors import AcademyError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_PYTHON_ENV = "ACADEMY_LAB_PYTHON"
ALLOW_UNSANDBOXED_ENV = "ACADEMY_GRADER_ALLOW_UNSANDBOXED"

SANDBOX_HOME = "/home/learner"
SANDBOX_WORKDIR = SANDBOX_HOME + "/work"
SANDBOX_UID = 1000  # the uid inside the user namespace when the worker is not root
SANDBOX_HOSTNAME = "sandbox"
CGROUP_GROUP = "academy-grader"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# /etc files an interpreter may need; everything else in /etc stays invisible.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "mime.types",
    "nsswitch.conf",
)
# Environment variables copied from the worker when set (this machine's OpenBLAS needs them).
PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class SandboxUnavailable(AcademyError):
    """Learner code cannot be run isolated here, and unsandboxed runs were not allowed."""

    status_code = 503
    code = "sandbox_unavailable"


def _tool(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH)


def _default_lab_python() -> str:
    return os.environ.get(LAB_PYTHON_ENV) or str(REPO_ROOT / ".venv-lab" / "bin" / "python")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SandboxPolicy:
    """Limits and locations for one sandboxed kernel.

    ``memory_bytes`` is the cgroup RAM cap (the primary memory limit) and
    ``address_space_bytes`` the RLIMIT_AS backstop (set it generously: PyTorch alone maps
    about 1 GiB).  ``cpu_seconds`` is RLIMIT_CPU of each process (SIGXCPU, then SIGKILL five
    seconds later).  ``cell_timeout``, ``notebook_timeout`` and ``output_bytes`` are applied
    by the caller (nbclient's ``timeout``, a total deadline, an output cap); they live here so
    every caller uses the same numbers.  ``extra_ro_binds`` are host paths (or
    ``(host, inside)`` pairs) mounted read-only, for example a test bundle.
    """

    memory_bytes: int = 2 * GiB
    address_space_bytes: int | None = 4 * GiB
    cpu_seconds: int = 600
    cpu_cores: float | None = 1.0
    max_processes: int = 64
    max_file_bytes: int = 50 * 1000 * 1000
    max_open_files: int = 256
    tmpfs_bytes: int = 256 * MiB
    cell_timeout: float = 60.0
    notebook_timeout: float = 600.0
    output_bytes: int = 1 * MiB
    startup_timeout: float = 60.0
    interrupt_grace: float = 2.0
    python: str = field(default_factory=_default_lab_python)
    bwrap: str | None = field(default_factory=lambda: shutil.which("bwrap"))
    allow_unsandboxed: bool = field(default_factory=lambda: _env_flag(ALLOW_UNSANDBOXED_ENV))
    extra_ro_binds: tuple[str | tuple[str, str], ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    seccomp: bool = True
    host_uid_range: tuple[int, int] = (3_000_000, 1_000_000)
    cgroup_root: str = "/sys/fs/cgroup"

    def ro_binds(self) -> list[tuple[str, str]]:
        """``extra_ro_binds`` as ``(host path, sandbox path)`` pairs."""
        pairs = []
        for item in self.extra_ro_binds:
            src, dest = (item, item) if isinstance(item, str) else item
            pairs.append((os.path.abspath(src), dest))
        return pairs

    def venv_dir(self) -> str | None:
        """The lab virtual environment holding ``python``, if it is one."""
        candidate = Path(os.path.abspath(self.python)).parent.parent
        return str(candidate) if (candidate / "pyvenv.cfg").is_file() else None


# --------------------------------------------------------------------------- seccomp

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_CLONE_NEWUSER = 0x10000000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
# x86-64 syscall numbers (asm/unistd_64.h) answered with EPERM.
_DENIED_SYSCALLS_X86_64 = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "vhangup": 153, "pivot_root": 155, "chroot": 161,
    "acct": 163, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
    "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442,
}  # fmt: skip
_NR_CLONE = 56
_NR_CLONE3 = 435


def seccomp_filter() -> bytes | None:
    """The classic-BPF deny-list bwrap loads with ``--seccomp FD``, or None off x86-64.

    Denied calls fail with EPERM (``clone3`` with ENOSYS so that glibc falls back to
    ``clone``, whose flags a filter can inspect); foreign syscall ABIs (i386, x32) fail too.
    """
    if platform.machine() != "x86_64":
        return None
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    deny = _SECCOMP_RET_ERRNO | errno.EPERM
    prog: list[tuple[int, Any, Any, int]] = [
        (ld, 0, 0, 4),  # arch
        (jeq, 1, 0, _AUDIT_ARCH_X86_64),
        (ret, 0, 0, deny),
        (ld, 0, 0, 0),  # syscall number
        (jge, "deny", 0, _X32_SYSCALL_BIT),
        (jeq, "clone", 0, _NR_CLONE),
        (jeq, "enosys", 0, _NR_CLONE3),
    ]
    prog += [(jeq, "deny", 0, nr) for nr in sorted(_DENIED_SYSCALLS_X86_64.values())]
    prog.append((ret, 0, 0, _SECCOMP_RET_ALLOW))
    labels = {"clone": len(prog)}  # BPF jumps only forward: the clone check precedes the tails
    prog += [(ld, 0, 0, 16), (jset, "deny", 0, _CLONE_NEWUSER), (ret, 0, 0, _SECCOMP_RET_ALLOW)]
    labels["deny"] = len(prog)
    prog.append((ret, 0, 0, deny))
    labels["enosys"] = len(prog)
    prog.append((ret, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS))
    out = bytearray()
    for pc, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - pc - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - pc - 1 if isinstance(jf, str) else jf
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)


# --------------------------------------------------------------------------- cgroups


def _own_cgroup(hierarchy: str) -> str:
    """This process's cgroup path in a v1 controller's hierarchy, or in v2 (``""``)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if (hierarchy == "" and hid == "0" and controllers == "") or (
            hierarchy and hierarchy in controllers.split(",")
        ):
            return path or "/"
    return "/"


def _cgroup_bases(root: str) -> dict[str, str]:
    """Mounted cgroup hierarchies: ``{"memory": dir, "pids": dir, "cpu": dir, "v2": dir}``.

    Each directory is this process's own cgroup there (so kernels are nested below the
    worker and stay inside whatever limits the worker has), when it exists.
    """
    rootp = Path(root)
    found: dict[str, Path] = {}
    if (rootp / "cgroup.controllers").exists():  # pure cgroup v2
        found["v2"] = rootp
    else:
        for controller in ("memory", "pids", "cpu"):
            if (rootp / controller / "cgroup.procs").exists():
                found[controller] = rootp / controller
        if (rootp / "unified" / "cgroup.procs").exists():
            found["v2"] = rootp / "unified"
    bases = {}
    for key, mount in found.items():
        own = mount / _own_cgroup("" if key == "v2" else key).lstrip("/")
        bases[key] = str(own if own.is_dir() else mount)
    return bases


def _write(path: str | Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read_pids(procs_file: str) -> set[int]:
    try:
        return {int(x) for x in Path(procs_file).read_text().split()}
    except (OSError, ValueError):
        return set()


class KernelCgroups:
    """The per-kernel cgroups: limits on creation, ``kill()`` and ``remove()`` on teardown."""

    def __init__(self, bases: dict[str, str], name: str, policy: SandboxPolicy) -> None:
        self.dirs: dict[str, str] = {}
        self.problems: list[str] = []
        for key, base in bases.items():
            group = os.path.join(base, CGROUP_GROUP)
            path = os.path.join(group, name)
            try:
                for _attempt in range(3):  # another kernel may rmdir the shared group meanwhile
                    os.makedirs(group, exist_ok=True)
                    try:
                        os.mkdir(path)
                        break
                    except FileNotFoundError:
                        continue
                else:
                    raise OSError(errno.ENOENT, "cgroup group kept vanishing", group)
                self.dirs[key] = path
                self._limit(key, path, group, policy)
            except OSError as exc:
                self.problems.append(f"cgroup {key}: {exc}")
        if "v2" in self.dirs and not os.path.exists(os.path.join(self.dirs["v2"], "cgroup.kill")):
            self.problems.append("cgroup v2: no cgroup.kill")

    @staticmethod
    def _limit(key: str, path: str, group: str, policy: SandboxPolicy) -> None:
        if key == "memory":
            _write(os.path.join(path, "memory.limit_in_bytes"), str(policy.memory_bytes))
            memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                _write(memsw, str(policy.memory_bytes))
        elif key == "pids":
            _write(os.path.join(path, "pids.max"), str(policy.max_processes))
        elif key == "cpu" and policy.cpu_cores:
            _write(os.path.join(path, "cpu.cfs_period_us"), "100000")
            _write(os.path.join(path, "cpu.cfs_quota_us"), str(int(policy.cpu_cores * 100000)))
        elif key == "v2":
            with contextlib.suppress(OSError):  # pure v2: delegate controllers where allowed
                _write(os.path.join(group, "cgroup.subtree_control"), "+memory +pids +cpu")
            for filename, value in (
                ("memory.max", str(policy.memory_bytes)),
                ("memory.swap.max", "0"),
                ("pids.max", str(policy.max_processes)),
                ("cpu.max", f"{int(policy.cpu_cores * 100000)} 100000" if policy.cpu_cores else ""),
            ):
                if value and os.path.exists(os.path.join(path, filename)):
                    with contextlib.suppress(OSError):
                        _write(os.path.join(path, filename), value)

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    @property
    def has_kill(self) -> bool:
        return "v2" in self.dirs and os.path.exists(os.path.join(self.dirs["v2"], "cgroup.kill"))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            found |= _read_pids(procs)
        return found

    def oom_kills(self) -> int:
        """How many processes the memory cgroup's OOM killer ended."""
        for key, filename in (("memory", "memory.oom_control"), ("v2", "memory.events")):
            if key in self.dirs:
                with contextlib.suppress(OSError):
                    text = Path(self.dirs[key], filename).read_text()
                    match = re.search(r"^oom_kill (\d+)$", text, re.M)
                    if match:
                        return int(match.group(1))
        return 0

    def kill(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the groups; True when they are empty."""
        if self.has_kill:
            with contextlib.suppress(OSError):
                _write(os.path.join(self.dirs["v2"], "cgroup.kill"), "1")
        deadline = time.monotonic() + timeout
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() > deadline:
                return False
            for pid in left:  # v1 fallback; a pid namespace or the pids cap bounds the race
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for key, path in list(self.dirs.items()):
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        log.warning("cgroup %s not removed: %s", path, exc)
                        break
                    time.sleep(0.02)
            self.dirs.pop(key, None)
            with contextlib.suppress(OSError):  # the shared group, when it is empty
                os.rmdir(os.path.dirname(path))


def reap_stale_cgroups(policy: SandboxPolicy | None = None) -> int:
    """Kill and remove per-kernel cgroups whose worker process has died; return how many.

    Group names start with the creating worker's pid, so a worker killed mid-run leaves
    groups that the next worker recognises.
    """
    policy = policy or SandboxPolicy()
    reaped = 0
    for key, base in _cgroup_bases(policy.cgroup_root).items():
        group = Path(base, CGROUP_GROUP)
        if not group.is_dir():
            continue
        for child in group.iterdir():
            match = re.match(r"^(\d+)-", child.name)
            if not child.is_dir() or not match or _pid_alive(int(match.group(1))):
                continue
            stale = KernelCgroups.__new__(KernelCgroups)
            stale.dirs, stale.problems = {key: str(child)}, []
            stale.kill(timeout=2.0)
            stale.remove(timeout=2.0)
            reaped += 1
    return reaped


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- probing


@dataclass
class IsolationReport:
    """What isolation holds on this machine, for this policy (see :func:`probe_isolation`)."""

    bwrap: str | None = None
    bwrap_version: str | None = None
    namespaces: bool = False
    mode: str = "none"  # "root" (bwrap + setpriv), "userns" (unprivileged bwrap) or "none"
    uid_drop: bool = False
    seccomp: bool = False
    python: str = ""
    python_ok: bool = False
    cgroups: dict[str, str] = field(default_factory=dict)
    cgroup_kill: bool = False
    rlimits: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def sandbox_available(self) -> bool:
        """bubblewrap can build the sandbox and the lab interpreter runs inside it."""
        return self.namespaces and self.python_ok

    def summary(self) -> str:
        """One line for logs and the ``problems`` list of a grading result."""
        if not self.sandbox_available:
            return "unsandboxed: " + "; ".join(self.notes[:2])
        layers = [f"bwrap {self.bwrap_version or ''}".strip() + f" ({self.mode})"]
        layers += [name for name, on in (("uid drop", self.uid_drop), ("seccomp", self.seccomp)) if on]
        layers += [f"cgroup {k}" for k in sorted(self.cgroups)]
        layers += ["rlimits"] if self.rlimits else []
        return "sandboxed: " + ", ".join(layers)


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
    report.rlimits = _tool("prlimit") is not None
    if not report.rlimits:
        notes.append("prlimit (util-linux) not found: no rlimits")

    bases = _cgroup_bases(policy.cgroup_root)
    probe_name = f"{os.getpid()}-probe-{secrets.token_hex(3)}"
    trial = KernelCgroups(bases, probe_name, SandboxPolicy(memory_bytes=GiB, cpu_cores=None))
    report.cgroups = {k: os.path.join(bases[k], CGROUP_GROUP) for k in trial.dirs}
    report.cgroup_kill = trial.has_kill
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
    if modes[0] == "root" and not _tool("setpriv"):
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
        layout = _Layout.create(policy, report, Path(scratch), for_probe=True)
        try:
            cmd = _command(policy, report, layout, inner, cgroups=None, sandboxed=True)
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


# --------------------------------------------------------------------------- launch command

_JOIN_AND_EXEC = r"""
seccomp=$1; shift
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do printf '%d\n' "$$" >"$1" || exit 125; shift; done
shift
if [ "$seccomp" != - ]; then exec 9<"$seccomp" || exit 125; fi
exec "$@"
"""


@dataclass
class _Layout:
    """Host paths of one kernel's private directory (0711, root-owned when root)."""

    private: Path
    conn: Path
    etc: Path
    home: Path
    tmp: Path
    workdir: Path
    seccomp: Path | None
    host_uid: int | None

    @classmethod
    def create(
        cls, policy: SandboxPolicy, report: IsolationReport, workdir: Path, *, for_probe: bool = False
    ) -> _Layout:
        private = Path(tempfile.mkdtemp(prefix="academy-k-", dir=_short_tmp()))
        os.chmod(private, 0o711)
        # A per-kernel host uid needs root and setpriv; in "userns" mode the kernel keeps the worker's uid.
        drop = os.geteuid() == 0 and report.mode != "userns" and _tool("setpriv") is not None
        host_uid = _pick_host_uid(policy) if drop else None
        layout = cls(
            private=private,
            conn=private / "conn",
            etc=private / "etc",
            home=private / "home",
            tmp=private / "tmp",
            workdir=workdir,
            seccomp=None,
            host_uid=host_uid,
        )
        user_uid = SANDBOX_UID if report.mode == "userns" else (host_uid if host_uid is not None else os.geteuid())
        for path in (layout.conn, layout.home, layout.tmp):
            path.mkdir(mode=0o700)
            if host_uid is not None:
                os.chown(path, host_uid, host_uid)
        layout.etc.mkdir(mode=0o755)
        (layout.etc / "passwd").write_text(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"learner:x:{user_uid}:{user_uid}:learner:{SANDBOX_HOME}:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (layout.etc / "group").write_text(f"root:x:0:\nlearner:x:{user_uid}:\nnogroup:x:65534:\n")
        for name in ("passwd", "group"):
            os.chmod(layout.etc / name, 0o644)
        bpf = seccomp_filter() if report.seccomp else None
        if bpf is not None:
            layout.seccomp = private / "seccomp.bpf"
            layout.seccomp.write_bytes(bpf)
            os.chmod(layout.seccomp, 0o600)
        if host_uid is not None and not for_probe:
            _chown_tree(workdir, host_uid)
        elif host_uid is not None:
            os.chown(workdir, host_uid, host_uid)
        return layout

    def remove(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)


def _short_tmp() -> str:
    """A temp root short enough for Unix socket paths (108 bytes)."""
    base = tempfile.gettempdir()
    return base if len(base) < 40 else "/tmp"


def _pick_host_uid(policy: SandboxPolicy) -> int:
    """An unused host uid for one kernel: RLIMIT_NPROC and kill(-1) are then per kernel."""
    start, count = policy.host_uid_range
    in_use = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    in_use.update(int(x) for x in line.split()[1:])
                    break
    while True:
        uid = start + secrets.randbelow(count)
        if uid not in in_use:
            return uid


def _chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def _kernel_env(policy: SandboxPolicy, layout: _Layout, sandboxed: bool) -> dict[str, str]:
    venv = policy.venv_dir()
    home = SANDBOX_HOME if sandboxed else str(layout.home)
    env = {
        "PATH": (f"{venv}/bin:" if venv else "") + "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "USER": "learner",
        "LOGNAME": "learner",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp" if sandboxed else str(layout.tmp),
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }
    for name in PASSTHROUGH_ENV:
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(dict(policy.extra_env))
    return env


def _root_entries() -> list[str]:
    """bwrap arguments recreating /bin, /sbin, /lib* as the host has them (symlinks or dirs)."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    return args


def _rlimit_args(policy: SandboxPolicy) -> list[str]:
    prlimit = _tool("prlimit")
    if not prlimit:
        return []
    args = [
        prlimit,
        f"--cpu={policy.cpu_seconds}:{policy.cpu_seconds + 5}",
        f"--fsize={policy.max_file_bytes}",
        f"--nofile={policy.max_open_files}",
        f"--nproc={policy.max_processes}",
        "--core=0",
    ]
    if policy.address_space_bytes:
        args.append(f"--as={policy.address_space_bytes}")
    return [*args, "--"]


def _setpriv_args(uid: int) -> list[str]:
    setpriv = os.path.realpath(_tool("setpriv") or "/usr/bin/setpriv")
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def _bwrap_args(policy: SandboxPolicy, report: IsolationReport, layout: _Layout) -> list[str]:
    size = str(policy.tmpfs_bytes)
    args = [
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--hostname", SANDBOX_HOSTNAME,
    ]  # fmt: skip
    if report.mode == "userns":
        args += ["--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    args.append("--clearenv")
    for name, value in _kernel_env(policy, layout, sandboxed=True).items():
        args += ["--setenv", name, value]
    made: set[str] = set()

    def bind(option: str, src: str, dest: str) -> None:
        # bwrap makes missing parents of a bind mount 0700 (root-only) when run as root:
        # create them 0755 first so that the kernel's uid can reach the mount.
        for parent in reversed(Path(dest).parents[:-1] if len(Path(dest).parts) > 2 else []):
            if str(parent) not in made:
                made.add(str(parent))
                args.extend(["--dir", str(parent)])
        args.extend([option, src, dest])

    args += ["--ro-bind", "/usr", "/usr", *_root_entries()]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    for name in ETC_FILES:
        bind("--ro-bind-try", f"/etc/{name}", f"/etc/{name}")
    bind("--ro-bind", str(layout.etc / "passwd"), "/etc/passwd")
    bind("--ro-bind", str(layout.etc / "group"), "/etc/group")
    bind("--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu")
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    made.add("/tmp")
    args += ["--perms", "1777", "--size", size, "--tmpfs", SANDBOX_HOME]
    made.add(SANDBOX_HOME)
    bind("--bind", str(layout.workdir), SANDBOX_WORKDIR)
    venv = policy.venv_dir()
    if venv and not venv.startswith("/usr/"):
        bind("--ro-bind", venv, venv)
    for src, dest in policy.ro_binds():
        bind("--ro-bind", src, dest)
    bind("--bind", str(layout.conn), str(layout.conn))
    args += ["--remount-ro", "/", "--chdir", SANDBOX_WORKDIR]
    if layout.seccomp is not None:
        args += ["--seccomp", "9"]
    return args


def _command(
    policy: SandboxPolicy,
    report: IsolationReport,
    layout: _Layout,
    inner: list[str],
    cgroups: KernelCgroups | None,
    *,
    sandboxed: bool,
) -> list[str]:
    """The full launch command: join cgroups, set rlimits, then bwrap (+ setpriv), then ``inner``."""
    seccomp = str(layout.seccomp) if (sandboxed and layout.seccomp is not None) else "-"
    procs = cgroups.procs_files if cgroups else []
    cmd = ["/bin/sh", "-c", _JOIN_AND_EXEC, "academy-sandbox", seccomp, *procs, "--", *_rlimit_args(policy)]
    drop = _setpriv_args(layout.host_uid) if layout.host_uid is not None and report.mode != "userns" else []
    if sandboxed:
        return [*cmd, policy.bwrap or "bwrap", *_bwrap_args(policy, report, layout), "--", *drop, *inner]
    env = [f"{k}={v}" for k, v in _kernel_env(policy, layout, sandboxed=False).items()]
    return [*cmd, *drop, _tool("env") or "/usr/bin/env", "-i", *env, *inner]


# --------------------------------------------------------------------------- kernel manager


class _RunState:
    """Resources of one kernel that must be released even if the manager is dropped."""

    def __init__(self) -> None:
        self.layout: _Layout | None = None
        self.cgroups: KernelCgroups | None = None

    def stop_processes(self) -> None:
        if self.cgroups is not None:
            self.cgroups.kill()
            self.cgroups.remove()
            self.cgroups = None
        if self.layout is not None and self.layout.host_uid is not None:
            _kill_uid(self.layout.host_uid)

    def close(self) -> None:
        self.stop_processes()
        if self.layout is not None:
            self.layout.remove()
            self.layout = None


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of a per-kernel host uid (a backstop for hosts without cgroups)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        os.kill(int(status.parent.name), signal.SIGKILL)
                    break


class _SandboxMixin(HasTraits):
    """Shared by the blocking and the asyncio kernel managers."""

    policy = Instance(SandboxPolicy, help="limits and locations of the sandbox")
    workdir = Unicode("", help="the submission's scratch directory: the only writable host path")

    @default("policy")
    def _policy_default(self) -> SandboxPolicy:
        return SandboxPolicy()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transport = "ipc"
        self.cache_ports = False
        self._report: IsolationReport | None = None
        self._state = _RunState()
        self._finalizer = weakref.finalize(self, self._state.close)
        self._sandbox_spec = KernelSpec(
            argv=[self.policy.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (sandbox)",
            language="python",
            interrupt_mode="message",  # signals cannot cross bwrap's session; ipykernel handles this
            env={},
            metadata={},
        )

    # -- what the caller can see

    @property
    def kernel_spec(self) -> KernelSpec:  # type: ignore[override]
        return self._sandbox_spec

    @property
    def isolation(self) -> IsolationReport:
        """The isolation report (raises SandboxUnavailable when grading must not proceed)."""
        if self._report is None:
            self._report = require_isolation(self.policy)
        return self._report

    @property
    def sandboxed(self) -> bool:
        """True when the kernel runs inside bubblewrap; False only with ``allow_unsandboxed``."""
        return self.isolation.sandbox_available

    @property
    def host_uid(self) -> int | None:
        return self._state.layout.host_uid if self._state.layout else None

    @property
    def private_dir(self) -> str | None:
        """The per-kernel directory holding the connection file and sockets (removed at shutdown)."""
        return str(self._state.layout.private) if self._state.layout else None

    def kernel_pids(self) -> set[int]:
        """Host pids in the kernel's cgroups (empty without cgroups)."""
        return self._state.cgroups.pids() if self._state.cgroups else set()

    def oom_killed(self) -> bool:
        """Whether the memory cgroup's OOM killer ended a process of this kernel."""
        return bool(self._state.cgroups and self._state.cgroups.oom_kills())

    def kernel_log(self, limit: int = 4000) -> str:
        """The tail of the kernel's own stdout/stderr (bwrap and start-up errors)."""
        layout = self._state.layout
        if layout is None:
            return ""
        try:
            with open(layout.private / "kernel.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- jupyter_client hooks

    def _prepare_run(self) -> None:
        report = self.isolation
        if self._state.layout is None:
            if not self.workdir:
                raise ValueError("SandboxedKernelManager needs a workdir")
            workdir = Path(self.workdir).resolve()
            if not workdir.is_dir():
                raise FileNotFoundError(f"workdir {workdir} is not a directory")
            layout = _Layout.create(self.policy, report, workdir)
            self._state.layout = layout
            self.connection_file = str(layout.conn / "kernel.json")
            self.ip = str(layout.conn / "kernel-ipc")
        with contextlib.suppress(OSError):
            reap_stale_cgroups(self.policy)
        name = f"{os.getpid()}-{(self.kernel_id or 'k')[:8]}-{secrets.token_hex(3)}"
        self._state.cgroups = KernelCgroups(_cgroup_bases(self.policy.cgroup_root), name, self.policy)

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        try:
            self._prepare_run()
            return await super()._async_pre_start_kernel(**kw)  # type: ignore[misc]
        except BaseException:
            self._state.close()
            raise

    def write_connection_file(self, **kwargs: Any) -> None:
        super().write_connection_file(**kwargs)  # type: ignore[misc]
        layout = self._state.layout
        if layout is not None and layout.host_uid is not None:
            os.chown(self.connection_file, layout.host_uid, layout.host_uid)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        inner = super().format_kernel_cmd(extra_arguments)  # type: ignore[misc]
        assert self._state.layout is not None
        layout, cgroups = self._state.layout, self._state.cgroups
        return _command(self.policy, self.isolation, layout, inner, cgroups, sandboxed=self.sandboxed)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        assert self._state.layout is not None
        kw["env"] = {"PATH": SYSTEM_PATH}
        kw["cwd"] = str(self._state.layout.workdir if not self.sandboxed else self._state.layout.private)
        kw.setdefault("stdin", subprocess.DEVNULL)
        log_file = None
        if kw.get("stdout") is None and kw.get("stderr") is None:
            log_file = open(self._state.layout.private / "kernel.log", "ab")  # noqa: SIM115
            kw["stdout"] = kw["stderr"] = log_file
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)  # type: ignore[misc]
        except BaseException:
            self._state.close()
            raise
        finally:
            if log_file is not None:
                log_file.close()

    async def _async_kill_kernel(self, restart: bool = False) -> None:
        if self._state.cgroups is not None:
            await _to_thread(self._state.cgroups.kill)
        await super()._async_kill_kernel(restart=restart)  # type: ignore[misc]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)  # type: ignore[misc]
        await _to_thread(self._state.stop_processes)
        if not restart:
            self._state.close()


async def _to_thread(func: Any) -> Any:
    return await asyncio.to_thread(func)


class SandboxedKernelManager(_SandboxMixin, KernelManager):
    """A blocking KernelManager whose kernel runs in the sandbox described above.

    ``SandboxedKernelManager(policy=SandboxPolicy(...), workdir="/path/to/scratch")``; then
    the usual ``start_kernel()``, ``client()``, ``interrupt_kernel()`` (sent as a message)
    and ``shutdown_kernel()``.  Shutdown and kill end every process of the kernel (cgroup
    kill, pid namespace) and remove the cgroups and the private directory.  When root, the
    workdir is chowned to the kernel's host uid.  ``sandboxed`` is False only when
    unsandboxed grading was explicitly allowed; starting raises SandboxUnavailable otherwise.
    """


class AsyncSandboxedKernelManager(_SandboxMixin, AsyncKernelManager):
    """The asyncio variant, for nbclient / nbconvert's ExecutePreprocessor."""


def kernel_manager_class(
    policy: SandboxPolicy, workdir: str | os.PathLike[str], *, asynchronous: bool = True
) -> type[KernelManager]:
    """A manager class with ``policy`` and ``workdir`` baked in, for ``kernel_manager_class`` traits.

    nbclient (and so nbgrader's Execute preprocessor) instantiates its manager class itself.
    """
    base: type[KernelManager] = AsyncSandboxedKernelManager if asynchronous else SandboxedKernelManager

    def policy_default(self: Any) -> SandboxPolicy:
        return policy

    def workdir_default(self: Any) -> str:
        return os.fspath(workdir)

    return type(
        base.__name__ + "ForRun",
        (base,),
        {"_policy_default": default("policy")(policy_default), "_workdir_default": default("workdir")(workdir_default)},
    )


# --------------------------------------------------------------------------- run_cells


@dataclass
class CellOutcome:
    """What happened to one cell.

    ``status`` is ``ok``, ``error`` (an exception; see ``ename``/``evalue``), ``timeout``
    (cell time exceeded: interrupted, then the kernel killed), ``died`` (the kernel process
    died: ``error`` says "kernel died ..."), or ``skipped`` (not run after a death/timeout).
    """

    index: int
    status: str
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] = field(default_factory=list)
    duration: float = 0.0
    truncated: bool = False


class _OutputBudget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, text: str) -> tuple[str, bool]:
        data = text.encode("utf-8", "replace")
        if len(data) <= self.left:
            self.left -= len(data)
            return text, False
        kept = data[: max(self.left, 0)].decode("utf-8", "ignore")
        self.left = 0
        return kept, True


def run_cells(
    policy: SandboxPolicy,
    workdir: str | os.PathLike[str],
    cells: Iterable[str],
    timeout: float | None = None,
    *,
    kill_on_timeout: bool = True,
) -> list[CellOutcome]:
    """Run code cells in a fresh sandboxed kernel; one :class:`CellOutcome` per cell.

    ``timeout`` is per cell (default ``policy.cell_timeout``); ``policy.notebook_timeout``
    bounds the whole run and ``policy.output_bytes`` all captured text.  A cell over time is
    interrupted, given ``policy.interrupt_grace`` seconds to report, and then the kernel is
    killed (unless ``kill_on_timeout`` is False and the interrupt worked).  A dead kernel
    gives ``died`` and the remaining cells ``skipped``.  The kernel is always shut down and
    leaves no process behind.
    """
    cells = list(cells)
    timeout = policy.cell_timeout if timeout is None else timeout
    km = SandboxedKernelManager(policy=policy, workdir=os.fspath(workdir))
    km.start_kernel()
    outcomes: list[CellOutcome] = []
    kc = km.client()
    budget = _OutputBudget(policy.output_bytes)
    alive = True
    try:
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=policy.startup_timeout)
        except RuntimeError as exc:
            alive = False
            detail = _death_detail(km) or str(exc)
            tail = km.kernel_log().strip().splitlines()
            detail += f": {tail[-1]}" if tail else ""
            outcomes = [CellOutcome(i, "died", error=f"kernel died before start: {detail}") for i in range(len(cells))]
            return outcomes
        notebook_deadline = time.monotonic() + policy.notebook_timeout
        for index, code in enumerate(cells):
            if not alive:
                outcomes.append(CellOutcome(index, "skipped", error="not run: the kernel was stopped"))
                continue
            outcome, alive = _run_one(km, kc, index, code, timeout, notebook_deadline, budget, policy, kill_on_timeout)
            outcomes.append(outcome)
        return outcomes
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=not alive or not km.is_alive())


def _death_detail(km: SandboxedKernelManager) -> str:
    parts = []
    proc = getattr(km.provisioner, "process", None)
    code = proc.poll() if proc is not None else None
    if code is not None:
        parts.append(f"exit status {code}")
    if km.oom_killed():
        parts.append("out of memory")
    return ", ".join(parts)


def _run_one(
    km: SandboxedKernelManager,
    kc: Any,
    index: int,
    code: str,
    timeout: float,
    notebook_deadline: float,
    budget: _OutputBudget,
    policy: SandboxPolicy,
    kill_on_timeout: bool,
) -> tuple[CellOutcome, bool]:
    outcome = CellOutcome(index, "ok")
    started = time.monotonic()
    deadline = min(started + timeout, notebook_deadline)
    msg_id = kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
    interrupted_at: float | None = None
    last_alive_check = started
    while True:
        now = time.monotonic()
        if interrupted_at is None and now >= deadline:
            with contextlib.suppress(Exception):
                km.interrupt_kernel()
            interrupted_at = now
        if interrupted_at is not None and now >= interrupted_at + policy.interrupt_grace:
            break  # the kernel ignored the interrupt
        try:
            msg = kc.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            if now - last_alive_check >= 0.2:
                last_alive_check = now
                if not km.is_alive():
                    detail = _death_detail(km)
                    outcome.status, outcome.error = "died", "kernel died" + (f" ({detail})" if detail else "")
                    outcome.duration = time.monotonic() - started
                    return outcome, False
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content.get("execution_state") == "idle":
            break
        _collect(outcome, kind, content, budget)
    outcome.duration = time.monotonic() - started
    if interrupted_at is not None:
        outcome.status = "timeout"
        overall = interrupted_at >= notebook_deadline
        what = f"notebook time limit ({policy.notebook_timeout:g} s)" if overall else f"cell time limit ({timeout:g} s)"
        if kill_on_timeout or outcome.ename is None:
            km.shutdown_kernel(now=True)
            outcome.error = f"{what} exceeded: interrupted, kernel killed"
            return outcome, False
        outcome.error = f"{what} exceeded: interrupted"
        return outcome, not overall
    reply = None
    with contextlib.suppress(queue.Empty):
        while True:
            reply = kc.get_shell_msg(timeout=5)
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                break
    status = (reply or {}).get("content", {}).get("status")
    if status != "ok" or outcome.ename is not None:
        outcome.status = "error"
        if reply and outcome.ename is None:
            outcome.ename = reply["content"].get("ename")
            outcome.evalue = reply["content"].get("evalue")
        outcome.error = f"{outcome.ename}: {outcome.evalue}" if outcome.ename else f"execute_reply status {status}"
    return outcome, True


def _collect(outcome: CellOutcome, kind: str, content: dict[str, Any], budget: _OutputBudget) -> None:
    if kind == "stream":
        text, cut = budget.take(content.get("text", ""))
        outcome.truncated |= cut
        if content.get("name") == "stderr":
            outcome.stderr += text
        else:
            outcome.stdout += text
        outcome.outputs.append({"output_type": "stream", "name": content.get("name"), "text": text})
    elif kind in ("execute_result", "display_data"):
        data = content.get("data", {})
        plain, cut = budget.take(str(data.get("text/plain", "")))
        outcome.truncated |= cut
        if kind == "execute_result":
            outcome.result = plain
        outcome.outputs.append({"output_type": kind, "data": {"text/plain": plain}})
    elif kind == "error":
        outcome.ename, outcome.evalue = content.get("ename"), content.get("evalue")
        tb, cut = budget.take("\n".join(content.get("traceback", [])))
        outcome.truncated |= cut
        outcome.traceback = tb.split("\n") if tb else []
        outcome.outputs.append({"output_type": "error", "ename": outcome.ename, "evalue": outcome.evalue})
