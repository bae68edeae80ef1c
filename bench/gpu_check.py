"""A check for a machine with NVIDIA GPUs: the inventory, a sandboxed GPU kernel, a class at once, GPU grading.

Run from the repository root with the portal's environment, on the machine that serves the labs and the grader::

    .venv/bin/python bench/gpu_check.py [--learners N] [--course dl-vision] [--json]

The learners' environment (``.venv-lab``, or ``ACADEMY_LAB_PYTHON``) must hold a CUDA build of PyTorch, and the
portal's ``nvidia-ml-py`` (NVML).  On a machine without an NVIDIA GPU (no NVML, no driver, no device) it says so
and exits 0.  Otherwise, in one run (one temporary directory, removed at the end):

1. **Inventory.** The devices as the portal sees them (``academy.labs.gpu.inventory``: ``ACADEMY_GPU_DEVICES``,
   else NVML, a MIG-mode GPU as its MIG instances) and each one's seats per GPU profile of
   ``hub_config/profiles.toml`` after ``ACADEMY_GPU_RESERVE_MB`` (``academy.labs.seats``).
2. **A granted kernel sees exactly its device.** For the first device: its device files
   (``academy.labs.gpu.device_nodes``) bound into a sandboxed kernel (``SandboxPolicy.with_gpu``, as GPU grading
   does); inside, PyTorch must see one CUDA device of that name and multiply on it.  Baseline: the same sandbox
   without a grant must see no CUDA device at all.
3. **A class at once.** ``--learners`` learners (default: as many seats of the ``gpu-shared`` profile as the
   device holds) run the course's first notebook at the same time, each as a lab of that profile runs it (the
   lab's kernel, ``CUDA_VISIBLE_DEVICES``, the seat's environment from ``hub_config/gpu_share.py``); NVML is read
   every 0.2 s for the device's memory in use and utilisation.  Baseline: one learner alone.  Reported: finished
   and failed notebooks, median and slowest time against the time alone, peak memory (and per learner), peak
   utilisation.
4. **The course graded on the GPU.** Every assignment of the course, its source notebook as the submission,
   through ``grade_submission`` in the sandbox granted the device (and, as the baseline, on the CPU): seconds,
   score against the maximum, the problems noticed, and whether the graded notebook's outputs name the GPU (the
   course's notebooks print the device they train on).

Prints a table of the figures; exit status 0 when every check held, 1 when one did not.  With ``--json`` the last
line of standard output is one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED_PROFILE = "gpu-shared"
NOTEBOOK_TIMEOUT = 600


def nvml_status() -> tuple[bool, str]:
    """Whether NVML reports at least one GPU here, and what it said."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return False, "NVML is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded...
        return False, f"NVML found no NVIDIA driver ({exc})"
    try:
        count = pynvml.nvmlDeviceGetCount()
        return count > 0, f"NVML reports {count} GPU(s), driver {_text(pynvml.nvmlSystemGetDriverVersion())}"
    finally:
        pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- 1. the inventory --------------------------------------------------------------------------------------------

def inventory(settings: Any) -> list[dict[str, Any]]:
    """The devices as the portal sees them, with each GPU profile's seats on an empty device."""
    from academy.labs import gpu
    from academy.labs.profiles import configured_profiles
    from academy.labs.seats import DeviceSeats

    profiles = [p for p in configured_profiles(settings).values() if p.uses_gpu]
    rows = []
    for device in gpu.inventory(settings.gpu_devices):
        seats = DeviceSeats(index=device.index, name=device.name, memory_mb=device.memory_mb,
                            reserve_mb=settings.gpu_reserve_mb)
        rows.append({"index": device.index, "name": device.name, "memory_mb": device.memory_mb,
                     "source": device.source, "seats": {p.name: seats.capacity(p) for p in profiles}})
    return rows


# -- 2. a granted kernel ------------------------------------------------------------------------------------------

