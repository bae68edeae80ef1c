"""Helpers of the sandbox tests (``test_sandbox*.py``, ``test_zygote.py``): processes, leftovers, cells.

The fixtures they use (``base_policy``, ``workdir``) are in ``tests/engine/conftest.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from academy.engine.sandbox import CellOutcome, SandboxPolicy, probe_isolation, run_cells
from academy.engine.sandbox.cgroups import retry_unremoved


def processes() -> Iterator[tuple[int, int, bytes]]:
    """(pid, real uid, cmdline) of every process on the host."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = int((entry / "status").read_text().split("\nUid:")[1].split()[0])
            yield int(entry.name), uid, (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue


def gone(pids: set[int], timeout: float = 3.0) -> bool:
    """Every pid has exited (a zombie awaiting its reaper counts as exited)."""
    deadline = time.monotonic() + timeout
    while True:
        running = []
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    running.append(pid)
            except (OSError, IndexError):
                continue
        if not running or time.monotonic() > deadline:
            return not running
        time.sleep(0.05)


def leftovers(*, uid: int | None, marker: str) -> list[tuple[int, int, bytes]]:
    me = os.getuid()
    return [
        p
        for p in processes()
        if (uid is not None and uid != me and p[1] == uid) or marker.encode() in p[2]
    ]


def assert_no_leftovers(workdir: Path, marker: str | None = None, timeout: float = 15.0) -> None:
    """No process of the kernel's host uid, none naming the workdir or ``marker``, no cgroup.  Polled for up to
    ``timeout`` seconds each (on a loaded machine, a killed kernel's group could still be busy after 3 s)."""
    uid = os.stat(workdir).st_uid
    uid = uid if uid != os.getuid() else None
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(uid=uid, marker=marker or str(workdir))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"
    groups = list(probe_isolation(SandboxPolicy()).cgroups.values())
    deadline = time.monotonic() + timeout
    while True:  # a removal that timed out on a loaded machine is tried again (retry_unremoved)
        retry_unremoved()
        mine = [p for group in groups if os.path.isdir(group) for p in Path(group).glob(f"{os.getpid()}-*")]
        if not mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not mine, f"cgroups left behind: {mine}"


def run(policy: SandboxPolicy, workdir: Path, cells: list[str], timeout: float = 20.0) -> list[CellOutcome]:
    outcomes = run_cells(policy, workdir, cells, timeout=timeout)
    assert_no_leftovers(workdir)
    return outcomes


def as_json(outcome: CellOutcome) -> dict:
    assert outcome.status == "ok", (outcome.status, outcome.error, outcome.traceback[-3:])
    return json.loads(outcome.stdout.strip().splitlines()[-1])


# A cell that tries an operation and reports how it ended, as JSON on its last line.
TRY = """
import json, os
def attempt(fn):
    try:
        return "ok:" + repr(fn())[:200]
    except BaseException as exc:
        return type(exc).__name__ + ":" + str(getattr(exc, "errno", ""))
"""


