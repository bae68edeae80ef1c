"""A sandboxed Jupyter kernel for learners' untrusted notebook code.

The trusted grader (nbgrader / nbclient, or :func:`run_cells`) stays outside the sandbox
and talks to the kernel over ZeroMQ ``ipc`` sockets (Unix socket files in a private,
per-kernel directory that is bind-mounted into the sandbox at the same path), because the
sandbox has its own, empty network namespace.

Layers, outermost first (``docs/sandbox.md`` explains each and how it is tested; the
modules of this package are named after them: ``cgroups``, ``launch`` (rlimits,
bubblewrap, uid drop), ``seccomp``; ``isolation`` probes which layers work here,
``manager`` holds the kernel managers, ``cells`` a small runner without nbclient):

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

Grading jobs fork their kernels from a per-process **kernel zygote** (``zygote``): a sandbox
with the same layers whose process has imported ipykernel; each child is moved into the
job's own cgroups before it runs learner code, and HOME, ``/tmp``, ``/dev/shm`` and the
connection directory are emptied between kernels.  Used only in ``root`` mode with
``cgroup.kill``; otherwise, or on any failure, kernels start fresh.

A kernel granted a GPU (``SandboxPolicy.with_gpu``, for a GPU grading seat) gets that device's
nodes bound into its ``/dev`` and ``CUDA_VISIBLE_DEVICES`` set, and no ``RLIMIT_AS`` (CUDA cannot
start under one): the memory cgroup is then its RAM limit, which ``gpu_refusal`` checks is there.
No other kernel sees any GPU: the minimal ``/dev`` has none.

What does not hold: this is a kernel-shared sandbox (a kernel bug can break out; gVisor or a
VM is the stronger boundary); CPU time is capped per process, not per notebook tree; wall
time and output size are enforced by the caller (``cell_timeout`` / ``notebook_timeout``
/ ``output_bytes`` are carried here so that every caller uses the same numbers).  Without
bubblewrap or namespaces there is no filesystem or network isolation at all: the default is
to refuse (:class:`SandboxUnavailable`), and ``ACADEMY_GRADER_ALLOW_UNSANDBOXED=1`` is an
explicit, development-only escape hatch that keeps only layers 1, 2 and 4 and reports
``sandboxed = False``.
"""

from academy.engine.sandbox.cells import CellOutcome, run_cells
from academy.engine.sandbox.cgroups import KernelCgroups, reap_stale_cgroups
from academy.engine.sandbox.isolation import gpu_refusal, probe_isolation, require_isolation
from academy.engine.sandbox.manager import AsyncSandboxedKernelManager, SandboxedKernelManager, kernel_manager_class
from academy.engine.sandbox.policy import (
    ALLOW_UNSANDBOXED_ENV,
    LAB_PYTHON_ENV,
    SANDBOX_HOME,
    SANDBOX_WORKDIR,
    GiB,
    GpuGrant,
    KiB,
    MiB,
    SandboxPolicy,
    SandboxUnavailable,
)
from academy.engine.sandbox.report import IsolationReport
from academy.engine.sandbox.seccomp import seccomp_filter

__all__ = [
    "ALLOW_UNSANDBOXED_ENV",
    "LAB_PYTHON_ENV",
    "SANDBOX_HOME",
    "SANDBOX_WORKDIR",
    "AsyncSandboxedKernelManager",
    "CellOutcome",
    "GiB",
    "GpuGrant",
    "IsolationReport",
    "KernelCgroups",
    "KiB",
    "MiB",
    "SandboxPolicy",
    "SandboxUnavailable",
    "SandboxedKernelManager",
    "gpu_refusal",
    "kernel_manager_class",
    "probe_isolation",
    "reap_stale_cgroups",
    "require_isolation",
    "run_cells",
    "seccomp_filter",
]
