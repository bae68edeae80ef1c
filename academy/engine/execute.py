"""``GuardedExecute``: nbgrader's Execute preprocessor, made safe against learners' code.

nbgrader's ``Execute`` preprocessor is replaced by ``GuardedExecute`` (through
``Autograde.autograde_preprocessors``, see ``guarded``), which honours
``ExecutePreprocessor.kernel_manager_class`` from the configuration (nbgrader's own
``Execute`` silently overrides it), turns a dead or unresponsive kernel into failed
cells instead of a crashed job, caps output bytes per cell and enforces an optional
deadline for the whole submission.

Tampering
    Every code cell runs through ``anticheat.NotebookDefence``: an integrity agent
    installed before the first cell checks and repairs the kernel before instructor cells
    and after tests, a must-fail canary precedes each test, and test outputs are repaired
    for scoring.  A course can turn the canary off with ``c.GuardedExecute.canary = False``
    and everything with ``c.GuardedExecute.integrity_checks = False``.

Speed
    A kernel is ready at its first ``kernel_info`` reply once its IOPub channel is seen
    to be connected (``wait_until_ready``), and it is killed, not asked to shut down, once
    the notebook has run (``shutdown_kernel = "immediate"``): its state is thrown away.
    The sandbox starts ipykernel without its debugger (``sandbox.launch.kernel_argv``), and
    the agent's probe skips built-in values cheaply: CPU, not waiting, limits throughput.

Visible results
    Each autograder test cell with hidden tests (nbgrader's ``### BEGIN HIDDEN TESTS`` ...
    ``### END HIDDEN TESTS`` blocks, delimiters from ``ClearHiddenTests``' configuration)
    first runs its *visible part* on its own: the source with the hidden blocks removed,
    which is exactly the cell of the released notebook.  It runs in the kernel state the
    test would see, through the same path as any cell (``NotebookDefence``: probe, canary,
    outputs made safe; output cap; cell timeout and the submission's deadline), and its
    outcome goes to the cell's metadata, ``academy.visible`` = ``{"passed": bool | None,
    "error": str | None}`` (``visible_record`` reads it; the learner's own copy of that key
    is dropped first).  Then the whole cell runs as before and nbgrader scores it: scores are
    unchanged.  Cells without hidden tests run once; their visible result is their own.

    The visible lines thus run twice; tests are assertions, so that is accepted (a test whose
    visible lines change state, such as training a model again, sees them run twice, and
    ``c.GuardedExecute.visible_results = False`` turns the extra run off: the visible results
    of such cells are then unknown, None).  When the visible
    part kills the kernel, stops answering or runs out of time, the whole cell is not run: it
    fails with that error as if the full cell had (it begins with the same lines), later
    cells are treated as after any such failure, and the visible result says so.  A visible
    part without any code (every test hidden) is not run and its result is unknown (None).
    The canary runs before each of the two executions with that execution's own source.

Problems, flags for review and timings leave as log records (see ``academy.engine.joblog``).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import math
import time
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_hook
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import ClearHiddenTests, Execute
from nbgrader.utils import determine_grade
from traitlets import Bool, Float, Integer, List, Unicode, default
from traitlets.utils.importstring import import_item

from academy.engine import anticheat
from academy.engine.results import error_line

MAX_OUTPUT_BYTES_PER_CELL = 2 * 1024 * 1024
"""Output kept per cell; the rest is dropped while it streams in (N14)."""

METADATA_KEY = "academy"
"""The executed cells' metadata key under which the grader leaves notes (``visible``)."""


