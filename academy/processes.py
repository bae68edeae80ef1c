"""Child processes the platform starts itself (the demo's worker, the local hub): ports, finding and stopping.

The demo's children run in sessions of their own (a terminal's Ctrl-C reaches the demo only, which stops
them in order), and so do theirs: JupyterHub starts every lab server, the proxy and the idle culler with
``start_new_session``, and Jupyter Server does the same for kernels.  Process groups therefore cannot name
"everything the demo started"; parentage can.  On Linux the demo becomes a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``, no privilege needed): a process whose parent dies is handed to the demo
instead of to init, so it stays a descendant the demo finds in ``/proc`` and stops.  Without ``/proc``
(not Linux) only the direct children are stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when it is free on ``host``, else a port the system picks."""
    with socket.socket() as sock:
        try:
            sock.bind((host, preferred))
            return preferred
        except OSError:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own process group: its leader politely, then the whole group."""
    if proc.poll() is not None:
        return
    proc.terminate()  # Celery's warm shutdown: the leader stops its own pool
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of the group that outlived its leader


@dataclass(frozen=True)
class ProcessRef:
    """One process, told apart from a later one that reuses its pid by its start time (``/proc/PID/stat``)."""

    pid: int
    started: int
    parent: int

    def alive(self) -> bool:
        """True while this very process runs; a zombie (it has ended, its parent has not collected it) is not."""
        stat = _stat(self.pid)
        return stat is not None and stat[3] == self.started and stat[0] != "Z"

    def command(self) -> str:
        """The command line (shortened), for messages; "" once the process has ended."""
        try:
            raw = (_PROC / str(self.pid) / "cmdline").read_bytes()
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:80]

    def send(self, signum: int) -> None:
        """Send ``signum`` unless the process has ended (its pid may belong to another process by now)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signum)


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, session id, start time) of ``pid`` from /proc, or None when there is no such process."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses, so split after its last ")".
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[3]), int(fields[19])


def descendants(pid: int) -> list[ProcessRef]:
    """Every running process under ``pid`` (its children, theirs, ...), read from /proc; [] without /proc."""
    if not _PROC.is_dir():
        return []
    children: dict[int, list[ProcessRef]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(ProcessRef(int(entry.name), stat[3], stat[1]))
    found: list[ProcessRef] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Have orphaned descendants handed to this process rather than to init (Linux); True when it worked."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def stop_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Be sent ``signum`` when the parent process ends (Linux), e.g. ``make`` killed while it runs this command.

    True when set up; when the parent has ended already, ``signum`` is sent at once.
    """
    parent = os.getppid()
    if not _prctl(_PR_SET_PDEATHSIG, int(signum)):
        return False
    if os.getppid() != parent:  # it ended before the request took effect
        os.kill(os.getpid(), signum)
    return True


def reap_orphans(keep: Iterable[int] = ()) -> None:
    """Collect the exit status of ended processes handed to this subreaper, so none lingers as a zombie.

    Only processes of another session: this process's own children (a ``subprocess.run`` in some thread)
    stay in its session, and their ``Popen`` must collect them itself; so must the children in ``keep``.
    """
    keep = set(keep)
    me = os.getpid()
    session = os.getsid(0)
    if not _PROC.is_dir():
        return
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) not in keep:
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] == "Z" and stat[1] == me and stat[2] != session:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(entry.name), os.WNOHANG)


@dataclass
class StopResult:
    """What :func:`stop_all_children` had to kill (it did not stop in time) and what even that left."""

    killed: list[tuple[int, str]]
    left: list[ProcessRef]


def stop_all_children(leaders: Sequence[subprocess.Popen[bytes]], *, grace: float,
                      hurry: threading.Event | None = None, kill_wait: float = 3.0) -> StopResult:
    """Stop every process under this one, within about ``grace + kill_wait`` seconds.

    Each of ``leaders`` (the children this process started) gets SIGTERM and stops its own children in
    its own way (JupyterHub its lab servers, proxy and culler; Celery its pool); so does any other direct
    child.  Whatever of the whole tree still runs after ``grace`` seconds, or as soon as ``hurry`` is set,
    gets SIGKILL.  The tree is read again on each look, so a process started meanwhile is not missed.
    Returns what had to be killed, and what outlived SIGKILL for ``kill_wait`` seconds (nothing, unless the
    kernel cannot end it).
    """
    hurry = hurry or threading.Event()
    me = os.getpid()
    keep = [proc.pid for proc in leaders]
    known = set(descendants(me))
    for proc in leaders:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    for ref in known:  # a child started but not yet handed over (a stop during the start), or an orphan adopted
        if ref.parent == me and ref.pid not in keep:
            ref.send(signal.SIGTERM)

    def running() -> list[ProcessRef]:
        for proc in leaders:
            proc.poll()
        reap_orphans(keep)
        known.update(descendants(me))
        return [ref for ref in known if ref.alive()]

    deadline = time.monotonic() + grace
    left = running()
    while left and not hurry.is_set() and time.monotonic() < deadline:
        hurry.wait(0.1)
        left = running()
    killed = [(ref.pid, ref.command()) for ref in left]
    deadline = time.monotonic() + kill_wait
    while left and time.monotonic() < deadline:
        for ref in left:
            ref.send(signal.SIGKILL)
        time.sleep(0.05)  # the kernel ends a killed process at once; look again shortly
        left = running()
    for proc in leaders:
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
    return StopResult(killed=killed, left=left)
