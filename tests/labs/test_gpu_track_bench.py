"""The GPU checks for a lent GPU machine, where no GPU is: ``bench/gpu_track.py`` and ``bench/device/run.sh``.

Neither can show a GPU here; what they must get right without one is tested: the GPU track is the courses with GPU
labs, the notebook rewritten to compute its GPU size on the CPU really runs on the CPU, a run that outlasts its
limit is cut off with its kernel, the script without a GPU says so and still runs every notebook, and the device
script refuses a missing kit or a kit for another Python before installing anything.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

from tests.support import LAB_PYTHON, ROOT, skip_or_fail

pytestmark = pytest.mark.slow


def _bench(name: str) -> ModuleType:
    """A bench script imported by its own name, as its spawned worker processes import it again."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))  # where the scripts find their helper (labkernel) when run
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def track() -> ModuleType:
    if not LAB_PYTHON.exists():
        skip_or_fail(f"the lab environment is missing ({LAB_PYTHON}): make lab-env")
    return _bench("gpu_track")


def test_the_gpu_track_is_the_courses_with_gpu_labs(track: ModuleType) -> None:
    found = {path.relative_to(ROOT / "courses").parts[0] for path in track.track_notebooks([])}
    assert found == {"dl-vision", "pytorch-basics"}
    assert len(track.track_notebooks([])) == 6
    named = track.track_notebooks(["python-basics"])
    assert named and {p.relative_to(ROOT / "courses").parts[0] for p in named} == {"python-basics"}


def test_the_gpu_size_on_the_cpu_is_computed_on_the_cpu(track: ModuleType, tmp_path: Path) -> None:
    source = ROOT / "courses" / "pytorch-basics" / "source" / "02-training-loop" / "quality_regression.ipynb"
    notebook = track.on_cpu(nbformat.read(source, as_version=4))
    added = [i for i, cell in enumerate(notebook.cells) if "bench/gpu_track.py" in cell.source]
    assert len(added) == 1 and track.DEVICE_PICK in notebook.cells[added[0] - 1].source

    run = track.timed(source, tmp_path, "nb", mode="cpu")
    assert run["error"] is None
    assert f"gpu_track: the GPU size on the CPU, {os.cpu_count()} threads" in run["lines"]
    assert any("장치: cpu" in line for line in run["lines"])  # the notebook trains where the added cell says

    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    with pytest.raises(ValueError, match="does not size its work by device"):
        track.on_cpu(plain)


def test_the_gpu_size_runs_on_a_machine_without_a_gpu_before_device_time_is_spent(track: ModuleType,
                                                                                 tmp_path: Path) -> None:
    basics = ROOT / "courses" / "pytorch-basics" / "source"
    run = track.timed(basics / "02-training-loop" / "quality_regression.ipynb", tmp_path, "nb", mode="gpu-size-on-cpu")
    assert run["error"] is None and not run["skipped"]
    assert "배치 40개 × 에포크 8번, 장치: cpu" in run["lines"]  # 50,000 samples in batches of 1,024: the GPU size
    plain = track.timed(basics / "02-training-loop" / "quality_regression.ipynb", tmp_path, "plain")
    assert "배치 25개 × 에포크 8번, 장치: cpu" in plain["lines"]  # 2,000 in batches of 64: what CI grades

    why = track.timed(basics / "03-why-gpu" / "why_gpu.ipynb", tmp_path, "why", mode="gpu-size-on-cpu")
    assert why["skipped"] and why["seconds"] is None and "only a real GPU runs its GPU size" in why["error"]


def test_a_run_past_its_limit_is_cut_off_with_its_kernel(track: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    slow = folder / "slow.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, time\nopen('kernel.pid', 'w').write(str(os.getpid()))\ntime.sleep(120)")]), slow)
    started = time.monotonic()
    row = track.timed(slow, tmp_path, "cut", limit=12)
    assert time.monotonic() - started < 40
    assert row["cut_off"] and row["seconds"] is None and row["error"] == "cut off after 12 s"
    pid_file = tmp_path / "cut" / "kernel.pid"
    assert pid_file.exists(), "the kernel did not start within the limit: nothing was cut off"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            break  # dead, waiting for its parent to reap it
        time.sleep(0.2)
    else:
        assert not Path(f"/proc/{pid}").exists(), "the notebook's kernel outlived the cut-off run"


def test_without_a_gpu_it_says_so_and_runs_the_notebooks_at_their_cpu_size() -> None:
    if not LAB_PYTHON.exists():
        skip_or_fail(f"the lab environment is missing ({LAB_PYTHON}): make lab-env")
    done = subprocess.run([sys.executable, "bench/gpu_track.py", "--course", "pytorch-basics", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    if figures["gpu"]:
        pytest.skip(f"a GPU is here ({figures['device']}): run bench/gpu_track.py itself")
    assert lines[0].startswith("gpu_track: no GPU: ")
    assert [row["notebook"].split("/")[-1] for row in figures["notebooks"]] == [
        "sensor_tensors.ipynb", "quality_regression.ipynb", "why_gpu.ipynb"]
    assert all(row["error"] is None and row["seconds"] > 0 for row in figures["notebooks"])
    assert "cpu_at_gpu_size" not in figures  # nothing to compare with
    why = figures["notebooks"][2]["lines"]
    assert any(line.startswith("CPU:") and "ms" in line for line in why)


def _run_sh(tmp_path: Path, kit: dict | None) -> subprocess.CompletedProcess[str]:
    """bench/device/run.sh in a copy of the script's folders, with ``kit`` as .device-kit/kit.json."""
    root = tmp_path / "repo"
    (root / "bench" / "device").mkdir(parents=True)
    (root / "bench" / "device" / "run.sh").write_bytes((ROOT / "bench" / "device" / "run.sh").read_bytes())
    if kit is not None:
        (root / ".device-kit" / "wheels").mkdir(parents=True)
        (root / ".device-kit" / "kit.json").write_text(json.dumps(kit))
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DEVICE_PYTHON": sys.executable}
    return subprocess.run(["bash", str(root / "bench" / "device" / "run.sh")], capture_output=True, text=True,
                          timeout=60, env=env)


def test_the_device_script_refuses_a_missing_kit_or_one_for_another_python(tmp_path: Path) -> None:
    missing = _run_sh(tmp_path / "a", None)
    assert missing.returncode == 2
    assert "no kit at" in missing.stdout and "build_kit.py" in missing.stdout

    other = _run_sh(tmp_path / "b", {"python": "2.7"})
    assert other.returncode == 2
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"the kit's wheels are for Python 2.7, this machine's is {here}" in other.stdout
    assert f"build_kit.py --python {platform.python_version()}" in other.stdout
    assert not (tmp_path / "b" / "out" / "install.txt").exists()  # refused before installing anything