class GuardedExecute(Execute):
    """nbgrader's Execute, made safe against learners' code (see the module docstring)."""

    job_deadline = Float(None, allow_none=True,
                         help="time.monotonic() after which no cell starts and running ones stop").tag(config=True)
    max_output_bytes = Integer(MAX_OUTPUT_BYTES_PER_CELL, help="Output bytes kept per cell").tag(config=True)
    integrity_checks = Bool(True, help="Check and repair the kernel around instructor cells "
                            "(academy.engine.anticheat)").tag(config=True)
    canary = Bool(True, help="Run a must-fail canary of each test cell before it (needs integrity_checks)"
                  ).tag(config=True)
    source_dir = Unicode("", help="The assignment's source directory (instructor files, solution)").tag(config=True)
    source_ignore = List(Unicode(), help="Patterns of source files nbgrader does not copy").tag(config=True)
    visible_results = Bool(True, help="Run the visible part of each test cell with hidden tests on its own "
                           "first, to report its result (see the module docstring)").tag(config=True)

    _defence: Any = None
    _visible_part: Any = None  # the visible part of the test cell being run, while it runs

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        # nbgrader's Execute passes kernel_manager_class=AsyncKernelManager as a keyword,
        # which beats configuration; put the configured class back.
        for section in ("NotebookClient", "ExecutePreprocessor", "Execute", type(self).__name__):
            if section in self.config and "kernel_manager_class" in self.config[section]:
                self.kernel_manager_class = self.config[section]["kernel_manager_class"]
        self._halted: str | None = None
        self._problems_seen: set[str] = set()
        self._hidden_tests = ClearHiddenTests(config=self.config)

    # notes for the pipeline, carried by log records
    def _problem(self, text: str, *, learner_failed: bool) -> None:
        if text in self._problems_seen:  # e.g. the visible part and the whole test both truncated
            return
        self._problems_seen.add(text)
        self.log.warning("%s", text, extra={"academy_problem": text, "academy_learner_failed": learner_failed})

    def _flag(self, text: str) -> None:
        self.log.warning("flag: %s", text, extra={"academy_flag": text})

    def _timing(self, name: str, seconds: float) -> None:
        self.log.info("timing %s %.3f", name, seconds, extra={"academy_timing": (name, seconds)})

    def preprocess(self, nb: Any, resources: Any = None, km: Any = None) -> Any:
        self._halted = None
        self._problems_seen = set()
        for cell in nb.cells:  # only the grader writes the visible results
            notes = cell.get("metadata", {}).get(METADATA_KEY)
            if isinstance(notes, dict):
                notes.pop("visible", None)
            elif notes is not None:
                del cell.metadata[METADATA_KEY]
        self._notebook = (resources or {}).get("nbgrader", {}).get("notebook", "notebook")
        self._defence = None
        if self.integrity_checks:
            path = (resources or {}).get("metadata", {}).get("path")
            self._defence = anticheat.NotebookDefence(
                self, self._notebook, workdir=Path(path) if path else None,
                source_dir=Path(self.source_dir) if self.source_dir else None, ignore=self.source_ignore,
                canary=self.canary, flag=self._flag, log=self.log.warning,
                problem=lambda text: self._problem(text, learner_failed=False))
        started = time.monotonic()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self._timing("kernel_and_execution", time.monotonic() - started)
            if self._defence is not None:
                guard = self._defence.guard
                self._timing("anticheat_probe", guard.timings["probe"] + guard.timings.get("install", 0.0))
                self._timing("anticheat_canary", guard.timings["canary"])

    def execute_cell(self, cell: Any, cell_index: int, execution_count: int | None = None,
                     store_history: bool = True) -> Any:
        # nbclient binds execute_cell to its own async_execute_cell; route it through ours.
        return run_sync(self.async_execute_cell)(cell, cell_index, execution_count, store_history)

    async def async_execute_cell(self, cell: Any, cell_index: int, execution_count: int | None = None,
                                 store_history: bool = True) -> Any:
        """nbclient's execution of one cell, wrapped in ``anticheat.NotebookDefence`` (canary, probe).

        A test cell with hidden tests runs its visible part first (see the module docstring).
        """
        visible = self.visible_source(cell) if cell.cell_type == "code" and cell.source.strip() else None
        if visible is not None:
            if not self.visible_results or not _has_code(visible):  # unknown: never the whole cell's result
                _record_visible(cell, None, None)
            elif not await self._run_visible(cell, cell_index, visible):
                return cell
        return await self._execute_guarded(cell, cell_index, execution_count, store_history)

    async def _execute_guarded(self, cell: Any, cell_index: int, execution_count: int | None,
                               store_history: bool) -> Any:
        def execute() -> Any:
            return super(GuardedExecute, self).async_execute_cell(cell, cell_index, execution_count, store_history)

        if self._defence is None or cell.cell_type != "code" or not cell.source.strip():
            return await execute()
        timeout = self._get_timeout(cell)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        try:
            return await self._defence.run(cell, repr(grade_id) if grade_id else f"cell {cell_index + 1}", execute,
                                           timeout)
        except anticheat.KernelTimeout as exc:  # the canary of a test ran out of time
            if not exc.interrupted:
                raise CellTimeoutError(f"the check of {self._label(cell, cell_index)} did not stop") from None
            self._timed_out = timeout
            cell.outputs = [new_output("error", ename="CellTimeoutError", evalue="the test ran out of time",
                                       traceback=[])]
            return cell

    def visible_source(self, cell: Any) -> str | None:
        """The released source of an autograder test cell with hidden tests; None for every other cell."""
        if not anticheat.is_test_cell(cell):
            return None
        probe = NotebookNode({"cell_type": "code", "source": cell.source, "metadata": {}})
        try:
            removed = self._hidden_tests._remove_hidden_test_region(probe)
        except RuntimeError:  # unbalanced delimiters: generate_assignment refused those already
            return None
        return probe.source if removed else None

    async def _run_visible(self, cell: Any, cell_index: int, source: str) -> bool:
        """Run the visible part of test ``cell`` and record its result; False when the whole cell must not run.

        A kernel that dies or stops answering raises as for any cell, with the visible part's
        outputs in ``cell`` (``preprocess_cell`` adds the error and records the result).
        """
        part = copy.deepcopy(cell)
        part.source, part.outputs, part.execution_count = source, [], None
        self._visible_part = part
        try:
            await self._execute_guarded(part, cell_index, None, True)
        except (DeadKernelError, CellTimeoutError):
            cell.outputs = part.outputs
            raise
        finally:
            self.clear_display_id_mapping(cell_index)  # updates must not reach the part's outputs
        self._visible_part = None
        passed = _full_points(part)
        _record_visible(cell, passed, None if passed else error_line(part.outputs))
        if self._timed_out is not None:  # the whole cell starts with the same lines: it would too
            cell.outputs = part.outputs
            return False
        self._cell_bytes, self._cell_truncated = 0, False  # the whole cell has its own output allowance
        return True

    def start_new_kernel(self, **kwargs: Any) -> None:
        started = time.monotonic()
        super().start_new_kernel(**kwargs)
        self._started_at = time.monotonic()
        self._timing("kernel_start", self._started_at - started)

    def start_new_kernel_client(self) -> Any:
        started = time.monotonic()
        # nbclient binds start_new_kernel_client to its own coroutine; route it through ours.
        client = run_sync(self.async_start_new_kernel_client)()
        self._timing("kernel_start", time.monotonic() - started)
        return client

    async def async_start_new_kernel_client(self) -> Any:
        """nbclient's, with ``wait_until_ready`` instead of the client's ``wait_for_ready``."""
        assert self.km is not None
        try:
            self.kc = self.km.client()
            await ensure_async(self.kc.start_channels())
            await wait_until_ready(self.kc, self.startup_timeout)
        except Exception as exc:
            self.log.error("Error occurred while starting new kernel client for kernel %s: %s",
                           getattr(self.km, "kernel_id", None), exc)
            await self._async_cleanup_kernel()
            raise
        self.kc.allow_stdin = False
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return self.kc

    @default("shutdown_kernel")
    def _shutdown_kernel_default(self) -> str:
        # Every output is in when the notebook ends and the kernel's state is thrown away: kill it
        # (the sandbox's cgroup kill) instead of asking politely and waiting.
        return "immediate"

    def _get_timeout(self, cell: Any) -> int | None:
        timeout = super()._get_timeout(cell)
        if self.job_deadline is None or cell is None:
            return timeout
        remaining = max(1, math.ceil(self.job_deadline - time.monotonic()))
        return remaining if timeout is None else min(timeout, remaining)

    async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> Any:
        self._timed_out = timeout
        return await super()._async_handle_timeout(timeout, cell)

    async def _kill_kernel(self) -> None:
        await ensure_async(self.km.shutdown_kernel(now=True))

    def _label(self, cell: Any, index: int) -> str:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        return f"{self._notebook}: cell {grade_id!r}" if grade_id else f"{self._notebook}: cell {index + 1}"

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> Any:
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        label = self._label(cell, index)
        if self._halted is None and self.job_deadline is not None and time.monotonic() >= self.job_deadline:
            self._halted = "the time limit for the submission was reached"
            self._problem(f"time limit for the submission reached before {label}; later cells were not run",
                          learner_failed=True)
        if self._halted is not None:
            cell.outputs = [new_output("error", ename="NotRun", evalue=f"not run because {self._halted}", traceback=[])]
            cell.execution_count = None
            if self.visible_source(cell) is not None:
                _record_visible(cell, False, error_line(cell.outputs))
            return cell, resources
        self._label_now, self._cell_bytes, self._cell_truncated, self._timed_out = label, 0, False, None
        self._visible_part = None
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            oom = getattr(self.km, "oom_killed", None)
            why = " (memory limit reached)" if callable(oom) and oom() else ""
            self._halted = f"the kernel died in {label}{why}"
            cell.outputs.append(new_output("error", ename="DeadKernelError", evalue=self._halted, traceback=[]))
            self._problem(f"kernel died in {label}{why}; later cells were not run", learner_failed=True)
        except CellTimeoutError:
            run_sync(self._kill_kernel)()
            self._halted = f"the kernel stopped answering in {label}"
            cell.outputs.append(new_output("error", ename="CellTimeoutError", evalue=self._halted, traceback=[]))
            self._problem(f"timeout: {label} did not stop when interrupted; the kernel was killed and later "
                          "cells were not run", learner_failed=True)
        else:
            if self._timed_out is not None:
                deadline_hit = self.job_deadline is not None and time.monotonic() >= self.job_deadline
                if deadline_hit:
                    self._halted = "the time limit for the submission was reached"
                    self._problem(f"time limit for the submission reached in {label}; later cells were not run",
                                  learner_failed=True)
                else:
                    self._problem(f"timeout: {label} ran longer than {self._timed_out} s", learner_failed=True)
        if self._visible_part is not None:  # the visible part killed the kernel or stopped answering
            self._visible_part = None
            _record_visible(cell, False, error_line(cell.outputs))
        return cell, resources

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        self._cell_bytes = getattr(self, "_cell_bytes", 0) + _payload_size(msg.get("content"))
        if self._cell_bytes <= self.max_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if not self._cell_truncated:
            self._cell_truncated = True
            outs.append(new_output("stream", name="stdout",
                                   text=f"\n... output truncated by the grader (over {self.max_output_bytes} bytes)\n"))
            self._problem(f"output truncated: {self._label_now}", learner_failed=False)
        content = msg.get("content", {})
        msg_type = msg.get("msg_type")
        if msg_type == "error":  # errors decide the grade: keep them, shortened
            small = {"ename": str(content.get("ename", ""))[:200], "evalue": str(content.get("evalue", ""))[:2000],
                     "traceback": [str(line)[:2000] for line in content.get("traceback", [])[-20:]]}
            return super().output(outs, {**msg, "content": small}, None, cell_index)
        stderr_kept = any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outs)
        if msg_type == "stream" and content.get("name") == "stderr" and not stderr_kept:  # stderr means 0 points
            outs.append(new_output("stream", name="stderr", text="... stderr output truncated by the grader\n"))
        if msg_type == "execute_result":  # may carry partial credit: keep the plain text
            text = str((content.get("data") or {}).get("text/plain", ""))[:1000]
            small = {**content, "data": {"text/plain": text}, "metadata": {}}
            return super().output(outs, {**msg, "content": small}, None, cell_index)
        return None


