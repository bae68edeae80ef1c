"""What the isolation probe found on this machine: a plain record shared by the probe and the launcher."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    memory_cgroup: bool = False  # a memory cgroup holds each kernel's RAM (v1 memory, or v2 memory.max)
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
