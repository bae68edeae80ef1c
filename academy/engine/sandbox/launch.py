"""The command that starts a kernel in the sandbox, and the per-kernel private directory.

``launch_command`` joins the kernel's cgroups, sets rlimits (``prlimit``), builds the
bubblewrap namespaces and mounts, drops to a per-kernel host uid (``setpriv``) when the
worker is root, and loads the seccomp filter; ``Layout`` is the kernel's private
directory (connection files and sockets, generated ``/etc/passwd``, seccomp program).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from academy.engine import kernelside
from academy.engine.sandbox.cgroups import KernelCgroups
from academy.engine.sandbox.policy import (
    ETC_FILES,
    PASSTHROUGH_ENV,
    SANDBOX_HOME,
    SANDBOX_HOSTNAME,
    SANDBOX_UID,
    SANDBOX_WORKDIR,
    SandboxPolicy,
    system_tool,
)
from academy.engine.sandbox.report import IsolationReport
from academy.engine.sandbox.seccomp import seccomp_filter

_JOIN_AND_EXEC = r"""
seccomp=$1; shift
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do printf '%d\n' "$$" >"$1" || exit 125; shift; done
shift
if [ "$seccomp" != - ]; then exec 9<"$seccomp" || exit 125; fi
exec "$@"
"""


CANARY_MESSAGE = r"[0-9a-f]{24}"
"""The form of the canary's nonce (``assert False, "<nonce>"``, see academy.engine.anticheat.canary): a kernel
formats that failure as plain text (``kernelside/tuning.py``)."""
KERNEL_TUNING = kernelside.source("tuning") + kernelside.call("tune_kernel", CANARY_MESSAGE)
"""Python a kernel runs before IPython starts (``kernelside/tuning.py``): cheaper tracebacks, same outputs."""

KERNEL_OPTIONS = ("--HistoryManager.hist_file=:memory:",)
"""IPython options of a grading kernel: its input history database in memory, not on disk (the SQLite
writes, with a commit per cell, were a sixth of a kernel's CPU; ``In``, ``Out`` and ``_i`` still work).
``HistoryManager.enabled=False`` saved as much but often kept a kernel from exiting on a shutdown request.
nbclient passes the same option itself to kernels it recognises as ipykernel: see ``kernel_arguments``."""


def kernel_arguments(extra_arguments: list[str] | None) -> list[str]:
    """A caller's extra kernel arguments plus each of ``KERNEL_OPTIONS`` they do not set themselves.

    IPython refuses an option given twice ("only accepts one value") and the kernel dies at start.
    """
    extra = list(extra_arguments or [])
    given = {arg.partition("=")[0] for arg in extra}
    return extra + [option for option in KERNEL_OPTIONS if option.partition("=")[0] not in given]


_KERNEL_LAUNCHER = kernelside.source("launcher") + KERNEL_TUNING + kernelside.call("start_kernel")


def kernel_argv(python: str) -> list[str]:
    """The kernel's command line (inside the sandbox): ``python -m ipykernel_launcher`` without the debugger."""
    return [python, "-c", _KERNEL_LAUNCHER, "-f", "{connection_file}"]


@dataclass
class Layout:
    """Host paths of one kernel's private directory (0711, root-owned when root)."""

    private: Path
    conn: Path
    etc: Path
    home: Path
    tmp: Path
    workdir: Path
    seccomp: Path | None
    host_uid: int | None
    home_bind: Path | None = None
    """A host directory mounted as the kernel's HOME (a kernel zygote's slot) instead of a tmpfs with the workdir."""
    shared_uid: bool = False
    """``host_uid`` belongs to a kernel zygote, not to this kernel alone: never kill by uid."""

    @classmethod
    def create(
        cls, policy: SandboxPolicy, report: IsolationReport, workdir: Path, *, for_probe: bool = False
    ) -> Layout:
        private = Path(tempfile.mkdtemp(prefix="academy-k-", dir=short_tmp()))
        os.chmod(private, 0o711)
        # A per-kernel host uid needs root and setpriv; in "userns" mode the kernel keeps the worker's uid.
        drop = os.geteuid() == 0 and report.mode != "userns" and system_tool("setpriv") is not None
        host_uid = pick_host_uid(policy) if drop else None
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
        for path in (layout.conn, layout.home, layout.tmp):
            path.mkdir(mode=0o700)
            if host_uid is not None:
                os.chown(path, host_uid, host_uid)
        layout.write_identity(report)
        if host_uid is not None and not for_probe:
            chown_tree(workdir, host_uid)
        elif host_uid is not None:
            os.chown(workdir, host_uid, host_uid)
        return layout

    def write_identity(self, report: IsolationReport) -> None:
        """The generated ``/etc/passwd`` and ``/etc/group`` in ``etc``, and the seccomp program when it applies."""
        host_uid = self.host_uid
        user_uid = SANDBOX_UID if report.mode == "userns" else (host_uid if host_uid is not None else os.geteuid())
        self.etc.mkdir(mode=0o755)
        (self.etc / "passwd").write_text(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"learner:x:{user_uid}:{user_uid}:learner:{SANDBOX_HOME}:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (self.etc / "group").write_text(f"root:x:0:\nlearner:x:{user_uid}:\nnogroup:x:65534:\n")
        for name in ("passwd", "group"):
            os.chmod(self.etc / name, 0o644)
        bpf = seccomp_filter() if report.seccomp else None
        if bpf is not None:
            self.seccomp = self.private / "seccomp.bpf"
            self.seccomp.write_bytes(bpf)
            os.chmod(self.seccomp, 0o600)

    def remove(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)


def remove_special_files(root: Path) -> list[str]:
    """Delete every entry below ``root`` that is not a regular file or a directory; their relative paths.

    Called once the kernel's processes are dead, before the grader writes the autograded
    notebook there: a symbolic link the kernel left in place of the notebook would otherwise
    make the (root) grader write through it to any host file, and a FIFO would block it.
    """
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                mode = os.lstat(path).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    os.unlink(path)
                    removed.append(os.path.relpath(path, root))
    return removed


def short_tmp() -> str:
    """A temp root short enough for Unix socket paths (108 bytes)."""
    base = tempfile.gettempdir()
    return base if len(base) < 40 else "/tmp"


def pick_host_uid(policy: SandboxPolicy) -> int:
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


def chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def _kernel_env(policy: SandboxPolicy, layout: Layout, sandboxed: bool) -> dict[str, str]:
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
    if policy.gpu is not None:  # last: nothing else names the device
        env.update(dict(policy.gpu.env))
        env["CUDA_VISIBLE_DEVICES"] = policy.gpu.visible
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
    prlimit = system_tool("prlimit")
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
    if policy.address_space_bytes and policy.gpu is None:  # CUDA cannot start under RLIMIT_AS
        args.append(f"--as={policy.address_space_bytes}")
    return [*args, "--"]


def _setpriv_args(uid: int) -> list[str]:
    setpriv = os.path.realpath(system_tool("setpriv") or "/usr/bin/setpriv")
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


def _bwrap_args(policy: SandboxPolicy, report: IsolationReport, layout: Layout) -> list[str]:
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
    made.add("/dev")
    if policy.gpu is not None:  # the granted device's nodes only: the minimal /dev has no other GPU
        for src, dest in policy.gpu.nodes:
            bind("--dev-bind", src, dest)
    for name in ETC_FILES:
        bind("--ro-bind-try", f"/etc/{name}", f"/etc/{name}")
    bind("--ro-bind", str(layout.etc / "passwd"), "/etc/passwd")
    bind("--ro-bind", str(layout.etc / "group"), "/etc/group")
    bind("--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu")
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    made.add("/tmp")
    if layout.home_bind is not None:  # a zygote: HOME is its slot, the job's workdir is moved in per kernel
        bind("--bind", str(layout.home_bind), SANDBOX_HOME)
    else:
        args += ["--perms", "1777", "--size", size, "--tmpfs", SANDBOX_HOME]
        made.add(SANDBOX_HOME)
        bind("--bind", str(layout.workdir), SANDBOX_WORKDIR)
    venv = policy.venv_dir()
    if venv and not venv.startswith("/usr/"):
        bind("--ro-bind", venv, venv)
    for src, dest in policy.ro_binds():
        bind("--ro-bind", src, dest)
    bind("--bind", str(layout.conn), str(layout.conn))
    args += ["--remount-ro", "/", "--chdir", SANDBOX_HOME if layout.home_bind is not None else SANDBOX_WORKDIR]
    if layout.seccomp is not None:
        args += ["--seccomp", "9"]
    return args


def launch_command(
    policy: SandboxPolicy,
    report: IsolationReport,
    layout: Layout,
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
    return [*cmd, *drop, system_tool("env") or "/usr/bin/env", "-i", *env, *inner]
