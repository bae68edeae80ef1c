"""A GPU seat's share: the hub's environment for it (hub_config/gpu_share.py) and, in the lab's own Python,
PyTorch's soft cap and the out-of-memory message (hub_config/singleuser/sitecustomize.py, academy_gpu_cap.py).

No GPU here: a stand-in ``torch`` package records what the cap asks of it, a real IPython kernel shows the
message, and the lab environment's real (CPU) PyTorch imports unharmed under the watch."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from academy.labs.profiles import load_profiles
from tests.support import LAB_PYTHON, ROOT, skip_or_fail

HUB = ROOT / "hub_config"
SINGLEUSER = HUB / "singleuser"
SEAT = {"gpus": 1, "shared": True, "gpu_memory_mb": 4096, "gpu_compute_percent": 25}


def _gpu_share() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_share_under_test", HUB / "gpu_share.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_a_seat_with_a_device_gets_a_share() -> None:
    share = _gpu_share()
    assert share.share_environment({"gpus": 0}, "", {}) == {}
    assert share.share_environment({"gpus": 1, "exclusive": True}, "0", {}) == {}  # the whole device
    assert share.share_environment(SEAT, "", {}) == {}  # no device granted: the lab runs on the CPU
    assert share.share_environment(SEAT, "1", {}) == {"ACADEMY_GPU_MEMORY_MB": "4096",
                                                      "ACADEMY_GPU_SHARE_ENFORCED": "soft"}


def test_with_mps_the_driver_enforces_memory_and_compute(tmp_path: Path) -> None:
    share = _gpu_share()
    environ = {"ACADEMY_GPU_MPS": "1", "ACADEMY_GPU_MPS_PIPE_DIRECTORY": str(tmp_path / "pipe")}
    assert share.share_environment(SEAT, "MIG-0b1c2d3e-aaaa-bbbb-cccc-0123456789ab", environ) == {
        "ACADEMY_GPU_MEMORY_MB": "4096", "ACADEMY_GPU_SHARE_ENFORCED": "mps",
        "CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "pipe"), "CUDA_MPS_LOG_DIRECTORY": "/var/log/nvidia-mps",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=4096MB", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25"}
    without_compute = {key: value for key, value in SEAT.items() if key != "gpu_compute_percent"}
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in share.share_environment(without_compute, "0", environ)
    assert share.share_environment({"gpus": 1, "exclusive": True}, "0", environ) == {}


def test_mps_configured_but_not_running_is_named_and_running_is_fine(tmp_path: Path) -> None:
    share = _gpu_share()
    pipe = tmp_path / "pipe"
    environ = {"ACADEMY_GPU_MPS": "yes", "ACADEMY_GPU_MPS_PIPE_DIRECTORY": str(pipe)}
    problem = share.mps_problem(SEAT, environ)
    assert problem is not None and "nvidia-cuda-mps-control -d" in problem and str(pipe / "control") in problem
    assert share.mps_problem(SEAT, {}) is None  # MPS not configured: the soft cap
    assert share.mps_problem({"gpus": 1, "exclusive": True}, environ) is None  # a whole device needs no MPS
    pipe.mkdir()
    daemon = socket.socket(socket.AF_UNIX)
    try:
        daemon.bind(str(pipe / "control"))  # what nvidia-cuda-mps-control -d creates
        assert share.mps_problem(SEAT, environ) is None
    finally:
        daemon.close()


def test_the_shipped_shared_profile_states_its_seat_and_compute_share() -> None:
    shipped = load_profiles(HUB / "profiles.toml")["gpu-shared"]
    assert (shipped.gpu_memory_mb, shipped.gpu_compute_percent) == (4096, 25)


# -- in the lab's Python --------------------------------------------------------------------------------------------

FAKE_TORCH = '''
from . import cuda
'''
FAKE_CUDA = '''
import types
queued = []
fraction = None
initialized = False

class OutOfMemoryError(RuntimeError):
    pass

def _lazy_call(callable):
    queued.append(callable)

def is_initialized():
    return initialized

def get_device_properties(index):
    return types.SimpleNamespace(total_memory=143771 * 1024 * 1024)

def set_per_process_memory_fraction(value, device=None):
    global fraction
    fraction = (value, device)

def start():
    """What torch.cuda._lazy_init does at the first CUDA call: run the queued calls."""
    global initialized
    initialized = True
    for call in queued:
        call()
'''


@pytest.fixture
def fake_torch(tmp_path: Path) -> Path:
    package = tmp_path / "fake" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_TORCH, encoding="utf-8")
    (package / "cuda.py").write_text(FAKE_CUDA, encoding="utf-8")
    return package.parent


def _lab_python(code: str, extra_path: list[Path], **env: str) -> dict[str, Any]:
    if not os.access(LAB_PYTHON, os.X_OK):
        skip_or_fail(f"the lab environment {LAB_PYTHON} is missing (make lab-env)")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ACADEMY_")}
    environment.update(env, PYTHONPATH=os.pathsep.join(str(p) for p in [SINGLEUSER, *extra_path]))
    run = subprocess.run([str(LAB_PYTHON), "-c", textwrap.dedent(code)], env=environment, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


WATCH = '''
    import json, sys
    before = "torch" in sys.modules
    import torch
    queued = len(torch.cuda.queued)
    torch.cuda.start()
    print(json.dumps({"before": before, "queued": queued, "fraction": torch.cuda.fraction,
                      "watching": any(type(f).__name__ == "_Watch" for f in sys.meta_path)}))
'''


def test_without_mps_pytorch_is_capped_at_the_seat_when_cuda_starts(fake_torch: Path) -> None:
    out = _lab_python(WATCH, [fake_torch], ACADEMY_GPU_MEMORY_MB="4096", ACADEMY_GPU_SHARE_ENFORCED="soft")
    assert out["before"] is False  # nothing imports PyTorch for the learner
    assert out["queued"] == 1 and out["watching"] is False  # queued for CUDA's start; the watch is gone
    assert out["fraction"] == [pytest.approx(4096 / 143771), 0]


def test_under_mps_or_outside_a_seat_nothing_is_capped(fake_torch: Path) -> None:
    under_mps = _lab_python(WATCH, [fake_torch], ACADEMY_GPU_MEMORY_MB="4096", ACADEMY_GPU_SHARE_ENFORCED="mps")
    assert (under_mps["queued"], under_mps["fraction"]) == (0, None)  # the driver holds the limit
    elsewhere = _lab_python(WATCH, [fake_torch])  # a CPU lab, or a whole device
    assert (elsewhere["queued"], elsewhere["fraction"], elsewhere["watching"]) == (0, None, False)


def test_the_real_pytorch_imports_and_works_under_the_watch() -> None:
    out = _lab_python('''
        import json, torch
        from torch.cuda import _queued_calls
        print(json.dumps({"sum": float(torch.ones(3).sum()), "queued": len(_queued_calls),
                          "cuda": torch.cuda.is_available()}))
    ''', [], ACADEMY_GPU_MEMORY_MB="4096", ACADEMY_GPU_SHARE_ENFORCED="soft")
    assert out["sum"] == 3.0 and out["queued"] >= 1 and out["cuda"] is False


def test_an_out_of_memory_error_in_a_notebook_explains_the_share(fake_torch: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """In a real IPython kernel of the lab environment, PyTorch's out-of-memory error carries the message."""
    from jupyter_client.manager import start_new_kernel

    if not os.access(LAB_PYTHON, os.X_OK):
        skip_or_fail(f"the lab environment {LAB_PYTHON} is missing (make lab-env)")
    spec = tmp_path / "jupyter" / "kernels" / "lab"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(LAB_PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lab", "language": "python"}), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ACADEMY_")}
    environment.update(ACADEMY_GPU_MEMORY_MB="4096", ACADEMY_GPU_SHARE_ENFORCED="soft",
                       PYTHONPATH=os.pathsep.join([str(SINGLEUSER), str(fake_torch)]))
    manager, client = start_new_kernel(kernel_name="lab", env=environment, startup_timeout=120)
    try:
        outputs: list[dict[str, Any]] = []
        reply = client.execute_interactive("import torch\nraise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried "
                                   "to allocate 2.00 GiB')", timeout=60,
                                   output_hook=lambda msg: outputs.append(msg))
        errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
        assert errors and errors[0]["ename"] == "OutOfMemoryError"
        assert reply["content"]["status"] == "error"  # "run all" stops there, as after any error
        shown = "\n".join(errors[0]["traceback"])
        assert "Tried to allocate 2.00 GiB" in shown  # the original error is still there
        assert "GPU 메모리 몫(4096 MiB)" in shown and "share of the GPU (4096 MiB)" in shown
        # Any other error is shown as usual.
        outputs.clear()
        client.execute_interactive("1/0", timeout=60, output_hook=lambda msg: outputs.append(msg))
        other = [m["content"] for m in outputs if m["msg_type"] == "error"][0]
        assert other["ename"] == "ZeroDivisionError" and "GPU" not in "\n".join(other["traceback"])
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
