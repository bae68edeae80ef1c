"""Which installed distributions the GPU checks need, as JSON ``{name: version}``; run by ``build_kit.py``.

    .venv/bin/python bench/device/probe.py portal      # what bench/gpu_check.py and gpu_track.py import
    .venv-lab/bin/python bench/device/probe.py kernel  # ipykernel and what it requires

``portal`` imports every module the two checks import and grades one CPU notebook for real (nbgrader, the
sandbox, the kernel), then maps the modules loaded to their distributions: lazy imports are found because they
ran.  ``kernel`` walks ipykernel's requirements (the notebooks' own packages, PyTorch, NumPy..., are the image's).
"""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def portal() -> dict[str, str]:
    sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "hub_config")]
    import gpu_check  # noqa: F401
    import gpu_share  # noqa: F401
    import gpu_track  # noqa: F401
    import labkernel  # noqa: F401

    from academy.config import Settings
    from academy.engine.pipeline import grade_submission
    from academy.engine.sandbox import GpuGrant, SandboxPolicy, gpu_refusal, run_cells  # noqa: F401
    from academy.labs import gpu, profiles, seats  # noqa: F401

    Settings.from_env()
    course = ROOT / "courses" / "python-basics"
    first = tomllib.loads((course / "course.toml").read_text(encoding="utf-8"))["assignments"][0]["id"]
    notebooks = {p.name: p.read_bytes() for p in sorted((course / "source" / first).glob("*.ipynb"))}
    with tempfile.TemporaryDirectory() as tmp:
        result = grade_submission(course, first, notebooks, student_id="probe", feedback=False,
                                  cache_dir=Path(tmp) / "cache").to_json()
    if result["status"] != "graded":
        raise SystemExit(f"probe: grading {first} did not work here: {result['problems']}")
    owners = packages_distributions()
    names = {d for module in list(sys.modules) for d in owners.get(module.split(".")[0], [])}
    return {name: distribution(name).version for name in sorted(names)}


def kernel() -> dict[str, str]:
    from packaging.requirements import Requirement

    found: dict[str, str] = {}

    def walk(name: str) -> None:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            return
        key = dist.metadata["Name"]
        if key in found:
            return
        found[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                walk(req.name)

    for root in ("ipykernel", "tzdata"):
        walk(root)
    return dict(sorted(found.items()))


if __name__ == "__main__":
    print(json.dumps({"portal": portal, "kernel": kernel}[sys.argv[1]]()))
