"""The GPU track on a GPU: each notebook at its GPU size on the GPU, and the same work on the CPU.

Run from the repository root with the portal's environment, on a machine with an NVIDIA GPU::

    .venv/bin/python bench/gpu_track.py [--course ID ...] [--cpu-notebook PATH ...] [--cpu-limit S] [--json]

The GPU track is every course whose ``lab_profile`` has a GPU (``hub_config/profiles.toml``), or the courses
named.  Its notebooks choose their size by device (``torch.cuda.is_available()``): realistic image sizes and data
volumes on a GPU, a small size of the same code on the CPU, which the grader and CI run.  This measures what the
GPU size costs:

1. **On the GPU.** Every source notebook of the track, top to bottom in the lab's kernel as a GPU lab runs it
   (the GPU visible, no sandbox): seconds, the first error, and the lines the notebook prints about its device,
   size and timings (``GPU 사용``, ``학습 시간``, the speed-ups the ``why-gpu`` exercise measures).
2. **The same work on the CPU.** Each ``--cpu-notebook`` (default: the track's first notebook,
   ``dl-vision/source/01-defect-cnn``) again at its GPU size but computing on the CPU: the GPU stays visible,
   so the notebook picks its GPU size, and one cell added after the one that picks the device sets it to the
   CPU with every core (a lab gives a learner one: the speed-up against all of them is a lower bound).  Cut off
   after ``--cpu-limit`` seconds (a run cut off is reported as "more than").  Reported: both times and their
   ratio, and the notebook's own training times.

On a machine without a GPU it says so and runs part 1 at the notebooks' CPU size: a check that the script and
the notebooks work.  With ``--gpu-size-on-cpu`` (no GPU here) it runs part 1 at the GPU size instead, computing
on the CPU (CUDA pretended for the cell that picks the size): a check of the GPU-size code, the notebooks' own
tests included, before device time is spent on it; a notebook that uses CUDA after picking its size (it times
the GPU) is skipped and says why.  With ``--json`` the last line of standard output is one JSON object of every
figure.  Exit status 1 when a notebook failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shutil
import sys
import tempfile
import tomllib
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the project, also where it is not installed (a lent GPU machine)
    sys.path.insert(0, str(ROOT))
# The lines a GPU-track notebook prints about its device, its size and its timings (not each epoch's loss).
REPORTED = re.compile(r"GPU|CPU|cpu|cuda|학습 시간|ms|장/초|\d+×\d+")
EPOCH = re.compile(r"^\s*(\[\w+\] )?에포크 \d+:")
DEVICE_PICK = "torch.cuda.is_available()"
# The baseline gets every core (the labs give a learner one, and the notebooks ask for one thread): the most the
# CPU can do, so the GPU's speed-up measured against it is a lower bound.
TO_CPU = ('# bench/gpu_track.py: the GPU size, computed on the CPU with all its cores\n'
          'import os\n'
          'torch.set_num_threads(os.cpu_count())\n'
          'device = torch.device("cpu") if isinstance(device, torch.device) else "cpu"\n'
          'print(f"gpu_track: the GPU size on the CPU, {torch.get_num_threads()} threads")')
# --gpu-size-on-cpu, on a machine without a GPU: the cell that picks the size is told CUDA is there.
PRETEND_CUDA = ('# bench/gpu_track.py --gpu-size-on-cpu: CUDA pretended for the cell that picks the size\n'
                'import torch\n'
                'torch.cuda.is_available = lambda: True\n'
                'torch.cuda.get_device_name = lambda *args: "(none: the GPU size on the CPU)"')


def track_notebooks(only: list[str]) -> list[Path]:
    """The source notebooks of the GPU track (courses whose lab profile has a GPU), or of the courses named."""
    profiles = tomllib.loads((ROOT / "hub_config" / "profiles.toml").read_text(encoding="utf-8"))["profiles"]
    gpu_profiles = {name for name, profile in profiles.items() if profile.get("gpus", 0) > 0}
    found = []
    for manifest in sorted((ROOT / "courses").glob("*/course.toml")):
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        if (manifest.parent.name not in only) if only else data.get("lab_profile", "cpu") not in gpu_profiles:
            continue
        for item in data.get("assignments", []):
            found += sorted((manifest.parent / "source" / item["id"]).glob("*.ipynb"))
    return found


def gpu_present() -> tuple[bool, str]:
    """Whether the lab's PyTorch sees a CUDA device, and its name or why not."""
    import subprocess

    from academy.engine.sandbox.policy import default_lab_python

    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    try:
        out = subprocess.run([default_lab_python(), "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"the lab's Python did not answer ({exc})"
    name = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0:
        return False, f"the lab's Python could not import PyTorch: {out.stderr.strip().splitlines()[-1:]}"
    return (True, name) if name else (False, "PyTorch in the lab's environment sees no CUDA device")


def _device_cell(notebook: Any) -> int:
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and DEVICE_PICK in cell.source:
            return index
    raise ValueError("the notebook never asks torch.cuda.is_available(): it does not size its work by device")


def on_cpu(notebook: Any) -> Any:
    """``notebook`` with a cell after the one that picks the device, setting the device to the CPU."""
    import nbformat

    notebook.cells.insert(_device_cell(notebook) + 1, nbformat.v4.new_code_cell(TO_CPU))
    return notebook


def gpu_size_on_cpu(notebook: Any) -> Any:
    """``notebook`` at its GPU size on a machine without a GPU: CUDA pretended for the cell that picks the size,
    then the device set to the CPU.  Refused for a notebook that uses CUDA after that cell (it times the GPU)."""
    import nbformat

    index = _device_cell(notebook)
    if any(c.cell_type == "code" and "torch.cuda." in c.source for c in notebook.cells[index + 1:]):
        raise ValueError("the notebook uses CUDA after picking its size: only a real GPU runs its GPU size")
    notebook.cells.insert(index, nbformat.v4.new_code_cell(PRETEND_CUDA))
    return on_cpu(notebook)


def _run(path: str, folder: str, mode: str) -> dict[str, Any]:
    """In a process of its own (cut off by the caller): the notebook in a copy of its folder, as it is
    (``plain``), at its GPU size on the CPU where a GPU is (``cpu``) or where none is (``gpu-size-on-cpu``)."""
    import nbformat
    from labkernel import run_notebook

    shutil.copytree(Path(path).parent, folder)
    notebook = nbformat.read(Path(folder) / Path(path).name, as_version=4)
    try:
        notebook = {"plain": lambda nb: nb, "cpu": on_cpu, "gpu-size-on-cpu": gpu_size_on_cpu}[mode](notebook)
    except ValueError as exc:
        return {"seconds": None, "error": str(exc), "lines": [], "training_s": [], "skipped": True}
    run = run_notebook(notebook, folder, timeout=900, env={"MPLBACKEND": "Agg"})
    lines = [line for text in run.outputs for line in text.splitlines()
             if REPORTED.search(line) and not EPOCH.match(line)]
    return {"seconds": round(run.seconds, 2), "error": run.error, "lines": lines,
            "training_s": [float(s) for s in re.findall(r"학습 시간: ([\d.]+)초", "\n".join(lines))]}


def timed(path: Path, tmp: Path, name: str, *, mode: str = "plain", limit: float | None = None) -> dict[str, Any]:
    """The notebook run (``_run``) in a process of its own; None seconds and ``cut_off`` when it outran ``limit``."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
    future = pool.submit(_run, str(path), str(tmp / name), mode)
    try:
        return {"skipped": False, **future.result(timeout=limit), "cut_off": False}
    except TimeoutError:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # its kernel sees its parent gone and exits (ipykernel's parent poller)
        return {"seconds": None, "error": f"cut off after {limit:g} s", "lines": [], "training_s": [],
                "skipped": False, "cut_off": True}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--course", action="append", default=[])
    parser.add_argument("--cpu-notebook", action="append", default=[],
                        help="a notebook (path from the repository root) to run at its GPU size on the CPU too")
    parser.add_argument("--cpu-limit", type=float, default=150.0)
    parser.add_argument("--gpu-size-on-cpu", action="store_true",
                        help="no GPU here: run each notebook at its GPU size on the CPU (a check before a GPU run)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    notebooks = track_notebooks(args.course)
    if not notebooks:
        print("gpu_track: no GPU-track notebook found")
        return 1
    present, name = gpu_present()
    if present and args.gpu_size_on_cpu:
        print(f"gpu_track: a GPU is here ({name}): run without --gpu-size-on-cpu")
        return 2
    mode = "gpu-size-on-cpu" if args.gpu_size_on_cpu else "plain"
    figures: dict[str, Any] = {"gpu": present, "device": name, "mode": mode, "notebooks": []}
    size = "their GPU size on the CPU" if args.gpu_size_on_cpu else "their CPU size"
    print(f"gpu_track: {'GPU ' + name if present else 'no GPU: ' + name + '; the notebooks run at ' + size}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="academy-gpu-track-") as scratch:
        tmp = Path(scratch)
        for number, path in enumerate(notebooks):
            row = {"notebook": str(path.relative_to(ROOT)), **timed(path, tmp, f"gpu{number}", mode=mode)}
            figures["notebooks"].append(row)
            ok &= row["error"] is None or row["skipped"]
            print(f"\n{row['notebook']}: {'skipped' if row['skipped'] else str(row['seconds']) + ' s'}"
                  f"{'; ' + row['error'] if row['error'] else ''}")
            for line in row["lines"][-8:]:
                print(f"    {line}")
        if present:
            chosen = [ROOT / p for p in args.cpu_notebook] or notebooks[:1]
            figures["cpu_at_gpu_size"] = []
            for number, path in enumerate(chosen):
                gpu_row = next((r for r in figures["notebooks"] if ROOT / r["notebook"] == path), None)
                cpu_row = timed(path, tmp, f"cpu{number}", mode="cpu", limit=args.cpu_limit)
                gpu_s = gpu_row["seconds"] if gpu_row else None
                cpu_s = cpu_row["seconds"]
                compared = {"notebook": str(path.relative_to(ROOT)), "gpu_s": gpu_s,
                            "cpu_s": cpu_s if cpu_s is not None else f"> {args.cpu_limit:g}",
                            "cpu_error": None if cpu_row["cut_off"] else cpu_row["error"],
                            "cpu_over_gpu": round((cpu_s or args.cpu_limit) / gpu_s, 1) if gpu_s else None,
                            "gpu_training_s": gpu_row["training_s"] if gpu_row else [],
                            "cpu_training_s": cpu_row["training_s"]}
                figures["cpu_at_gpu_size"].append(compared)
                more = "more than " if cpu_row["cut_off"] else ""
                print(f"\nThe same work on the CPU, {compared['notebook']}: {more}{cpu_s or args.cpu_limit:g} s "
                      f"against {gpu_s} s on the GPU ({more}{compared['cpu_over_gpu']} times); training "
                      f"{compared['cpu_training_s'] or '-'} s against {compared['gpu_training_s'] or '-'} s"
                      f"{'; ' + compared['cpu_error'] if compared['cpu_error'] else ''}")
    slowest = max(figures["notebooks"], key=lambda r: r["seconds"] or 0)  # skipped ones have no seconds
    figures.update(slowest=slowest["notebook"], slowest_s=slowest["seconds"], ok=ok)
    skipped = sum(row["skipped"] for row in figures["notebooks"])
    print(f"\n{len(notebooks)} notebooks on the {'GPU' if present else 'CPU'}; slowest {slowest['notebook']} "
          f"{slowest['seconds']} s; every notebook ran: {ok}{f' ({skipped} skipped)' if skipped else ''}")
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
