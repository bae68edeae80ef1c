"""Running plain ``nbgrader`` beside the grader in tests: its environment and its scores.

Plain nbgrader runs learners' code unsandboxed in a kernel of ``.venv-lab`` found through a
private ``JUPYTER_PATH`` kernelspec (under the names the test notebooks use), with no
``ACADEMY_*`` settings and no ``~/.jupyter`` files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.support import LAB_PYTHON

VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")


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


# --- recorded references ---------------------------------------------------------------------------------------
#
# Plain nbgrader starts a fresh kernel for every notebook it grades: the three comparisons with it (the
# compatibility scenarios, the documentation course, the attacks) cost about three minutes of the suite's test
# processes.  Its answers depend only on the course folder it grades and on the versions of what runs the notebook,
# so each is recorded in ``plain_nbgrader_reference.json`` under a key of exactly those, and a test reads the
# recorded answer when the key matches: a change of a notebook, of nbgrader, IPython or ipykernel (an upgrade, or
# another machine's lab environment) gives another key, and the test runs plain nbgrader for real again.
# ``ACADEMY_TEST_PLAIN_NBGRADER=live`` always runs it; ``=record`` runs it and writes the file (commit it).
# tests/engine/test_nbgrader_compat.py runs one scenario live on every run and checks it against its record.

REFERENCE_FILE = Path(__file__).with_name("plain_nbgrader_reference.json")
MODE_ENV = "ACADEMY_TEST_PLAIN_NBGRADER"
#: What runs a notebook under plain nbgrader: the portal's packages (nbgrader and what it drives) and the lab's.
_PORTAL_PACKAGES = ("nbgrader", "nbconvert", "nbclient", "nbformat", "jupyter_client")
_LAB_PACKAGES = ("ipykernel", "ipython", "jupyter_client", "traitlets")


def _lab_versions() -> dict[str, str]:
    """Versions of :data:`_LAB_PACKAGES` and Python in the lab environment, from its metadata (no interpreter run)."""
    found: dict[str, str] = {}
    venv = LAB_PYTHON.parent.parent
    config = venv / "pyvenv.cfg"
    if config.is_file():
        for line in config.read_text().splitlines():
            if line.startswith("version"):
                found["python"] = line.split("=", 1)[1].strip()
    for info in venv.glob("lib/python*/site-packages/*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        if name.lower().replace("-", "_") in _LAB_PACKAGES:
            found[name.lower()] = version
    return found


def reference_key(course: Path) -> str:
    """A digest of everything plain nbgrader's answer on ``course`` depends on: every file under it and the
    versions that run it."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    versions = {"portal": {name: version(name) for name in _PORTAL_PACKAGES}, "lab": _lab_versions()}
    digest.update(json.dumps(versions, sort_keys=True).encode())
    for path in sorted(p for p in course.rglob("*") if p.is_file()):
        name = path.relative_to(course).as_posix().encode()
        data = path.read_bytes()
        digest.update(len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


_record_lock = threading.Lock()


def _records() -> dict[str, dict[str, object]]:
    """The recorded answers: ``{name: {"key", "answer"}}``."""
    return json.loads(REFERENCE_FILE.read_text()) if REFERENCE_FILE.is_file() else {}


def _write_record(name: str, entry: dict[str, object]) -> None:
    """Add ``name`` to the file, under a lock (threads of this process, and other test processes)."""
    import fcntl

    with _record_lock, open(REFERENCE_FILE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = _records()
        kept[name] = entry
        fresh = REFERENCE_FILE.with_suffix(".new")
        fresh.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        fresh.replace(REFERENCE_FILE)


def recorded(name: str, course: Path, run: Callable[[], T], *, live: bool = False) -> T:
    """Plain nbgrader's answer ``run()`` on ``course`` (a JSON value), recorded as ``name``: the recorded one when
    its key matches and ``live`` is false, otherwise ``run()`` for real (and kept when the mode is ``record``).
    With ``live`` and a matching record, the live answer must equal it."""
    mode = os.environ.get(MODE_ENV, "")
    key = reference_key(course)
    entry = _records().get(name)
    matches = entry is not None and entry["key"] == key
    if matches and not live and mode not in ("live", "record"):
        return entry["answer"]
    answer = json.loads(json.dumps(run()))  # as it reads back from the file
    if matches:
        assert answer == entry["answer"], f"plain nbgrader no longer gives its recorded answer for {name}"
    if mode == "record":
        _write_record(name, {"key": key, "answer": answer})
    return answer
