"""The sandbox's limits and locations (``SandboxPolicy``), its constants and ``SandboxUnavailable``."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from academy.engine.errors import EngineError

REPO_ROOT = Path(__file__).resolve().parents[3]
LAB_PYTHON_ENV = "ACADEMY_LAB_PYTHON"
ALLOW_UNSANDBOXED_ENV = "ACADEMY_GRADER_ALLOW_UNSANDBOXED"
ZYGOTE_ENV = "ACADEMY_GRADER_ZYGOTE"
ZYGOTE_PRELOAD_ENV = "ACADEMY_GRADER_ZYGOTE_PRELOAD"
DEFAULT_ZYGOTE_PRELOAD = ("numpy", "pandas", "sklearn.model_selection", "sklearn.linear_model")
"""Modules a kernel zygote imports once for all its kernels: what most of the shipped curriculum's notebooks
import (NumPy all 27, pandas 17, scikit-learn 13; its import is 0.6 s, the submodules' a few hundredths more)."""

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
GPU_MEMORY_BYTES = 4 * GiB
"""The least RAM a kernel granted a GPU gets (its memory cgroup): PyTorch's CUDA libraries and the CUDA context
take a large part of the default 2 GiB before a notebook's own data (the labs' shared GPU profile has 4 GiB)."""


class SandboxUnavailable(EngineError):
    """Learner code cannot be run isolated here, and unsandboxed runs were not allowed."""

    status_code = 503  # what a caller that answers over HTTP should say
    code = "sandbox_unavailable"


def system_tool(name: str) -> str | None:
    """The path of a system program (``prlimit``, ``setpriv``, ...) on ``SYSTEM_PATH`` only, or None."""
    return shutil.which(name, path=SYSTEM_PATH)


def default_lab_python() -> str:
    """``$ACADEMY_LAB_PYTHON``, else the repository's ``.venv-lab/bin/python``."""
    return os.environ.get(LAB_PYTHON_ENV) or str(REPO_ROOT / ".venv-lab" / "bin" / "python")


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def env_modules(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Module names listed in environment variable ``name`` (commas or spaces; empty or ``none``: no module)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    names = tuple(part for part in re.split(r"[\s,]+", raw.strip()) if part)
    if names in ((), ("none",)):
        return ()
    bad = [item for item in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", item)]
    if bad:
        raise ValueError(f"{name}: not a module name: {', '.join(bad)}")
    return names


def env_flag_default_on(name: str) -> bool:
    """False only when environment variable ``name`` is set to a false value (0, false, no, off)."""
    return os.environ.get(name, "").strip().lower() not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class GpuGrant:
    """One GPU (or MIG instance) granted to a kernel: the device nodes bound into its sandbox, what CUDA is told.

    ``device`` is the inventory's index (``"0"``, ``"MIG-…"``), for messages; ``visible`` the value of
    ``CUDA_VISIBLE_DEVICES`` (the device's UUID where NVML gave one, else its index); ``nodes`` the
    ``(host path, sandbox path)`` pairs of the character devices bound with ``--dev-bind`` (``/dev/nvidia<N>`` of
    the granted GPU only, ``/dev/nvidiactl``, ``/dev/nvidia-uvm``..., a MIG instance's capability files); ``env``
    further variables for the kernel; ``memory_mb`` the seat's device memory (None: the whole device).
    """

    device: str
    visible: str
    nodes: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...] = ()
    memory_mb: int | None = None

    @classmethod
    def for_nodes(cls, device: str, visible: str, names: tuple[str, ...], *, dev_root: str = "/dev",
                  memory_mb: int | None = None) -> GpuGrant:
        """A grant binding ``dev_root/<name>`` at ``/dev/<name>`` for each of ``names`` (``nvidia0``,
        ``nvidia-caps/nvidia-cap21``...); ``dev_root`` is another folder only where tests stand files in for the
        device nodes.  The kernel also gets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (NVML's order, should an index be
        used) and the worker's ``LD_LIBRARY_PATH`` entries under ``/usr`` (where container images keep the
        driver's ``libcuda``; nothing else of the host is mounted).
        """
        for name in names:
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"not a device node name below /dev: {name!r}")
        env = [("CUDA_DEVICE_ORDER", "PCI_BUS_ID")]
        libraries = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p.startswith("/usr/")]
        if libraries:
            env.append(("LD_LIBRARY_PATH", ":".join(libraries)))
        return cls(device=device, visible=visible, memory_mb=memory_mb, env=tuple(env),
                   nodes=tuple((os.path.join(dev_root, name), f"/dev/{name}") for name in names))


@dataclass(frozen=True)
class SandboxPolicy:
    """Limits and locations for one sandboxed kernel.

    ``memory_bytes`` is the cgroup RAM cap (the primary memory limit) and
    ``address_space_bytes`` the RLIMIT_AS backstop (set it generously: PyTorch alone maps
    about 1 GiB).  ``cpu_seconds`` is RLIMIT_CPU of each process (SIGXCPU, then SIGKILL five
    seconds later).  ``cell_timeout``, ``notebook_timeout`` and ``output_bytes`` are applied
    by the caller (nbclient's ``timeout``, a total deadline, an output cap); they live here so
    every caller uses the same numbers.  ``extra_ro_binds`` are host paths (or
    ``(host, inside)`` pairs) mounted read-only, for example a test bundle.  ``zygote`` lets
    grading jobs fork their kernels from a per-process kernel zygote where it is safe
    (``sandbox/zygote.py``; ``ACADEMY_GRADER_ZYGOTE=0`` turns it off); ``zygote_preload`` names
    the modules the zygote imports once for all its kernels (``ACADEMY_GRADER_ZYGOTE_PRELOAD``).
    ``gpu`` is the GPU granted to the kernel (``with_gpu``); None, the usual case: no device at all.
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
    python: str = field(default_factory=default_lab_python)
    bwrap: str | None = field(default_factory=lambda: shutil.which("bwrap"))
    allow_unsandboxed: bool = field(default_factory=lambda: env_flag(ALLOW_UNSANDBOXED_ENV))
    extra_ro_binds: tuple[str | tuple[str, str], ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    seccomp: bool = True
    host_uid_range: tuple[int, int] = (3_000_000, 1_000_000)
    cgroup_root: str = "/sys/fs/cgroup"
    zygote: bool = field(default_factory=lambda: env_flag_default_on(ZYGOTE_ENV))
    zygote_preload: tuple[str, ...] = field(
        default_factory=lambda: env_modules(ZYGOTE_PRELOAD_ENV, DEFAULT_ZYGOTE_PRELOAD))
    gpu: GpuGrant | None = None

    def with_gpu(self, grant: GpuGrant) -> SandboxPolicy:
        """This policy for a kernel granted ``grant``: its device nodes bound, ``CUDA_VISIBLE_DEVICES`` set.

        CUDA cannot start under an address-space limit, so there is no ``RLIMIT_AS``: the memory cgroup
        (at least ``GPU_MEMORY_BYTES``) is then the only limit of the kernel's RAM, and the caller must have
        checked that it works here (``isolation.gpu_refusal``).  Such kernels never come from a kernel zygote
        (``zygote.usable``): a zygote outlives the job, and its sandbox would keep the device after the seat
        was given back.
        """
        return dataclasses.replace(self, gpu=grant, address_space_bytes=None,
                                   memory_bytes=max(self.memory_bytes, GPU_MEMORY_BYTES))

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
