"""The local GPU inventory: NVML when present, else the configured list (``ACADEMY_GPU_DEVICES``).

``ACADEMY_GPU_DEVICES`` is for tests and for machines without GPUs: ``"0,1"`` or
``"0:NVIDIA A100 80GB,1:NVIDIA A100 80GB"`` (index, then an optional name); ``"none"`` means no
GPU at all; ``"cluster"`` means the hub's cluster (Kubernetes, Slurm) hands out GPUs.  Unset, the
NVIDIA Management Library is asked (``pynvml``, from the ``nvidia-ml-py`` package); when it is
missing or finds no driver, there are no GPUs and every lab runs on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Device:
    index: str
    name: str
    memory_mb: int | None
    source: str


def parse_configured(value: str) -> list[Device]:
    """Parse ``ACADEMY_GPU_DEVICES``; raises ValueError on a malformed entry."""
    if value.strip().lower() in ("", "none", "cluster"):
        return []
    devices: list[Device] = []
    for entry in value.split(","):
        index, _, name = entry.strip().partition(":")
        index = index.strip()
        if not index or not all(ch.isalnum() or ch == "-" for ch in index):
            raise ValueError(f"ACADEMY_GPU_DEVICES: bad device index {entry!r}")
        if any(d.index == index for d in devices):
            raise ValueError(f"ACADEMY_GPU_DEVICES: device {index!r} listed twice")
        devices.append(Device(index=index, name=name.strip() or f"GPU {index}", memory_mb=None, source="configured"))
    return devices


def detect_nvml() -> list[Device]:
    """GPUs the NVIDIA driver reports; an empty list when there is no library or no driver."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded...: no GPU here
        log.info("NVML unavailable (%s): labs run on the CPU", exc)
        return []
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024)
            devices.append(Device(index=str(i), name=str(name), memory_mb=int(memory), source="nvml"))
        return devices
    except Exception as exc:
        log.warning("NVML failed while listing GPUs (%s): labs run on the CPU", exc)
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def inventory(configured: str | None) -> list[Device]:
    """The devices to hand out: the configured list when given, else NVML's."""
    if configured is not None:
        return parse_configured(configured)
    return detect_nvml()
