"""Per-kernel cgroups (layer 1): memory, pids and CPU limits, and killing every process of a kernel.

Groups are created *below the worker's own cgroup* (so kernels stay inside whatever
limits the worker has) under ``academy-grader/<worker pid>-...`` and removed afterwards;
``reap_stale_cgroups`` removes those of workers that died.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import time
from pathlib import Path

from academy.engine.sandbox.policy import CGROUP_GROUP, SandboxPolicy

log = logging.getLogger(__name__)


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


def cgroup_bases(root: str) -> dict[str, str]:
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


# Groups whose removal timed out (a slow machine: the kernel's processes or its memory were still
# being torn down); each later creation, removal and reap tries them again, so none is left for good.
_unremoved: set[str] = set()


def retry_unremoved() -> list[str]:
    """Try again to remove the groups whose removal timed out; the ones still there."""
    for path in sorted(_unremoved):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        _unremoved.discard(path)
    return sorted(_unremoved)


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
        if _unremoved:
            retry_unremoved()
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
                        log.warning("cgroup %s not removed yet (tried again later): %s", path, exc)
                        _unremoved.add(path)
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
    retry_unremoved()
    reaped = 0
    for key, base in cgroup_bases(policy.cgroup_root).items():
        group = Path(base, CGROUP_GROUP)
        if not group.is_dir():
            continue
        for child in group.iterdir():
            match = re.match(r"^(\d+)-", child.name)
            if not child.is_dir() or not match or pid_alive(int(match.group(1))):
                continue
            stale = KernelCgroups.__new__(KernelCgroups)
            stale.dirs, stale.problems = {key: str(child)}, []
            stale.kill(timeout=2.0)
            stale.remove(timeout=2.0)
            reaped += 1
    return reaped


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
