"""Jupyter kernel managers whose kernel runs in the sandbox (blocking and asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import weakref
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager, KernelManager
from traitlets import HasTraits, Instance, Unicode, default

from academy.engine.sandbox import zygote
from academy.engine.sandbox.cgroups import KernelCgroups, cgroup_bases, reap_stale_cgroups
from academy.engine.sandbox.isolation import require_isolation
from academy.engine.sandbox.launch import (
    Layout,
    kernel_arguments,
    kernel_argv,
    launch_command,
    remove_special_files,
)
from academy.engine.sandbox.policy import SYSTEM_PATH, SandboxPolicy
from academy.engine.sandbox.report import IsolationReport

log = logging.getLogger(__name__)


class _RunState:
    """Resources of one kernel that must be released even if the manager is dropped."""

    def __init__(self) -> None:
        self.layout: Layout | None = None
        self.cgroups: KernelCgroups | None = None
        self.lease: zygote.ZygoteLease | None = None
        self.survivors = False  # a cgroup kill left processes: the zygote must not serve another kernel

    def stop_processes(self) -> None:
        if self.cgroups is not None:
            self.survivors = not self.cgroups.kill() or self.survivors
            self.cgroups.remove()
            self.cgroups = None
        if self.layout is not None and self.layout.host_uid is not None and not self.layout.shared_uid:
            _kill_uid(self.layout.host_uid)

    def close(self) -> None:
        self.stop_processes()
        workdir = self.layout.workdir if self.layout is not None else None  # a lease's layout has the job's
        if self.lease is not None:
            self.lease.release(healthy=not self.survivors)  # removes its layout too
            self.lease = None
            self.layout = None
        if self.layout is not None:
            self.layout.remove()
            self.layout = None
        if workdir is not None and workdir.is_dir() and not workdir.is_symlink():
            left = remove_special_files(workdir)
            if left:
                log.warning("removed what the kernel left in its workdir that is not a file: %s", ", ".join(left[:5]))


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
    use_zygote = False
    """Fork the kernel from this process's kernel zygote where ``zygote.usable`` (grading jobs set it)."""

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
            argv=kernel_argv(self.policy.python),
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
            lease = zygote.lease(self.policy, report, workdir) if self.use_zygote and self.sandboxed else None
            self._state.lease = lease
            self._use_layout(lease.layout if lease is not None else Layout.create(self.policy, report, workdir))
        with contextlib.suppress(OSError):
            reap_stale_cgroups(self.policy)
        name = f"{os.getpid()}-{(self.kernel_id or 'k')[:8]}-{secrets.token_hex(3)}"
        self._state.cgroups = KernelCgroups(cgroup_bases(self.policy.cgroup_root), name, self.policy)

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
        inner = super().format_kernel_cmd(kernel_arguments(extra_arguments))  # type: ignore[misc]
        assert self._state.layout is not None
        layout, cgroups = self._state.layout, self._state.cgroups
        return launch_command(self.policy, self.isolation, layout, inner, cgroups, sandboxed=self.sandboxed)

    def _use_layout(self, layout: Layout) -> None:
        """The kernel's private directory: its connection file and IPC sockets live there."""
        self._state.layout = layout
        self.connection_file = str(layout.conn / "kernel.json")
        self.ip = str(layout.conn / "kernel-ipc")

    def _fork_from_zygote(self) -> bool:
        """Start the kernel as a child of the zygote; False (after switching to a fresh layout) if that failed."""
        lease, cgroups = self._state.lease, self._state.cgroups
        assert lease is not None and cgroups is not None and self.provisioner is not None
        try:
            child = lease.start(self.connection_file, cgroups)
        except (zygote.ZygoteError, OSError) as exc:
            log.warning("kernel zygote failed (%s); starting a fresh kernel", exc)
            self._state.lease = None
            cgroups.kill()
            lease.release(healthy=False)
            self._use_layout(Layout.create(self.policy, self.isolation, lease.workdir))
            self._connection_file_written = False
            self.write_connection_file()
            self.provisioner.connection_info = self.get_connection_info()  # type: ignore[attr-defined]
            return False
        provisioner: Any = self.provisioner
        provisioner.process, provisioner.pid, provisioner.pgid = child, child.pid, None
        provisioner.cwd = str(lease.workdir)
        self._reconcile_connection_info(provisioner.connection_info)
        return True

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if self._state.lease is not None:
            try:
                if self._fork_from_zygote():
                    return
            except BaseException:
                self._state.close()
                raise
            kernel_cmd = self.format_kernel_cmd()
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
