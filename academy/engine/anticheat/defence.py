"""One notebook's defence: the agent, probe, canary and file checks around each cell, driven by GuardedExecute."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from academy.engine.anticheat.canary import TAMPERED
from academy.engine.anticheat.cells import (
    CRITICAL_MODULES,
    CellFacts,
    cell_facts,
    is_instructor_cell,
    is_test_cell,
    solution_names,
)
from academy.engine.anticheat.kernel import Finding, KernelGuard, KernelTimeout
from academy.engine.anticheat.workdir import WorkdirWatch

_BUILTIN_NAMES = frozenset(dir(__import__("builtins")))


def _error_output(ename: str, evalue: str) -> Any:
    from nbformat.v4 import new_output

    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _failed(cell: Any) -> bool:
    return any(out.get("output_type") == "error"
               or (out.get("output_type") == "stream" and out.get("name") == "stderr") for out in cell.outputs)


class NotebookDefence:
    """Everything the grader does around the cells of one notebook in one kernel.

    ``run(cell, label, execute, timeout)`` wraps nbclient's execution of one code cell:
    the agent is installed before the first cell; before each instructor cell the
    working directory and the kernel are checked (and repaired); before each test cell the
    canary runs; after a test cell its outputs are made safe for nbgrader's scoring; after
    an instructor cell its helpers are remembered.  Once the kernel is known to be tampered
    with, every later test gets an error output (0 points in nbgrader's scoring).
    """

    def __init__(self, client: Any, notebook: str, *, workdir: Path | None, source_dir: Path | None,
                 ignore: Iterable[str] = (), canary: bool = True, flag: Callable[[str], None],
                 problem: Callable[[str], None], log: Callable[[str], None] = print,
                 interrupt_grace: float = 5.0) -> None:
        self.notebook = notebook
        self.canary_enabled = canary
        self._flag, self._problem, self._log = flag, problem, log
        self.watch = (WorkdirWatch.create(workdir, source_dir, ignore)
                      if workdir is not None and source_dir is not None else None)
        allowed = solution_names(source_dir / f"{notebook}.ipynb") if source_dir is not None else set()
        self.guard = KernelGuard(client, notebook, allowed=allowed,
                                 instructor_files=list(self.watch.expected) if self.watch else [],
                                 interrupt_grace=interrupt_grace)
        self.client = client
        self.tampered: str | None = None
        self.started = False
        self.tests = 0
        self.disabled = False
        self.dirty = True  # code ran since the last probe
        self.helper_loads: tuple[str, ...] = ()

    def flag(self, text: str) -> None:
        self._flag(f"{self.notebook}: {text}")

    def tamper(self, reason: str, label: str, *, canary: bool = False) -> None:
        if self.tampered is not None:
            return
        self.tampered = reason
        text = f"{TAMPERED} ({reason})" if canary else reason
        self.flag(f"{text}; test {label} and every later test get 0")
        self._problem(f"{self.notebook}: tampering detected at {label}: {reason}; it and every later test got 0")

    async def run(self, cell: Any, label: str, execute: Callable[[], Any], timeout: float | None) -> Any:
        if not self.started:
            self.started = True
            nb = getattr(self.client, "nb", None) or {}
            language = nb.get("metadata", {}).get("language_info", {}).get("name")
            if language not in (None, "python"):
                self._log(f"{self.notebook}: a {language} kernel: no canaries or integrity probe")
                self.disabled = True
            else:
                # Built-in names the instructor's cells read (helpers called by tests use them too).
                loads: dict[str, None] = {}
                for other in nb.get("cells", []):
                    if is_instructor_cell(other):
                        loads.update(dict.fromkeys(name for name in cell_facts(other.source).loads
                                                   if name in _BUILTIN_NAMES))
                self.helper_loads = tuple(loads)
                await self.guard.install()  # AgentUnavailable: a grader error (no learner cell has run yet)
        if self.disabled:
            return await execute()
        instructor = is_instructor_cell(cell)
        test = is_test_cell(cell)
        facts = cell_facts(cell.source) if instructor else None
        verdict = None
        if instructor and self.tampered is None:
            await self._inspect(facts, label, during=False)
        if test:
            self.tests += 1
            if self.tampered is None and self.canary_enabled and not facts.cell_magic:
                self.dirty = True
                verdict, _ = await self.guard.canary(cell.source, timeout)
                if verdict == "passed":
                    self.tamper(f"the check run before test {label} passed", label, canary=True)
        self.dirty = True
        cell = await execute()
        if test and self.tampered is None:
            # Learner code the test called may have changed the kernel while the test ran.
            await self._inspect(facts, label, during=True)
        if test:
            if verdict == "error" and self.tampered is None and not _failed(cell):
                # The test failed when the grader ran it but passed as a cell: look again.
                try:
                    again, _ = await self.guard.canary(cell.source, timeout)
                except KernelTimeout:
                    again = "failed"
                if again != "failed":
                    self.tamper(f"test {label} failed when the grader checked it but passed when run", label,
                                canary=True)
            self._fix_outputs(cell, facts, label)
            if self.tampered is not None:
                cell.outputs.insert(0, _error_output("TamperingDetected", f"{TAMPERED}: {self.tampered}"))
        if instructor and self.tampered is None and facts.binds:
            await self.guard.snapshot(facts.binds)
        return cell

    async def _inspect(self, facts: CellFacts, label: str, *, during: bool) -> None:
        """Check the working directory and the kernel before an instructor cell (or after a test: ``during``).

        Before: what the notebook changed is put back and flagged.  After a test: a change
        to the interpreter's machinery was made by learner code *the test called*, so that
        test's result cannot be trusted.
        """
        if self.watch is not None:
            for rel in self.watch.changed():
                if rel.endswith(".py"):
                    self.tamper(f"the instructor's module {rel} in the working directory was changed", label)
                else:
                    self.flag(f"the instructor's file {rel} in the working directory was changed")
        if not self.dirty:
            return
        findings = await self.guard.check(facts, label, self.helper_loads)
        self.dirty = False
        for finding in findings:
            if finding.kind == "error":
                self._log(f"{self.notebook}: integrity probe at {label}: {finding.text}")
            elif during and finding.kind == "core":
                self.tamper(f"{finding.text} while test {label} ran", label)
            elif self._is_tampering(finding, facts):
                self.tamper(finding.text, label)
            else:
                self.flag(finding.text)

    @staticmethod
    def _is_tampering(finding: Finding, facts: CellFacts) -> bool:
        """Findings that make the coming tests meaningless (the rest is restored or only suspicious)."""
        if finding.kind == "tamper":
            return True
        if finding.kind == "patched":
            return finding.critical or finding.attr in facts.mentions
        if finding.kind == "module":
            return (finding.module.partition(".")[0] in CRITICAL_MODULES
                    or bool(set(finding.module.split(".")) & facts.mentions))
        return False

    def _fix_outputs(self, cell: Any, facts: CellFacts, label: str) -> None:
        """Make nbgrader's scoring of a test cell depend on the test, not on what the notebook displayed.

        nbgrader scores the *first* ``execute_result`` as partial credit, even when an error
        follows, and aborts the whole job when that value exceeds the cell's points.
        """
        results = [out for out in cell.outputs if out.get("output_type") == "execute_result"]
        if results and facts.trailing_expression is False:
            cell.outputs = [out for out in cell.outputs if out.get("output_type") != "execute_result"]
            self.flag(f"test {label} displayed a result although its last line is not an expression (a forged "
                      "partial credit); it was ignored")
        elif len(results) > 1:
            cell.outputs = [out for out in cell.outputs if out.get("output_type") != "execute_result"
                            or out is results[-1]]
            self.flag(f"test {label} displayed {len(results)} results; only its own last one was kept")
        errors = [out for out in cell.outputs if out.get("output_type") == "error"]
        if errors and any(out.get("output_type") == "execute_result" for out in cell.outputs):
            cell.outputs = errors + [out for out in cell.outputs if out.get("output_type") != "error"]
        points = float(cell.metadata.get("nbgrader", {}).get("points") or 0)
        for index, out in enumerate(cell.outputs):
            if out.get("output_type") != "execute_result":
                continue
            try:
                value = float(str(out.get("data", {}).get("text/plain", "")).strip())
            except ValueError:
                continue
            if value > points:
                cell.outputs[index] = _error_output("PartialCreditError",
                                                    f"the test reported {value:g} points out of {points:g}")
                self._problem(f"{self.notebook}: test {label} reported more points than it has ({value:g} > "
                              f"{points:g}); scored 0")
