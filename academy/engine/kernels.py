"""Which kernel manager runs learners' code, and the unsandboxed one for development.

``kernel_manager_class_for(policy)`` is the one place that picks the kernel manager:
the sandbox's asyncio manager when ``academy.engine.sandbox`` provides one (fail
closed: ``SandboxUnavailable`` becomes a grader error unless the policy allows
unsandboxed runs), else ``LabKernelManager`` (unsandboxed: the lab environment's
interpreter, a private runtime directory, IPC transport, an allow-listed environment).
Kernels never run with the portal's interpreter; ``ACADEMY_LAB_PYTHON`` overrides the
interpreter.  ``job_kernel_manager`` binds the chosen class to one job's working
directory: the kernel must start in the submission's directory and nowhere else.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from academy.engine.results import GraderSetupError

log = logging.getLogger(__name__)

LAB_PYTHON_ENV = "ACADEMY_LAB_PYTHON"
"""Environment variable naming the learners' interpreter (default: ``.venv-lab/bin/python``)."""

_REPO_ROOT = Path(__file__).resolve().parents[2]


def lab_python(policy: Any = None) -> str:
    """The interpreter learners' kernels run with: ``$ACADEMY_LAB_PYTHON``, the policy's, or ``.venv-lab``.

    Raises ``GraderSetupError`` when it does not exist or is the portal's own interpreter.
    """
    candidate = os.environ.get(LAB_PYTHON_ENV) or getattr(policy, "python", None) or str(
        _REPO_ROOT / ".venv-lab" / "bin" / "python")
    path = Path(candidate)
    if not path.is_absolute() or not os.access(path, os.X_OK):
        raise GraderSetupError(f"the lab interpreter {candidate} is missing (make lab-env, or set {LAB_PYTHON_ENV})")
    if path.parent.parent.resolve() == Path(sys.prefix).resolve():
        raise GraderSetupError(f"{candidate} is the portal's interpreter; learners' kernels need the lab environment")
    return str(path)


def kernel_manager_class_for(policy: Any) -> type:
    """The kernel manager class that runs learners' code: the single switch for the sandbox.

    With ``academy.engine.sandbox`` present: ``require_isolation(policy)`` (fail closed:
    ``SandboxUnavailable`` unless the policy allows unsandboxed runs) and the sandbox's
    asyncio manager bound to ``policy``; its working directory is bound per kernel to the
    ``cwd`` nbclient starts it in (see ``_BindWorkdir``).  Without the sandbox module:
    ``LabKernelManager``, unsandboxed.
    """
    sandbox = sandbox_module()
    if sandbox is None:
        return LabKernelManager
    policy = policy if policy is not None else sandbox.SandboxPolicy()
    sandbox.require_isolation(policy)
    return sandbox.kernel_manager_class(policy, "", asynchronous=True)


def sandbox_module() -> Any:
    """``academy.engine.sandbox`` if it is there and offers what the hook needs, else None."""
    try:
        from academy.engine import sandbox
    except ImportError:
        return None
    needed = ("SandboxPolicy", "require_isolation", "probe_isolation", "kernel_manager_class")
    return sandbox if all(hasattr(sandbox, name) for name in needed) else None


def resolve_policy(policy: Any) -> Any:
    """The sandbox policy to use (the sandbox's default when None), with nbgrader's NBGRADER_EXECUTION."""
    sandbox = sandbox_module()
    if policy is None and sandbox is not None:
        policy = sandbox.SandboxPolicy()
    if policy is not None and hasattr(policy, "extra_env") and dataclasses.is_dataclass(policy):
        # nbgrader sets NBGRADER_EXECUTION=autograde while it executes; notebooks may test it.
        policy = dataclasses.replace(policy, extra_env=(*policy.extra_env, ("NBGRADER_EXECUTION", "autograde")))
    return policy