async def wait_until_ready(kc: Any, timeout: float | None) -> None:
    """Return once the kernel answers ``kernel_info`` and its IOPub channel is seen to be connected.

    ``KernelClient.wait_for_ready`` does the same and then waits for 0.2 s of IOPub silence
    to flush the channel; nothing needs that here (nbclient and the anticheat guard ignore
    IOPub messages that are not about their own requests), and those 0.2 s were 40% of a
    sandboxed kernel's start.  Raises ``RuntimeError`` like ``wait_for_ready``.
    """
    deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
    while True:
        msg_id = kc.kernel_info()
        reply = None
        with contextlib.suppress(Empty, TimeoutError):
            while reply is None:
                msg = await ensure_async(kc.shell_channel.get_msg(timeout=1))
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    reply = msg
        if reply is not None:
            # The kernel publishes its busy/idle status for the request: any IOPub message
            # shows that the subscription is live (outputs of the first cell cannot be lost).
            with contextlib.suppress(Empty, TimeoutError):
                await ensure_async(kc.iopub_channel.get_msg(timeout=0.2))
                kc._handle_kernel_info_reply(reply)
                return
        if not await ensure_async(kc.is_alive()):
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


def visible_record(cell: Any) -> tuple[bool | None, str | None] | None:
    """``(passed, error)`` of the visible part ``GuardedExecute`` ran for an executed cell; None when none ran."""
    notes = cell.get("metadata", {}).get(METADATA_KEY)
    record = notes.get("visible") if isinstance(notes, dict) else None
    if not isinstance(record, dict):
        return None
    passed, error = record.get("passed"), record.get("error")
    return (passed if isinstance(passed, bool) else None), (error if isinstance(error, str) else None)


