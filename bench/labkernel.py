"""A notebook run top to bottom in the learners' kernel, as a lab runs it: what the notebook benchmarks share.

Imported by ``bench/curriculum.py``, ``bench/gpu_check.py`` and ``bench/gpu_track.py``.  It needs nbformat,
jupyter_client, nbclient and the project's choice of the learners' interpreter
(``academy.engine.sandbox.policy.default_lab_python``), so it also runs on a lent GPU machine with the device kit
(``bench/device/``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the project, also where it is not installed (a lent GPU machine)
    sys.path.insert(0, str(ROOT))

from academy.engine.sandbox.policy import default_lab_python  # noqa: E402 - after the path above


@dataclass
class Run:
    """One notebook's run: seconds, the first error (None: every cell ran), and its cells' printed text."""

    seconds: float
    error: str | None
    outputs: list[str] = field(default_factory=list)


def run_notebook(notebook: Any, folder: str | Path, *, timeout: float = 600, env: dict[str, str] | None = None) -> Run:
    """Run ``notebook`` (a path, or an nbformat node) in the lab's kernel with ``folder`` as its working directory.

    ``env`` is added to this process's environment, which the kernel inherits (call it in a process of its own
    when it must not leak).  ``timeout`` is nbclient's limit for each cell.  The run stops at the first cell that
    fails; the failure is a figure here (``Run.error``), not an exception.
    """
    import nbformat
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    if env:
        os.environ.update(env)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec_dir = folder.parent / f".{folder.name}-kernels" / "lab"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [default_lab_python(), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lab", "language": "python"}), encoding="utf-8")
    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, str | Path) else notebook
    # The connection file beside the kernel spec: left to itself, jupyter_client writes one to /tmp per kernel and
    # nbclient's shutdown does not remove it (181 were there after a day of these benchmarks).
    kernel = KernelManager(kernel_name="lab", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]),
                           connection_file=str(spec_dir.parent / "connection.json"))
    client = NotebookClient(nb, km=kernel, timeout=timeout, resources={"metadata": {"path": str(folder)}})
    started = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as exc:  # noqa: BLE001 - CellExecutionError, CellTimeoutError, DeadKernelError...
        # A cell's error says the learner's exception (its message starts with the whole cell's source).
        error = f"{getattr(exc, 'ename', type(exc).__name__)}: {str(getattr(exc, 'evalue', exc))[:300]}"
    seconds = time.perf_counter() - started
    outputs = ["".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
               for cell in nb.cells]
    return Run(seconds=seconds, error=error, outputs=outputs)