def prestart_zygote(policy: Any = None) -> bool:
    """In a new grading process: launch its kernel zygote now, while the process does other work.

    The zygote (``sandbox/zygote.py``) imports ipykernel once for all the kernels of the
    process; launched early, the first job waits less for it.  False where none is used.
    """
    sandbox = sandbox_module()
    if sandbox is None:
        return False
    from academy.engine.sandbox import zygote

    policy = resolve_policy(policy)
    try:
        return zygote.prestart(policy, sandbox.probe_isolation(policy))
    except Exception:  # noqa: BLE001 - the first job starts it (or a fresh kernel) instead
        log.warning("kernel zygote not prestarted", exc_info=True)
        return False


def job_kernel_manager(policy: Any, job: Path, workdir: Path) -> tuple[type, bool]:
    """The hook's kernel manager class, bound to this job's working directory; and whether it is sandboxed."""
    base = kernel_manager_class_for(policy)
    attrs: dict[str, Any] = {"expected_workdir": str(workdir), "__module__": __name__}
    if issubclass(base, LabKernelManager):
        attrs.update(lab_python=lab_python(policy), kernel_log=str(job / "kernel.log"))
        sandboxed = False
    else:
        sandboxed = bool(sandbox_module().probe_isolation(policy).sandbox_available)
        attrs["use_zygote"] = True  # one job's kernels at a time per process: fork them from a zygote
    return type(f"Job{base.__name__}", (_BindWorkdir, base), attrs), sandboxed


class _BindWorkdir:
    """Mixin: the kernel runs in the directory nbclient gives it, which must be the submission's.

    nbclient starts the kernel with ``cwd=<autograded notebook's directory>``; that exact
    directory becomes the sandbox's only writable, learner-visible directory.
    """

    expected_workdir = ""

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        cwd = os.path.realpath(kw.get("cwd") or os.getcwd())
        if self.expected_workdir and cwd != os.path.realpath(self.expected_workdir):
            raise GraderSetupError(f"the kernel would start in {cwd}, not in the submission's directory")
        if hasattr(self, "workdir") and not self.workdir:
            self.workdir = cwd
        return await super()._async_pre_start_kernel(**kw)  # type: ignore[misc]


class LabKernelManager(AsyncKernelManager):
    """An unsandboxed kernel in the lab environment (development and tests only).

    Ignores the notebook's kernel name: always ``<lab python> -m ipykernel_launcher``.
    The kernel talks over IPC sockets in a private 0700 directory that also holds its
    connection file and an empty HOME; its environment is an allow-list (no portal
    secrets).  It is not isolated: it can read whatever the grader's user can.
    """

    lab_python = ""
    kernel_log = ""
    _private: str | None = None

    @property
    def kernel_spec(self) -> Any:
        return KernelSpec(argv=[self.lab_python or lab_python(), "-m", "ipykernel_launcher", "-f",
                                "{connection_file}"], display_name="Python 3 (lab)", language="python",
                          interrupt_mode="signal", metadata={})

    @property
    def ipykernel(self) -> bool:
        return True

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        if self._private is None:
            self._private = tempfile.mkdtemp(prefix="acg-")
            os.mkdir(os.path.join(self._private, "home"))
            self.transport = "ipc"
            self.connection_file = os.path.join(self._private, "kernel.json")
            self.ip = os.path.join(self._private, "k")
        home = os.path.join(self._private, "home")
        env = {
            "PATH": os.pathsep.join([str(Path(self.lab_python or lab_python()).parent), "/usr/local/bin",
                                     "/usr/bin", "/bin"]),
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "MPLBACKEND": "Agg",
        }
        if os.environ.get("NBGRADER_EXECUTION"):  # nbgrader sets it while autograding
            env["NBGRADER_EXECUTION"] = os.environ["NBGRADER_EXECUTION"]
        kw["env"] = env
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if not self.kernel_log:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        # The kernel process's own output goes to the job's log file, not our stderr.
        with open(self.kernel_log, "ab") as log_file:
            kw["stdout"], kw["stderr"] = log_file, subprocess.STDOUT
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    cleanup_resources = _async_cleanup_resources
