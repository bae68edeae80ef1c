"""The local GPU inventory: NVML when present, else the configured list (``ACADEMY_GPU_DEVICES``).

``ACADEMY_GPU_DEVICES`` is for tests and for machines without GPUs: ``"0,1"`` or
``"0:NVIDIA H200:143771,1:NVIDIA H200:143771"`` (index, then an optional name, then an optional memory
in MiB; a device without memory gets a shared profile's ``per_device`` seats); ``"none"`` means no GPU
at all; ``"cluster"`` means the hub's cluster (Kubernetes, Slurm) hands out GPUs.  Unset, the NVIDIA
Management Library is asked (``pynvml``, from the ``nvidia-ml-py`` package); when it is missing or
finds no driver, there are no GPUs and every lab runs on the CPU.

A GPU in MIG mode is not handed out itself: each of its MIG instances is a device of its own, named
by its UUID (``MIG-…``, what ``CUDA_VISIBLE_DEVICES`` takes) with its own memory.

``device_nodes`` says which device files under ``/dev`` one device needs, for a sandbox that must see
that device and no other (GPU grading, ``academy.grading.gpu``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The longest device index the database keeps (``gpu_device.index``, ``lab_session.device``): a MIG
#: instance's UUID is "MIG-" and 36 characters.
MAX_INDEX = 40
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Device:
    index: str
    name: str
    memory_mb: int | None
    source: str


def parse_configured(value: str) -> list[Device]:
    """Parse ``ACADEMY_GPU_DEVICES`` (``index[:name[:memory_mb]]``, comma-separated).

    Raises ValueError naming the entry: a bad or repeated index, a memory that is not a positive
    whole number of MiB.
    """
    if value.strip().lower() in ("", "none", "cluster"):
        return []
    devices: list[Device] = []
    for entry in value.split(","):
        index, _, rest = entry.strip().partition(":")
        name, has_memory, memory = rest.partition(":")
        index = index.strip()
        if not index or len(index) > MAX_INDEX or not all(ch.isalnum() or ch == "-" for ch in index):
            raise ValueError(f"ACADEMY_GPU_DEVICES: bad device index in {entry.strip()!r}")
        if any(d.index == index for d in devices):
            raise ValueError(f"ACADEMY_GPU_DEVICES: device {index!r} listed twice")
        memory_mb = None
        if has_memory:
            memory = memory.strip()
            if not memory.isascii() or not memory.isdigit() or int(memory) <= 0:
                raise ValueError(f"ACADEMY_GPU_DEVICES: the memory of {entry.strip()!r} must be a positive whole "
                                 f"number of MiB (index:name:memory_mb)")
            memory_mb = int(memory)
        devices.append(Device(index=index, name=name.strip() or f"GPU {index}", memory_mb=memory_mb,
                              source="configured"))
    return devices


def detect_nvml() -> list[Device]:
    """GPUs the NVIDIA driver reports (a MIG-mode GPU as its MIG instances); empty without library or driver."""
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
            if _mig_enabled(pynvml, handle):
                devices.extend(_mig_devices(pynvml, handle, i))
            else:
                devices.append(_nvml_device(pynvml, handle, str(i)))
        return devices
    except Exception as exc:
        log.warning("NVML failed while listing GPUs (%s): labs run on the CPU", exc)
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_device(pynvml: Any, handle: Any, index: str) -> Device:
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // _MIB
    return Device(index=index, name=_text(pynvml.nvmlDeviceGetName(handle)), memory_mb=int(memory), source="nvml")


def _mig_enabled(pynvml: Any, handle: Any) -> bool:
    """True when the GPU runs in MIG mode now (a GPU without MIG support answers NotSupported: False)."""
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except Exception:  # NVMLError_NotSupported, or an NVML too old to know MIG
        return False
    return bool(current == getattr(pynvml, "NVML_DEVICE_MIG_ENABLE", 1))


def _mig_devices(pynvml: Any, handle: Any, gpu: int) -> list[Device]:
    """The MIG instances of GPU ``gpu`` (empty slots skipped), each indexed by its UUID."""
    devices = []
    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except pynvml.NVMLError:  # NVMLError_NotFound: no instance in this slot
            continue
        uuid = _text(pynvml.nvmlDeviceGetUUID(mig))
        if len(uuid) > MAX_INDEX:  # drivers before R470 named them "MIG-GPU-<uuid>/<gi>/<ci>"
            log.warning("GPU %s: MIG device %s skipped: its name is longer than %d characters (update the driver)",
                        gpu, uuid, MAX_INDEX)
            continue
        devices.append(_nvml_device(pynvml, mig, uuid))
    if not devices:
        log.warning("GPU %s is in MIG mode without MIG instances: no lab can use it", gpu)
    return devices


def inventory(configured: str | None) -> list[Device]:
    """The devices to hand out: the configured list when given, else NVML's."""
    if configured is not None:
        return parse_configured(configured)
    return detect_nvml()


# -- the device nodes of one device ------------------------------------------------------------------------------

