"""Kernel zygotes: one sandbox per grading process that forks a fresh kernel for every job.

Starting a sandboxed kernel costs about a quarter of a CPU-second, most of it Python
importing ipykernel, and on a busy grader that was a third of all the CPU a submission
took.  A zygote is a sandbox built exactly like a kernel's (the same bubblewrap
namespaces and mounts, rlimits, seccomp filter and uid drop), whose process imports
ipykernel once and then, for each kernel asked of it, forks a child that becomes that
kernel.  It never runs learners' code itself.

What keeps one learner's kernel from reaching the next one's:

- **Every process of a kernel dies with it.** The child is moved into the job's own
  cgroups (memory, pids, CPU limits as for any kernel) before it is handed over, and
  everything it starts stays there; shutdown kills the cgroup (``cgroup.kill``).  Zygotes
  are only used where cgroup v2's ``cgroup.kill`` works, the worker is root and kernels
  run as a dropped host uid (``mode == "root"``); elsewhere kernels start fresh.
- **Nothing of a kernel stays on disk.** HOME is the zygote's slot, a host directory
  (root-owned, sticky, world-writable, like ``/tmp``) which the worker empties after each
  kernel; the job's working directory is moved into the slot as ``work`` (root-owned, so
  the sticky bit stops the kernel from renaming or replacing it) while the kernel runs and
  moved back afterwards, a symbolic link standing in for it on the host meanwhile.
  ``/tmp`` and ``/dev/shm`` are the zygote's tmpfs, which it empties before every fork,
  when the previous kernel's processes are all dead.  Connection files and sockets live in
  a fresh subdirectory per kernel, removed afterwards.
- **The zygote cannot be tampered with.** It is not dumpable (no ``/proc/<pid>/mem``,
  ``fd`` or ``environ`` for the kernels, which share its uid) and the seccomp filter denies
  ``ptrace`` and ``process_vm_*``; it holds no learner data and imports nothing after its
  first fork.  A kernel can kill it (same uid), which ends that kernel too (the pid
  namespace dies with it): the worker sees the zygote gone and starts another for the next
  job.  After each kernel the worker checks that the zygote's cgroup holds only the zygote
  and bubblewrap; otherwise the zygote is discarded.

A zygote serves one kernel at a time; a second concurrent kernel in the same process, a
working directory on another filesystem, or any failure to fork falls back to a fresh
kernel.  ``SandboxPolicy.zygote`` (``ACADEMY_GRADER_ZYGOTE=0``) turns zygotes off.  Zygotes are
kept per policy, so a kernel only ever comes from a zygote built exactly as its own sandbox would
be; a kernel granted a GPU (``SandboxPolicy.gpu``) never comes from one: the zygote would outlive
the grant with the device's nodes in its sandbox.

Before its first fork the zygote imports, besides ipykernel, the modules of
``SandboxPolicy.zygote_preload`` (``ACADEMY_GRADER_ZYGOTE_PRELOAD``, default NumPy, pandas, scikit-learn) and
IPython's traceback formatting, which every kernel would otherwise import again (NumPy's
import was a quarter of a grading kernel's CPU in the bench course).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from academy.engine import kernelside
from academy.engine.sandbox.cgroups import KernelCgroups, cgroup_bases, pid_alive
from academy.engine.sandbox.launch import (
    KERNEL_OPTIONS,
    KERNEL_TUNING,
    Layout,
    chown_tree,
    launch_command,
    pick_host_uid,
    short_tmp,
)
from academy.engine.sandbox.policy import SANDBOX_WORKDIR, SYSTEM_PATH, SandboxPolicy
from academy.engine.sandbox.report import IsolationReport

log = logging.getLogger(__name__)

ZYGOTE_SOURCE = kernelside.source("zygote_main") + KERNEL_TUNING + kernelside.call("main", KERNEL_OPTIONS)
"""The zygote's program (``kernelside/zygote_main.py`` with the kernel tuning): one JSON line on its control
descriptor per request line on stdin; EOF on stdin (the worker is gone) ends it, and with it the sandbox's
pid namespace."""

_STARTS_BEFORE_GIVING_UP = 3
_MAX_ZYGOTES = 2  # per process (one policy in production; tests use several)
FOLDER_PREFIX = "academy-z-"  # then the worker's pid: a dead worker's folders are recognised (reap_stale_folders)
_FORK_TIMEOUT = 10.0


class ZygoteError(RuntimeError):
    """The zygote could not give a kernel; the caller starts a fresh one instead."""


def usable(policy: SandboxPolicy, report: IsolationReport) -> bool:
    """Whether kernels of ``policy`` may come from a zygote here (see the module's documentation)."""
    return bool(
        policy.zygote
        and policy.gpu is None  # a zygote outlives its job: its sandbox must not keep a device granted to one
        and report.sandbox_available
        and report.mode == "root"
        and report.uid_drop
        and report.cgroup_kill
        and os.geteuid() == 0
        and hasattr(os, "pidfd_open")
    )


def reap_stale_folders(root: str) -> int:
    """Remove the private folders of zygotes whose worker process died without closing them; return how many.

    A worker killed, or a pool child leaving by ``os._exit`` without multiprocessing's finalizers (Celery's
    billiard), leaves its zygotes' folders behind (their processes die with it, and their cgroups are reaped by
    ``reap_stale_cgroups``).  Folder names carry the worker's pid, as cgroup names do; a live pid's are kept.
    """
    reaped = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            owner = entry.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
            if (entry.name.startswith(FOLDER_PREFIX) and owner.isdigit() and entry.is_dir(follow_symlinks=False)
                    and not pid_alive(int(owner))):
                shutil.rmtree(entry.path, ignore_errors=True)
                reaped += 1
    return reaped


def _empty(directory: Path) -> None:
    """Remove everything in ``directory`` (links are removed, never followed)."""
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _status_fields(pid: int) -> dict[str, list[str]]:
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return fields


class Zygote:
    """One zygote process and its sandbox; ``spawn`` forks a kernel (host pid returned)."""

    def __init__(self, policy: SandboxPolicy, report: IsolationReport) -> None:
        """Launch the zygote; ``wait_ready`` waits until it has imported ipykernel."""
        self.policy = policy
        self.owner = os.getpid()
        self.busy = False
        self.pid: int | None = None
        self.baseline: set[int] = set()
        self._buffer = b""
        reap_stale_folders(short_tmp())
        top = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{self.owner}-", dir=short_tmp()))  # 0700, the worker's
        self.top = top
        self.uid = pick_host_uid(policy)
        self.slot = top / "home"
        self.layout = Layout(
            private=top,
            conn=top / "conn",
            etc=top / "etc",
            home=self.slot,
            tmp=top / "tmp",
            workdir=self.slot,
            seccomp=None,
            host_uid=self.uid,
            home_bind=self.slot,
            shared_uid=True,
        )
        self.cgroups: KernelCgroups | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.layout.conn.mkdir(mode=0o700)
            os.chown(self.layout.conn, self.uid, self.uid)
            self.slot.mkdir()
            os.chmod(self.slot, 0o1777)
            self.layout.write_identity(report)
            self.cgroups = KernelCgroups(
                cgroup_bases(policy.cgroup_root), f"{self.owner}-zygote-{secrets.token_hex(3)}", policy
            )
            if not self.cgroups.has_kill:
                raise ZygoteError("no cgroup.kill: " + "; ".join(self.cgroups.problems))
            command = launch_command(
                policy,
                report,
                self.layout,
                [policy.python, "-c", ZYGOTE_SOURCE, str(self.layout.conn), ",".join(policy.zygote_preload)],
                self.cgroups,
                sandboxed=True,
            )
            with open(top / "zygote.log", "ab") as log_file:
                self.proc = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    env={"PATH": SYSTEM_PATH},
                    cwd=top,
                    bufsize=0,
                )
        except BaseException:
            self.close()
            raise

    def wait_ready(self) -> None:
        """Wait for the zygote's first answer (its pid, once ipykernel is imported); close it on failure."""
        if self.pid is not None:
            return
        assert self.cgroups is not None
        try:
            ready = self._answer(self.policy.startup_timeout)
            self.pid = self._host_pid(int(ready["pid"]), parent=None)
            self.baseline = self.cgroups.pids()
        except BaseException:
            self.close()
            raise

    # -- talking to the zygote

    def _answer(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ZygoteError("the zygote did not answer in time")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise ZygoteError("the zygote exited: " + self.log_tail())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(line)
        if "error" in answer:
            raise ZygoteError(f"the zygote refused: {answer['error']}")
        return answer

    def _host_pid(self, ns_pid: int, parent: int | None) -> int:
        """The host pid of the zygote's process ``ns_pid`` (its pid inside the sandbox)."""
        assert self.cgroups is not None
        for pid in sorted(self.cgroups.pids()):
            fields = _status_fields(pid)
            nspid = fields.get("NSpid", [])
            if len(nspid) >= 2 and nspid[-1] == str(ns_pid) and (parent is None or fields.get("PPid") == [str(parent)]):
                return pid
        raise ZygoteError(f"process {ns_pid} of the zygote not found")

    def spawn(self, connection_file: str, log_file: str) -> int:
        """Fork a kernel that reads ``connection_file``; its host pid (still in the zygote's cgroups)."""
        assert self.proc is not None and self.proc.stdin is not None
        request = {"conn": connection_file, "log": log_file, "cwd": SANDBOX_WORKDIR}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
        except OSError as exc:
            raise ZygoteError(f"the zygote is gone: {exc}") from None
        answer = self._answer(_FORK_TIMEOUT)
        assert self.pid is not None
        return self._host_pid(int(answer["pid"]), parent=self.pid)

    # -- state

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def clean(self) -> bool:
        """Alive, and its cgroups hold only the zygote and bubblewrap (no kernel process slipped out)."""
        return self.alive() and self.cgroups is not None and self.cgroups.pids() == self.baseline

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return (self.top / "zygote.log").read_bytes()[-limit:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the zygote and every process of its sandbox; remove its cgroups and directories."""
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.cgroups is not None:
            self.cgroups.kill()
            self.cgroups.remove()
            self.cgroups = None
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        shutil.rmtree(self.top, ignore_errors=True)


class ZygoteChild:
    """The forked kernel as jupyter_client's local provisioner sees a process (poll, wait, signals)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd: int | None = pidfd
        self._killed = False
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and (self._pidfd is None or select.select([self._pidfd], [], [], 0)[0]):
            self.returncode = -signal.SIGKILL if self._killed else 1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is None:
            assert self._pidfd is not None
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("kernel", timeout or 0)
        return self.poll()  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self._pidfd is None or self.poll() is not None:
            raise ProcessLookupError(errno.ESRCH, f"kernel {self.pid} has exited")
        signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self._killed = True
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def close(self) -> None:
        if self._pidfd is not None:
            self.poll()
            os.close(self._pidfd)
            self._pidfd = None


class ZygoteLease:
    """One kernel from a zygote: its private directory, the job's workdir moved in, the forked child."""

    def __init__(self, zygote: Zygote, workdir: Path) -> None:
        self.zygote = zygote
        self.workdir = workdir
        self.inside = zygote.slot / "work"
        self.entered = False
        self.child: ZygoteChild | None = None
        private = zygote.layout.conn / secrets.token_hex(6)
        private.mkdir(mode=0o700)
        os.chown(private, zygote.uid, zygote.uid)
        self.layout = Layout(
            private=private,
            conn=private,
            etc=zygote.layout.etc,
            home=zygote.slot,
            tmp=private,
            workdir=workdir,
            seccomp=None,
            host_uid=zygote.uid,
            home_bind=zygote.slot,
            shared_uid=True,
        )

    def start(self, connection_file: str, cgroups: KernelCgroups) -> ZygoteChild:
        """Fork the kernel and move it into ``cgroups`` (the job's) before it can run any learner code."""
        if not self.entered:
            self._enter()
        pid = self.zygote.spawn(connection_file, str(self.layout.private / "kernel.log"))
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            raise ZygoteError(f"the kernel {pid} vanished: {exc}") from None
        try:
            for procs in cgroups.procs_files:
                with open(procs, "w") as fh:
                    fh.write(str(pid))
        except OSError as exc:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            raise ZygoteError(f"the kernel could not join its cgroups: {exc}") from None
        self.child = ZygoteChild(pid, pidfd)
        return self.child

    def _enter(self) -> None:
        if os.path.lexists(self.inside):
            raise ZygoteError("the zygote's slot is not empty")
        os.rename(self.workdir, self.inside)  # EXDEV (another filesystem) falls back to a fresh kernel
        try:
            os.symlink(self.inside, self.workdir)
        except OSError:
            os.rename(self.inside, self.workdir)
            raise
        self.entered = True
        chown_tree(self.inside, self.zygote.uid)
        os.chown(self.inside, 0, 0)  # root-owned in a sticky HOME: the kernel cannot rename or replace it
        os.chmod(self.inside, 0o777)

    def _leave(self) -> None:
        if not self.entered:
            return
        self.entered = False
        if os.path.islink(self.workdir):
            os.unlink(self.workdir)
        try:
            info = os.lstat(self.inside)
        except FileNotFoundError:
            info = None
        if not self.workdir.parent.is_dir():
            pass  # the job is over and its directory gone: the slot is simply emptied
        elif info is not None and stat.S_ISDIR(info.st_mode):
            os.rename(self.inside, self.workdir)
            os.chmod(self.workdir, 0o755)
        else:
            os.mkdir(self.workdir)
        _empty(self.zygote.slot)

    def release(self, *, healthy: bool = True) -> None:
        """After the kernel's cgroups were killed: workdir back in place, slot emptied, zygote free again.

        ``healthy=False`` discards the zygote (after a failed fork, say).
        """
        if self.child is not None:
            self.child.close()
        try:
            self._leave()
        except OSError as exc:
            log.warning("kernel zygote: could not empty its slot (%s); discarding it", exc)
            healthy = False
        self.layout.remove()
        with contextlib.suppress(OSError):  # whatever else the kernel left in the connection directory
            _empty(self.zygote.layout.conn)
        _give_back(self.zygote, healthy)


# -- one zygote per policy and process ---------------------------------------------------

_zygotes: dict[tuple[int, SandboxPolicy], Zygote] = {}
_failures: dict[tuple[int, SandboxPolicy], int] = {}
_lock = threading.Lock()


def lease(policy: SandboxPolicy, report: IsolationReport, workdir: Path) -> ZygoteLease | None:
    """A kernel slot in this process's zygote for ``policy`` (started on first use), or None for a fresh kernel."""
    if not usable(policy, report):
        return None
    key = (os.getpid(), policy)
    with _lock:
        zygote = _zygotes.get(key)
        if zygote is not None and zygote.busy:
            return None
        if zygote is not None and not zygote.alive():
            log.info("kernel zygote %s is gone (%s); starting another", zygote.pid, zygote.log_tail(200))
            del _zygotes[key]
            zygote.close()
            zygote = None
        if zygote is None:
            zygote = _launch(key, policy, report)
            if zygote is None:
                return None
        try:
            zygote.wait_ready()
        except (ZygoteError, OSError, ValueError) as exc:
            del _zygotes[key]
            _did_not_start(key, exc)
            return None
        with contextlib.suppress(OSError):
            if os.stat(workdir).st_dev != os.stat(zygote.slot).st_dev:
                return None
        zygote.busy = True
    try:
        return ZygoteLease(zygote, workdir)
    except OSError:
        _give_back(zygote, healthy=False)
        return None


def _launch(key: tuple[int, SandboxPolicy], policy: SandboxPolicy, report: IsolationReport) -> Zygote | None:
    """Launch (not wait for) this process's zygote for ``policy``; the caller holds ``_lock``."""
    if _failures.get(key, 0) >= _STARTS_BEFORE_GIVING_UP:
        return None
    idle = [k for k, z in _zygotes.items() if k[0] == key[0] and not z.busy]
    for old in idle[: max(0, len(idle) + 1 - _MAX_ZYGOTES)]:
        _zygotes.pop(old).close()
    try:
        zygote = Zygote(policy, report)
    except (ZygoteError, OSError, ValueError) as exc:
        _did_not_start(key, exc)
        return None
    _zygotes[key] = zygote
    _close_at_exit()
    return zygote


def _did_not_start(key: tuple[int, SandboxPolicy], exc: BaseException) -> None:
    """Count a failed start (after ``_STARTS_BEFORE_GIVING_UP``, kernels start fresh); the caller holds ``_lock``."""
    _failures[key] = _failures.get(key, 0) + 1
    log.warning("kernel zygote did not start (%s); kernels start fresh", exc)


def prestart(policy: SandboxPolicy, report: IsolationReport) -> bool:
    """Launch this process's zygote for ``policy`` now, so that it imports while the process does other work.

    A grading worker calls it when it starts; its first kernel then waits only for what is left.
    True when a zygote is (or already was) on its way.
    """
    if not usable(policy, report):
        return False
    key = (os.getpid(), policy)
    with _lock:
        return key in _zygotes or _launch(key, policy, report) is not None


def _give_back(zygote: Zygote, healthy: bool) -> None:
    with _lock:
        zygote.busy = False
        if healthy and zygote.clean():
            return
        for key, known in list(_zygotes.items()):
            if known is zygote:
                del _zygotes[key]
    log.info("kernel zygote %s discarded", getattr(zygote, "pid", "?"))
    zygote.close()


_finalizer_for: int | None = None  # the pid whose multiprocessing finalizer is registered


def _close_at_exit() -> None:
    """Also close zygotes when a multiprocessing worker ends (it leaves with ``os._exit``, skipping atexit)."""
    global _finalizer_for
    if _finalizer_for == os.getpid():
        return
    import multiprocessing.util

    multiprocessing.util.Finalize(None, close_all, exitpriority=10)
    _finalizer_for = os.getpid()


def close_all() -> None:
    """Stop this process's zygotes (at exit; a forked child leaves its parent's alone)."""
    with _lock:
        mine = [(key, z) for key, z in _zygotes.items() if key[0] == os.getpid()]
        for key, _zygote in mine:
            del _zygotes[key]
    for _key, zygote in mine:
        zygote.close()


def running() -> list[Zygote]:
    """This process's zygotes (for tests and diagnostics)."""
    with _lock:
        return [z for key, z in _zygotes.items() if key[0] == os.getpid()]


atexit.register(close_all)
