"""Running plain ``nbgrader`` beside the grader in tests: its environment and its scores.

Plain nbgrader runs learners' code unsandboxed in a kernel of ``.venv-lab`` found through a
private ``JUPYTER_PATH`` kernelspec (under the names the test notebooks use), with no
``ACADEMY_*`` settings and no ``~/.jupyter`` files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import LAB_PYTHON

VENV_BIN = Path(sys.executable).parent


def plain_nbgrader_env(home: Path, kernel_names: tuple[str, ...] = ("python3",)) -> dict[str, str]:
    """Environment for ``nbgrader``: kernelspecs ``kernel_names`` for the lab interpreter under ``home``."""
    for name in kernel_names:
        spec = home / "jupyter" / "kernels" / name
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(LAB_PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (lab)", "language": "python"}))
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("ACADEMY_", "JUPYTER_"))},
            "JUPYTER_PATH": str(home / "jupyter"), "HOME": str(home),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_nbgrader(args: list[str], course: Path, env: dict[str, str],
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``nbgrader ARGS`` in the course directory ``course``."""
    return subprocess.run([str(VENV_BIN / "nbgrader"), *args], capture_output=True, text=True, cwd=course,
                          env=env, timeout=timeout)
