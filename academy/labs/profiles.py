"""Lab profiles from ``hub_config/profiles.toml`` (the file the local hub reads too)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from academy.errors import AcademyError

if TYPE_CHECKING:
    from academy.config import Settings

#: Course staff's lab: the course's source notebooks and nbgrader's authoring tools; never offered to learners.
AUTHORING = "authoring"


@dataclass(frozen=True)
class Profile:
    name: str
    title: dict[str, str]
    gpus: int = 0
    shared: bool = False
    per_device: int = 1
    mem_limit: str | None = None
    cpu_limit: float | None = None

    @property
    def uses_gpu(self) -> bool:
        return self.gpus > 0

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
        gpus = int(raw.get("gpus", 0))
        shared = bool(raw.get("shared", False))
        per_device = int(raw.get("per_device", 1 if not shared else 4))
        if gpus < 0 or per_device < 1 or (shared and gpus != 1):
            raise AcademyError(f"{path}: profile {name!r}: gpus >= 0, per_device >= 1; a shared profile has gpus = 1")
        title = raw.get("title") or {}
        profiles[name] = Profile(name=name, title={str(k): str(v) for k, v in title.items()}, gpus=gpus,
                                 shared=shared, per_device=per_device if shared else 1,
                                 mem_limit=raw.get("mem_limit"), cpu_limit=raw.get("cpu_limit"))
    if "cpu" not in profiles or profiles["cpu"].uses_gpu:
        raise AcademyError(f"{path}: a CPU-only profile named 'cpu' is required (the fallback when GPUs are busy)")
    if AUTHORING in profiles and profiles[AUTHORING].uses_gpu:
        raise AcademyError(f"{path}: the '{AUTHORING}' profile (course staff's authoring lab) must be CPU-only")
    return profiles


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