def grant_policy(settings: Any, device: dict[str, Any]) -> tuple[Any, str | None]:
    """The sandbox policy granting ``device`` (as GPU grading builds it), or None and why not."""
    from academy.engine.sandbox import GpuGrant, SandboxPolicy, gpu_refusal
    from academy.labs import gpu

    base = SandboxPolicy(cell_timeout=NOTEBOOK_TIMEOUT, notebook_timeout=3 * NOTEBOOK_TIMEOUT)
    refused = gpu_refusal(base)
    if refused:
        return None, refused
    try:
        nodes = gpu.device_nodes(device["index"], dev_root=settings.gpu_device_root,
                                 use_nvml=settings.gpu_devices is None)
    except gpu.DeviceGone as exc:
        return None, str(exc)
    grant = GpuGrant.for_nodes(device["index"], nodes.visible, nodes.names, dev_root=settings.gpu_device_root)
    return base.with_gpu(grant), None


def granted_kernel(policy: Any, device: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """What a sandboxed kernel granted the device sees, and what one without a grant sees."""
    from dataclasses import replace

    from academy.engine.sandbox import run_cells

    work = tmp / "kernel"
    work.mkdir()
    started = time.perf_counter()
    out = run_cells(policy, work, [
        "import torch\n(torch.cuda.is_available(), torch.cuda.device_count())",
        "torch.cuda.get_device_name(0)",
        "x = torch.randn(2048, 2048, device='cuda')\nbool(torch.isfinite((x @ x).sum()).item())",
        "import os\nsorted(n for n in os.listdir('/dev') if n.startswith('nvidia'))",
    ], timeout=300)
    seconds = time.perf_counter() - started
    plain = run_cells(replace(policy, gpu=None, address_space_bytes=None), work,
                      ["import torch\ntorch.cuda.is_available()"], timeout=300)
    seen = [o.result if o.status == "ok" else f"{o.status}: {o.error}" for o in out]
    name = seen[1].strip("'\"") if out[1].status == "ok" else None
    same_name = bool(name) and (name == device["name"] or device["name"].startswith(name or "\0"))
    return {"available_and_count": seen[0], "cuda_name": name, "matmul_ok": seen[2] == "True",
            "device_files": seen[3], "seconds": round(seconds, 2),
            "without_grant_cuda": plain[0].result if plain[0].status == "ok" else plain[0].error,
            "ok": seen[0] == "(True, 1)" and same_name and seen[2] == "True" and plain[0].result == "False"}


# -- 3. a class at once -------------------------------------------------------------------------------------------

def _run_as_lab(notebook: str, env: dict[str, str], folder: str) -> dict[str, Any]:
    """One learner's lab: the notebook run top to bottom in the lab's kernel with the seat's environment."""
    from labkernel import run_notebook

    run = run_notebook(Path(folder) / notebook, folder, timeout=NOTEBOOK_TIMEOUT, env=env)
    return {"seconds": run.seconds, "error": run.error}


class Sampler(threading.Thread):
    """NVML's memory in use and utilisation of one device, every 0.2 s, keeping the peaks."""

    def __init__(self, index: str) -> None:
        super().__init__(daemon=True)
        self.index, self.stopped = index, threading.Event()
        self.peak_mb, self.peak_util, self.base_mb = 0, None, 0

    def _handle(self, pynvml: Any) -> Any:
        if self.index.startswith("MIG-"):
            return pynvml.nvmlDeviceGetHandleByUUID(self.index)
        return pynvml.nvmlDeviceGetHandleByIndex(int(self.index))

    def run(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = self._handle(pynvml)
            self.base_mb = pynvml.nvmlDeviceGetMemoryInfo(handle).used // (1024 * 1024)
            while not self.stopped.wait(0.2):
                self.peak_mb = max(self.peak_mb, pynvml.nvmlDeviceGetMemoryInfo(handle).used // (1024 * 1024))
                try:
                    util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                    self.peak_util = max(self.peak_util or 0, util)
                except pynvml.NVMLError:  # MIG instances report no utilisation
                    pass
        finally:
            pynvml.nvmlShutdown()


def class_at_once(settings: Any, device: dict[str, Any], notebook: Path, learners: int, tmp: Path) -> dict[str, Any]:
    """``learners`` labs of the shared profile running ``notebook`` at once on ``device``; one alone first."""
    sys.path.insert(0, str(ROOT / "hub_config"))
    from gpu_share import share_environment  # hub_config/gpu_share.py, as the hub loads it

    from academy.labs.profiles import configured_profiles

    profile = configured_profiles(settings)[SHARED_PROFILE]
    share = share_environment({"gpus": 1, "gpu_memory_mb": profile.gpu_memory_mb,
                               "gpu_compute_percent": profile.gpu_compute_percent}, device["index"], os.environ)
    env = {**share, "CUDA_VISIBLE_DEVICES": device["index"], "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
           "PYTHONPATH": str(ROOT / "hub_config" / "singleuser"), "MPLBACKEND": "Agg"}

    def folder(name: str) -> str:
        return str(shutil.copytree(notebook.parent, tmp / name))

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        alone = pool.submit(_run_as_lab, notebook.name, env, folder("alone")).result()
    sampler = Sampler(device["index"])
    sampler.start()
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=learners, mp_context=context) as pool:
        futures = [pool.submit(_run_as_lab, notebook.name, env, folder(f"learner{i}")) for i in range(learners)]
        runs = [f.result() for f in futures]
    wall = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join(timeout=5)
    done = [r["seconds"] for r in runs if r["error"] is None]
    errors = sorted({r["error"] for r in runs if r["error"]})
    used = max(sampler.peak_mb - sampler.base_mb, 0)
    return {"learners": learners, "seat_mb": profile.gpu_memory_mb, "share": share.get("ACADEMY_GPU_SHARE_ENFORCED"),
            "alone_s": round(alone["seconds"], 2), "alone_error": alone["error"], "finished": len(done),
            "failed": learners - len(done), "errors": errors[:3], "wall_s": round(wall, 2),
            "median_s": round(statistics.median(done), 2) if done else None,
            "slowest_s": round(max(done), 2) if done else None, "peak_memory_mb": sampler.peak_mb,
            "memory_per_learner_mb": round(used / learners) if learners else None,
            "peak_utilisation_percent": sampler.peak_util,
            "ok": len(done) == learners and alone["error"] is None}


# -- 4. the course graded on the GPU ------------------------------------------------------------------------------

def grade_course(course: str, policy: Any, device_name: str, tmp: Path) -> list[dict[str, Any]]:
    """Every assignment's source notebook graded in the sandbox on the GPU, and on the CPU as the baseline."""
    from academy.engine.pipeline import grade_submission

    course_dir = ROOT / "courses" / course
    rows = []
    here = os.getcwd()
    for item in tomllib.loads((course_dir / "course.toml").read_text(encoding="utf-8")).get("assignments", []):
        notebooks = {p.name: p.read_bytes() for p in sorted((course_dir / "source" / item["id"]).glob("*.ipynb"))}
        row: dict[str, Any] = {"assignment": item["id"]}
        for label, used in (("gpu", policy), ("cpu", None)):
            started = time.perf_counter()
            try:
                result = grade_submission(course_dir, item["id"], notebooks, student_id="check", feedback=False,
                                          cache_dir=tmp / "cache", policy=used)
            finally:
                os.chdir(here)
            data = result.to_json()
            row[f"{label}_s"] = round(time.perf_counter() - started, 2)
            row[f"{label}_score"] = f"{data['score']:g}/{data['max_score']:g}" if data["score"] is not None else None
            row[f"{label}_status"] = data["status"]
            row[f"{label}_problems"] = data["problems"][:3]
            if label == "gpu":
                row["gpu_named_in_outputs"] = any(device_name in text for text in result.executed.values())
        row["ok"] = (row["gpu_status"] == "graded" and row["gpu_score"] == row["cpu_score"]
                     and row["gpu_named_in_outputs"] and not row["gpu_problems"])
        print(f"  graded: {json.dumps(row, default=str)}", flush=True)
        rows.append(row)
    return rows


# -- the run ------------------------------------------------------------------------------------------------------

def _first_notebook(course: str) -> Path:
    course_dir = ROOT / "courses" / course
    first = tomllib.loads((course_dir / "course.toml").read_text(encoding="utf-8"))["assignments"][0]["id"]
    return sorted((course_dir / "source" / first).glob("*.ipynb"))[0]


def _so_far(part: str, figures: dict[str, Any]) -> None:
    """One part's figures as soon as they are measured: a run cut off still leaves them in its output."""
    print(f"  {part}: {json.dumps(figures[part], default=str)}", flush=True)


def _table(rows: list[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", type=int, default=None, help="learners at once (default: the seats)")
    parser.add_argument("--course", default="dl-vision")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    present, said = nvml_status()
    if not present:
        print(f"gpu_check: no NVIDIA GPU on this machine: {said}. Nothing to check; run it where the labs' GPUs are.")
        if args.json:
            print(json.dumps({"gpu": False, "reason": said}))
        return 0

    from academy.config import Settings

    settings = Settings.from_env()
    figures: dict[str, Any] = {"gpu": True, "nvml": said, "devices": inventory(settings)}
    print(f"{said}\n\nInventory as the portal sees it (reserve {settings.gpu_reserve_mb} MiB):")
    for row in figures["devices"]:
        seats = ", ".join(f"{name} {count}" for name, count in row["seats"].items())
        print(f"  {row['index']:<40} {row['name']:<28} {row['memory_mb'] or '?':>8} MiB  {row['source']:<10} "
              f"seats: {seats}")
    if not figures["devices"]:
        print("The portal's inventory is empty (ACADEMY_GPU_DEVICES=none?): nothing more to check.")
        if args.json:
            print(json.dumps(figures))
        return 1
    device = figures["devices"][0]
    ok = True
    with tempfile.TemporaryDirectory(prefix="academy-gpu-check-") as scratch:
        tmp = Path(scratch)
        policy, refused = grant_policy(settings, device)
        if policy is None:
            print(f"\nGPU grading cannot use {device['index']} here: {refused}")
            figures["grant_refused"] = refused
            ok = False
        else:
            print(f"\nA sandboxed kernel granted {device['index']} ...", flush=True)
            figures["kernel"] = granted_kernel(policy, device, tmp)
            _so_far("kernel", figures)
            ok &= figures["kernel"]["ok"]
        learners = args.learners or min(device["seats"].get(SHARED_PROFILE, 1) or 1, 64)
        print(f"{learners} learners at once on {device['index']} ...", flush=True)
        figures["class"] = class_at_once(settings, device, _first_notebook(args.course), learners, tmp)
        _so_far("class", figures)
        ok &= figures["class"]["ok"]
        if policy is not None:
            print(f"Grading {args.course} on the GPU and on the CPU ...", flush=True)
            figures["grading"] = grade_course(args.course, policy, device["name"].split(" MIG ")[0], tmp)
            ok &= all(row["ok"] for row in figures["grading"])
    rows: list[tuple[str, Any]] = [("device", f"{device['index']} {device['name']} ({device['memory_mb']} MiB)")]
    if "kernel" in figures:
        k = figures["kernel"]
        rows += [("granted kernel: CUDA available, devices", k["available_and_count"]),
                 ("granted kernel: device name", k["cuda_name"]), ("granted kernel: matmul on the GPU", k["matmul_ok"]),
                 ("granted kernel: /dev/nvidia*", k["device_files"]),
                 ("kernel without a grant: CUDA available", k["without_grant_cuda"])]
    c = figures["class"]
    rows += [(f"class: {c['learners']} learners ({c['seat_mb']} MiB seats, {c['share']})",
              f"{c['finished']} finished, {c['failed']} failed {c['errors'] or ''}".strip()),
             ("class: one alone, median, slowest (s)", f"{c['alone_s']}, {c['median_s']}, {c['slowest_s']}"),
             ("class: peak memory, per learner (MiB)", f"{c['peak_memory_mb']}, {c['memory_per_learner_mb']}"),
             ("class: peak utilisation (%)", c["peak_utilisation_percent"])]
    for row in figures.get("grading", []):
        rows.append((f"graded {row['assignment']}: GPU / CPU",
                     f"{row['gpu_score']} in {row['gpu_s']} s / {row['cpu_score']} in {row['cpu_s']} s; GPU named in "
                     f"outputs: {row['gpu_named_in_outputs']}; problems: {row['gpu_problems'] or 'none'}"))
    rows.append(("every check held", ok))
    print()
    _table(rows)
    figures["ok"] = ok
    if args.json:
        print(json.dumps(figures, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
