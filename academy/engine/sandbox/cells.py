"""``run_cells``: run code cells in a fresh sandboxed kernel, without nbclient (tests, checks)."""

from __future__ import annotations

import contextlib
import os
import queue
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from academy.engine.sandbox.manager import SandboxedKernelManager
from academy.engine.sandbox.policy import SandboxPolicy


@dataclass
class CellOutcome:
    """What happened to one cell.

    ``status`` is ``ok``, ``error`` (an exception; see ``ename``/``evalue``), ``timeout``
    (cell time exceeded: interrupted, then the kernel killed), ``died`` (the kernel process
    died: ``error`` says "kernel died ..."), or ``skipped`` (not run after a death/timeout).
    """

    index: int
    status: str
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] = field(default_factory=list)
    duration: float = 0.0
    truncated: bool = False


class _OutputBudget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, text: str) -> tuple[str, bool]:
        data = text.encode("utf-8", "replace")
        if len(data) <= self.left:
            self.left -= len(data)
            return text, False
        kept = data[: max(self.left, 0)].decode("utf-8", "ignore")
        self.left = 0
        return kept, True


def run_cells(
    policy: SandboxPolicy,
    workdir: str | os.PathLike[str],
    cells: Iterable[str],
    timeout: float | None = None,
    *,
    kill_on_timeout: bool = True,
    zygote: bool = False,
) -> list[CellOutcome]:
    """Run code cells in a fresh sandboxed kernel; one :class:`CellOutcome` per cell.

    ``timeout`` is per cell (default ``policy.cell_timeout``); ``policy.notebook_timeout``
    bounds the whole run and ``policy.output_bytes`` all captured text.  A cell over time is
    interrupted, given ``policy.interrupt_grace`` seconds to report, and then the kernel is
    killed (unless ``kill_on_timeout`` is False and the interrupt worked).  A dead kernel
    gives ``died`` and the remaining cells ``skipped``.  The kernel is always shut down and
    leaves no process behind.  ``zygote=True`` forks the kernel from this process's kernel
    zygote where that is possible (``sandbox/zygote.py``), as grading jobs do.
    """
    cells = list(cells)
    timeout = policy.cell_timeout if timeout is None else timeout
    km = SandboxedKernelManager(policy=policy, workdir=os.fspath(workdir))
    km.use_zygote = zygote
    km.start_kernel()
    outcomes: list[CellOutcome] = []
    kc = km.client()
    budget = _OutputBudget(policy.output_bytes)
    alive = True
    try:
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=policy.startup_timeout)
        except RuntimeError as exc:
            alive = False
            detail = _death_detail(km) or str(exc)
            tail = km.kernel_log().strip().splitlines()
            detail += f": {tail[-1]}" if tail else ""
            outcomes = [CellOutcome(i, "died", error=f"kernel died before start: {detail}") for i in range(len(cells))]
            return outcomes
        notebook_deadline = time.monotonic() + policy.notebook_timeout
        for index, code in enumerate(cells):
            if not alive:
                outcomes.append(CellOutcome(index, "skipped", error="not run: the kernel was stopped"))
                continue
            outcome, alive = _run_one(km, kc, index, code, timeout, notebook_deadline, budget, policy, kill_on_timeout)
            outcomes.append(outcome)
        return outcomes
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=not alive or not km.is_alive())


def _death_detail(km: SandboxedKernelManager) -> str:
    parts = []
    proc = getattr(km.provisioner, "process", None)
    code = proc.poll() if proc is not None else None
    if code is not None:
        parts.append(f"exit status {code}")
    if km.oom_killed():
        parts.append("out of memory")
    return ", ".join(parts)


def _run_one(
    km: SandboxedKernelManager,
    kc: Any,
    index: int,
    code: str,
    timeout: float,
    notebook_deadline: float,
    budget: _OutputBudget,
    policy: SandboxPolicy,
    kill_on_timeout: bool,
) -> tuple[CellOutcome, bool]:
    outcome = CellOutcome(index, "ok")
    started = time.monotonic()
    deadline = min(started + timeout, notebook_deadline)
    msg_id = kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
    interrupted_at: float | None = None
    last_alive_check = started
    while True:
        now = time.monotonic()
        if interrupted_at is None and now >= deadline:
            with contextlib.suppress(Exception):
                km.interrupt_kernel()
            interrupted_at = now
        if interrupted_at is not None and now >= interrupted_at + policy.interrupt_grace:
            break  # the kernel ignored the interrupt
        try:
            msg = kc.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            if now - last_alive_check >= 0.2:
                last_alive_check = now
                if not km.is_alive():
                    detail = _death_detail(km)
                    outcome.status, outcome.error = "died", "kernel died" + (f" ({detail})" if detail else "")
                    outcome.duration = time.monotonic() - started
                    return outcome, False
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content.get("execution_state") == "idle":
            break
        _collect(outcome, kind, content, budget)
    outcome.duration = time.monotonic() - started
    if interrupted_at is not None:
        outcome.status = "timeout"
        overall = interrupted_at >= notebook_deadline
        what = f"notebook time limit ({policy.notebook_timeout:g} s)" if overall else f"cell time limit ({timeout:g} s)"
        if kill_on_timeout or outcome.ename is None:
            km.shutdown_kernel(now=True)
            outcome.error = f"{what} exceeded: interrupted, kernel killed"
            return outcome, False
        outcome.error = f"{what} exceeded: interrupted"
        return outcome, not overall
    reply = None
    with contextlib.suppress(queue.Empty):
        while True:
            reply = kc.get_shell_msg(timeout=5)
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                break
    status = (reply or {}).get("content", {}).get("status")
    if status != "ok" or outcome.ename is not None:
        outcome.status = "error"
        if reply and outcome.ename is None:
            outcome.ename = reply["content"].get("ename")
            outcome.evalue = reply["content"].get("evalue")
        outcome.error = f"{outcome.ename}: {outcome.evalue}" if outcome.ename else f"execute_reply status {status}"
    return outcome, True


def _collect(outcome: CellOutcome, kind: str, content: dict[str, Any], budget: _OutputBudget) -> None:
    if kind == "stream":
        text, cut = budget.take(content.get("text", ""))
        outcome.truncated |= cut
        if content.get("name") == "stderr":
            outcome.stderr += text
        else:
            outcome.stdout += text
        outcome.outputs.append({"output_type": "stream", "name": content.get("name"), "text": text})
    elif kind in ("execute_result", "display_data"):
        data = content.get("data", {})
        plain, cut = budget.take(str(data.get("text/plain", "")))
        outcome.truncated |= cut
        if kind == "execute_result":
            outcome.result = plain
        outcome.outputs.append({"output_type": kind, "data": {"text/plain": plain}})
    elif kind == "error":
        outcome.ename, outcome.evalue = content.get("ename"), content.get("evalue")
        tb, cut = budget.take("\n".join(content.get("traceback", [])))
        outcome.truncated |= cut
        outcome.traceback = tb.split("\n") if tb else []
        outcome.outputs.append({"output_type": "error", "ename": outcome.ename, "evalue": outcome.evalue})