#: Device files every CUDA program needs besides its GPU's own ``nvidia<minor>``; then those bound when present.
SHARED_NODES = ("nvidiactl", "nvidia-uvm")
OPTIONAL_NODES = ("nvidia-uvm-tools", "nvidia-modeset")
#: Where the driver lists the minor numbers of MIG instances' capability files (``/dev/nvidia-caps/nvidia-cap<N>``).
MIG_MINORS = "/proc/driver/nvidia-caps/mig-minors"


class DeviceGone(Exception):
    """The device cannot be handed to a program now: it is gone (a MIG instance destroyed), or its device files are
    missing.  The message says which and why, in one line."""


@dataclass(frozen=True)
class DeviceNodes:
    """What a sandbox needs to see exactly one device: ``visible`` for ``CUDA_VISIBLE_DEVICES`` (the UUID NVML
    gave, else the index) and the names of its device files below ``/dev``."""

    visible: str
    names: tuple[str, ...]


def device_nodes(index: str, *, dev_root: str = "/dev", use_nvml: bool = True,
                 mig_minors: str = MIG_MINORS) -> DeviceNodes:
    """The device files of inventory device ``index`` (a GPU's index, or a MIG instance's UUID).

    With NVML (``use_nvml``, the inventory came from NVML): a GPU's own file is ``nvidia<minor number>`` and
    ``visible`` its UUID; a MIG instance needs its GPU's file and the two capability files of its GPU and compute
    instances (``nvidia-caps/nvidia-cap<N>``, numbered in ``mig_minors``).  Without NVML (a configured
    inventory) a GPU index ``N`` is ``nvidia<N>``; a MIG instance cannot be found without NVML.  Every file must
    exist under ``dev_root`` (another folder only for tests).  Raises DeviceGone otherwise: a MIG UUID or an
    index NVML no longer knows, a device file missing.
    """
    mig = index.startswith("MIG-")
    found = _nvml_nodes(index, mig_minors) if use_nvml or mig else None
    if found is None:
        if mig:
            raise DeviceGone(f"MIG device {index}: NVML (nvidia-ml-py) is needed to find its GPU and is not available")
        if not (index.isascii() and index.isdigit()):
            raise DeviceGone(f"device {index!r} is not a GPU index")
        found = DeviceNodes(visible=index, names=(f"nvidia{index}",))
    root = Path(dev_root)
    names = (*found.names, *SHARED_NODES)
    missing = [str(root / name) for name in names if not (root / name).exists()]
    if missing:
        raise DeviceGone(f"GPU {index}: device file {', '.join(missing)} missing")
    optional = tuple(name for name in OPTIONAL_NODES if (root / name).exists())
    return DeviceNodes(visible=found.visible, names=(*names, *optional))


def _nvml_nodes(index: str, mig_minors: str) -> DeviceNodes | None:
    """``index``'s own device files and CUDA name through NVML; None without NVML (no library or no driver)."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, _DriverNotLoaded...
        return None
    try:
        if index.startswith("MIG-"):
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(index)
            except pynvml.NVMLError as exc:  # NVMLError_NotFound: the instance was destroyed
                raise DeviceGone(f"MIG device {index} is no longer present ({exc})") from None
            gpu = pynvml.nvmlDeviceGetMinorNumber(pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle))
            caps = _mig_caps(mig_minors, gpu, pynvml.nvmlDeviceGetGpuInstanceId(handle),
                             pynvml.nvmlDeviceGetComputeInstanceId(handle))
            return DeviceNodes(visible=index, names=(f"nvidia{gpu}", *caps))
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(index))
        except (ValueError, pynvml.NVMLError) as exc:
            raise DeviceGone(f"GPU {index} is no longer present ({exc})") from None
        return DeviceNodes(visible=_text(pynvml.nvmlDeviceGetUUID(handle)),
                           names=(f"nvidia{pynvml.nvmlDeviceGetMinorNumber(handle)}",))
    except DeviceGone:
        raise
    except Exception as exc:  # noqa: BLE001 - any NVML failure: the device cannot be handed out now
        raise DeviceGone(f"GPU {index}: NVML failed ({exc})") from None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _mig_caps(mig_minors: str, gpu: int, gpu_instance: int, compute_instance: int) -> tuple[str, str]:
    """The capability files of a MIG instance: ``gpu<G>/gi<I>/access`` and ``gpu<G>/gi<I>/ci<C>/access``."""
    wanted = (f"gpu{gpu}/gi{gpu_instance}/access", f"gpu{gpu}/gi{gpu_instance}/ci{compute_instance}/access")
    minors: dict[str, str] = {}
    try:
        for line in Path(mig_minors).read_text().splitlines():
            name, _, minor = line.strip().rpartition(" ")
            minors[name] = minor
    except OSError as exc:
        raise DeviceGone(f"MIG instance gi{gpu_instance}/ci{compute_instance} of GPU {gpu}: {exc}") from None
    missing = [name for name in wanted if not minors.get(name, "").isdigit()]
    if missing:
        raise DeviceGone(f"MIG instance gi{gpu_instance}/ci{compute_instance} of GPU {gpu} is no longer present "
                         f"(not in {mig_minors})")
    return (f"nvidia-caps/nvidia-cap{minors[wanted[0]]}", f"nvidia-caps/nvidia-cap{minors[wanted[1]]}")
