"""Lab profiles from ``hub_config/profiles.toml`` (the file the local hub reads too)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from academy.errors import AcademyError

if TYPE_CHECKING:
    from academy.config import Settings

#: Course staff's lab: the course's source notebooks and nbgrader's authoring tools; never offered to learners.
AUTHORING = "authoring"


@dataclass(frozen=True)
class Profile:
    """One lab profile.  A GPU profile either holds a whole device (``exclusive``) or shares one.

    A shared profile's seat is ``gpu_memory_mb`` MiB of a device (as many seats fit as the device's
    memory, less ``ACADEMY_GPU_RESERVE_MB``, allows); ``per_device`` is the seat count of a device whose
    memory is unknown (a configured inventory such as ``"0,1"``), and of a shared profile that states no
    memory.
    """

    name: str
    title: dict[str, str]
    gpus: int = 0
    shared: bool = False
    per_device: int = 1
    gpu_memory_mb: int | None = None
    gpu_compute_percent: int | None = None  # a seat's share of the device's compute under MPS (hub_config/gpu_share.py)
    mem_limit: str | None = None
    cpu_limit: float | None = None

    @property
    def uses_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def exclusive(self) -> bool:
        """A GPU profile whose server holds its device(s) alone."""
        return self.uses_gpu and not self.shared

    @property
    def authoring(self) -> bool:
        """Course staff's authoring lab (see ``AUTHORING``)."""
        return self.name == AUTHORING

    def title_for(self, locale: str) -> str:
        return self.title.get(locale) or self.title.get("ko") or self.name


def load_profiles(path: Path) -> dict[str, Profile]:
    """Read and check the profiles file; raises AcademyError naming the file and profile."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AcademyError(f"{path}: cannot read lab profiles: {exc}") from exc
    profiles: dict[str, Profile] = {}
    for name, raw in (data.get("profiles") or {}).items():
        if not isinstance(raw, dict):
            raise AcademyError(f"{path}: profile {name!r} must be a table")
        profiles[name] = _profile(path, name, raw)
    if "cpu" not in profiles or profiles["cpu"].uses_gpu:
        raise AcademyError(f"{path}: a CPU-only profile named 'cpu' is required (the fallback when GPUs are busy)")
    if AUTHORING in profiles and profiles[AUTHORING].uses_gpu:
        raise AcademyError(f"{path}: the '{AUTHORING}' profile (course staff's authoring lab) must be CPU-only")
    return profiles


def _profile(path: Path, name: str, raw: dict[str, Any]) -> Profile:
    """One ``[profiles.NAME]`` table, checked; AcademyError naming the file and the profile otherwise."""

    def refuse(reason: str) -> AcademyError:
        return AcademyError(f"{path}: profile {name!r}: {reason}")

    gpus = int(raw.get("gpus", 0))
    exclusive = raw.get("exclusive", False)
    memory = raw.get("gpu_memory_mb")
    if not isinstance(exclusive, bool):
        raise refuse("exclusive is true or false")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0):
        raise refuse(f"gpu_memory_mb must be a positive whole number of MiB, not {memory!r}")
    if gpus == 0 and (exclusive or memory is not None):
        raise refuse("a CPU profile (gpus = 0) takes neither exclusive nor gpu_memory_mb")
    if exclusive and memory is not None:
        raise refuse("either exclusive = true (a whole device) or gpu_memory_mb (a seat on a shared device), "
                     "not both")
    shared = bool(raw.get("shared", memory is not None))
    if exclusive and shared:
        raise refuse("either exclusive = true or shared = true, not both")
    if memory is not None and not shared:
        raise refuse("gpu_memory_mb is a seat on a shared device: it cannot go with shared = false")
    per_device = int(raw.get("per_device", 1 if not shared else 4))
    compute = raw.get("gpu_compute_percent")
    if compute is not None and (memory is None or isinstance(compute, bool) or not isinstance(compute, int)
                                or not 1 <= compute <= 100):
        raise refuse(f"gpu_compute_percent is a whole number from 1 to 100 for a seat (gpu_memory_mb), not {compute!r}")
    if gpus < 0 or per_device < 1 or (shared and gpus != 1):
        raise refuse("gpus >= 0, per_device >= 1; a shared profile has gpus = 1")
    title = raw.get("title") or {}
    return Profile(name=name, title={str(k): str(v) for k, v in title.items()}, gpus=gpus, shared=shared,
                   per_device=per_device if shared else 1, gpu_memory_mb=memory, gpu_compute_percent=compute,
                   mem_limit=raw.get("mem_limit"), cpu_limit=raw.get("cpu_limit"))


_cache: dict[str, tuple[float, dict[str, Profile]]] = {}


def configured_profiles(settings: Settings) -> dict[str, Profile]:
    """The profiles of ``settings.lab_profiles_file``, read again when the file changes."""
    path = settings.lab_profiles_file
    mtime = path.stat().st_mtime if path.exists() else 0.0
    cached = _cache.get(str(path))
    if cached is None or cached[0] != mtime:
        cached = (mtime, load_profiles(path))
        _cache[str(path)] = cached
    return cached[1]