def _record_visible(cell: Any, passed: bool | None, error: str | None) -> None:
    notes = cell.metadata.setdefault(METADATA_KEY, {})
    notes["visible"] = {"passed": passed, "error": error}


def _full_points(cell: Any) -> bool:
    """Whether nbgrader would give ``cell`` (a test cell) every point (no error, no stderr, no partial credit)."""
    try:
        score, max_score = determine_grade(cell)
    except (ValueError, TypeError, KeyError):
        return False
    return score is not None and score >= max_score


def _has_code(source: str) -> bool:
    """Whether ``source`` holds a statement (not only blank lines and comments); unparsable counts as code."""
    try:
        return bool(ast.parse(anticheat.python_source(source)).body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True


def guarded(preprocessor: Any) -> Any:
    """``preprocessor`` with nbgrader's Execute swapped for ``GuardedExecute`` (subclasses kept)."""
    cls = import_item(preprocessor) if isinstance(preprocessor, str) else preprocessor
    if not (isinstance(cls, type) and issubclass(cls, Execute)) or issubclass(cls, GuardedExecute):
        return preprocessor
    if cls is Execute:
        return GuardedExecute
    return type(f"Guarded{cls.__name__}", (GuardedExecute, cls), {"__module__": __name__})


def _payload_size(value: Any) -> int:
    """Characters of text in a message content (iteratively; content nests a few levels)."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return total
