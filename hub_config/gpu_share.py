"""A lab's share of its GPU: the environment the hub gives a server granted a seat (hub_config/profiles.toml).

Loaded by the hub's configuration (jupyterhub_config.py) from this folder; plain Python, no JupyterHub.

A profile with ``gpu_memory_mb`` is a seat on a shared device.  Its server gets:

* ``ACADEMY_GPU_MEMORY_MB``: the seat's memory.  The lab's Python (``singleuser/sitecustomize.py``, then
  ``singleuser/academy_gpu_cap.py``) reads it: without MPS it caps PyTorch's allocator at that much when
  CUDA starts (``torch.cuda.set_per_process_memory_fraction``), a **soft** cap that only PyTorch's caching
  allocator obeys; either way an out-of-memory error in a notebook explains the share.
* With NVIDIA's MPS daemon (``ACADEMY_GPU_MPS=1``: the operator runs ``nvidia-cuda-mps-control -d``), MPS's
  client environment, which the driver enforces for every CUDA program of the lab:
  ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` (the seat's memory on the one device the lab sees) and, when the
  profile states ``gpu_compute_percent``, ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``; the daemon's pipe and log
  directories (``ACADEMY_GPU_MPS_PIPE_DIRECTORY``, ``ACADEMY_GPU_MPS_LOG_DIRECTORY``, or MPS's defaults).
  The limit counts the CUDA context (about 500 MiB), so a seat under 1 GiB leaves little for tensors.

An exclusive profile (the whole device) and a CPU profile get none of these.  MPS configured but not
running (no ``control`` socket in its pipe directory): ``mps_problem`` says so and the hub refuses the
start, so that no lab runs unaccounted for.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

MEMORY_ENV = "ACADEMY_GPU_MEMORY_MB"
ENFORCED_ENV = "ACADEMY_GPU_SHARE_ENFORCED"  # "mps" or "soft"
MPS_DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"
MPS_DEFAULT_LOG_DIRECTORY = "/var/log/nvidia-mps"


def mps_enabled(environ: Mapping[str, str]) -> bool:
    """``ACADEMY_GPU_MPS``: the operator runs NVIDIA's MPS daemon for the hub's GPUs."""
    return environ.get("ACADEMY_GPU_MPS", "").strip().lower() in ("1", "true", "yes", "on")


def mps_pipe_directory(environ: Mapping[str, str]) -> str:
    return (environ.get("ACADEMY_GPU_MPS_PIPE_DIRECTORY", "").strip()
            or environ.get("CUDA_MPS_PIPE_DIRECTORY", "").strip() or MPS_DEFAULT_PIPE_DIRECTORY)


def mps_log_directory(environ: Mapping[str, str]) -> str:
    return (environ.get("ACADEMY_GPU_MPS_LOG_DIRECTORY", "").strip()
            or environ.get("CUDA_MPS_LOG_DIRECTORY", "").strip() or MPS_DEFAULT_LOG_DIRECTORY)


def seat_memory_mb(profile: Mapping[str, object]) -> int | None:
    """The seat's memory of a shared GPU profile; None for a CPU profile or a whole device."""
    memory = profile.get("gpu_memory_mb")
    if not int(profile.get("gpus", 0) or 0) or profile.get("exclusive") or memory is None:
        return None
    return int(memory)  # type: ignore[call-overload]


def share_environment(profile: Mapping[str, object], device: str, environ: Mapping[str, str]) -> dict[str, str]:
    """What a server of ``profile`` granted ``device`` gets to hold it to its seat (see the module)."""
    memory = seat_memory_mb(profile)
    if memory is None or not device:
        return {}
    if not mps_enabled(environ):
        return {MEMORY_ENV: str(memory), ENFORCED_ENV: "soft"}
    shares = {MEMORY_ENV: str(memory), ENFORCED_ENV: "mps",
              "CUDA_MPS_PIPE_DIRECTORY": mps_pipe_directory(environ),
              "CUDA_MPS_LOG_DIRECTORY": mps_log_directory(environ),
              # The lab sees one device (CUDA_VISIBLE_DEVICES), so it is device 0 to MPS's client.
              "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": f"0={memory}MB"}
    percent = profile.get("gpu_compute_percent")
    if percent:
        shares["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(int(percent))  # type: ignore[call-overload]
    return shares


def mps_problem(profile: Mapping[str, object], environ: Mapping[str, str]) -> str | None:
    """Why a seat cannot start under MPS now (configured but its daemon is not running), or None."""
    if seat_memory_mb(profile) is None or not mps_enabled(environ):
        return None
    control = Path(mps_pipe_directory(environ)) / "control"
    try:
        mode = os.stat(control).st_mode
    except OSError:
        mode = 0
    if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
        return None
    return (f"ACADEMY_GPU_MPS is set but NVIDIA's MPS daemon is not running (no {control}): start it "
            "(nvidia-cuda-mps-control -d) or unset ACADEMY_GPU_MPS")
