"""The grader's side of the agent and the canaries: requests sent straight through the kernel client."""

from __future__ import annotations

import ast
import asyncio
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from queue import Empty
from typing import Any

from academy.engine.anticheat.agent import call_expression, install_expression
from academy.engine.anticheat.canary import canary_source, canary_verdict
from academy.engine.anticheat.cells import CRITICAL_MODULES, CellFacts, new_nonce


@dataclass
class Finding:
    """One observation of the agent: ``kind`` is restored | tamper | module | patched | value."""

    kind: str
    text: str
    module: str = ""
    attr: str = ""
    critical: bool = False


class AgentUnavailable(RuntimeError):
    """The agent could not be installed in a fresh kernel: the grader's fault, never the learner's."""


class KernelTimeout(Exception):
    """A trusted request did not finish in time; ``interrupted`` tells whether an interrupt ended it."""

    def __init__(self, interrupted: bool) -> None:
        super().__init__("timeout")
        self.interrupted = interrupted


class KernelGuard:
    """The grader's side of the agent and the canaries for one kernel (one notebook).

    ``client`` is the nbclient ``NotebookClient`` (``kc``, ``km``); every request goes
    straight through the kernel client, so nothing it sends or receives reaches the
    notebook.
    """

    def __init__(self, client: Any, notebook: str, *, allowed: Iterable[str] = (), instructor_files: Iterable[str] = (),
                 interrupt_grace: float = 5.0) -> None:
        self.client = client
        self.notebook = notebook
        self.allowed = sorted(set(allowed))
        self.instructor_files = sorted(set(instructor_files))
        self.modname = "_" + secrets.token_hex(8)
        self.interrupt_grace = interrupt_grace
        self.installed = False
        self.timings: dict[str, float] = {"probe": 0.0, "canary": 0.0}
        self.counts: dict[str, int] = {"probe": 0, "canary": 0}

    # low level ----------------------------------------------------------------------------

    async def request(self, code: str, *, silent: bool, store_history: bool = False,
                      user_expressions: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send one execute request; return its reply, dropping every IOPub message it causes."""
        from nbclient.exceptions import DeadKernelError

        kc = self.client.kc
        msg_id = kc.execute(code, silent=silent, store_history=store_history,
                            user_expressions=user_expressions or {}, allow_stdin=False, stop_on_error=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        interrupted = False
        reply = None
        while reply is None:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                msg = await _maybe_await(kc.shell_channel.get_msg(timeout=wait))
            except (Empty, TimeoutError):
                if not await _maybe_await(kc.is_alive()):
                    raise DeadKernelError("Kernel died") from None
                if deadline is not None and time.monotonic() >= deadline:
                    if interrupted:
                        raise KernelTimeout(interrupted=False) from None
                    interrupted = True
                    await _maybe_await(self.client.km.interrupt_kernel())
                    deadline = time.monotonic() + self.interrupt_grace
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                reply = msg
        await self._drain(msg_id)
        if interrupted:
            raise KernelTimeout(interrupted=True)
        return reply

    async def _drain(self, msg_id: str, timeout: float = 5.0) -> None:
        """Read IOPub until the kernel is idle after ``msg_id`` (its outputs are discarded)."""
        kc = self.client.kc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await _maybe_await(kc.iopub_channel.get_msg(timeout=max(0.05, deadline - time.monotonic())))
            except (Empty, TimeoutError):
                return
            if msg.get("parent_header", {}).get("msg_id") == msg_id and msg.get("msg_type") == "status" \
                    and msg.get("content", {}).get("execution_state") == "idle":
                return

    async def _agent_call(self, expression: str, nonce: str) -> tuple[dict[str, Any] | None, str]:
        """The agent's JSON answer (checked against ``nonce``), or None and why there is none."""
        try:
            reply = await self.request("", silent=True, user_expressions={"r": expression}, timeout=30)
        except KernelTimeout:
            return None, "it did not answer within 30 s"
        content = reply.get("content", {})
        value = content.get("user_expressions", {}).get("r", {})
        if content.get("status") != "ok" or value.get("status") != "ok":
            ename = value.get("ename") or content.get("ename", "")
            error = f"{ename}: {value.get('evalue') or content.get('evalue', '')}"
            if self.modname in error:
                return None, "it was removed from the kernel"
            return None, f"it failed ({error.strip(': ')[:200]})"
        try:
            data = json.loads(ast.literal_eval(value.get("data", {}).get("text/plain", "")))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None, "its answer was not readable"
        if not isinstance(data, dict) or data.get("nonce") != nonce:
            return None, "its answer did not carry the grader's nonce"
        return data, ""

    # the agent ----------------------------------------------------------------------------------

    async def install(self) -> bool:
        """Install the agent in the fresh kernel; ``AgentUnavailable`` when the kernel does not accept it."""
        nonce = new_nonce()
        started = time.monotonic()
        data, why = await self._agent_call(install_expression(self.modname, nonce, self.instructor_files), nonce)
        self.timings["install"] = time.monotonic() - started
        self.installed = data is not None
        if not self.installed:
            raise AgentUnavailable(f"the grader's integrity agent could not be installed: {why}")
        return True

    async def check(self, facts: CellFacts, label: str, extra_names: Iterable[str] = ()) -> list[Finding]:
        """Run the agent's check before an instructor cell; returns findings (already restored)."""
        nonce = new_nonce()
        names = list(dict.fromkeys([*facts.loads, *extra_names]))
        request = {"nonce": nonce, "names": names, "allowed": self.allowed, "cell": label,
                   "critical": sorted(CRITICAL_MODULES)}
        started = time.monotonic()
        data, why = await self._agent_call(call_expression(self.modname, "check", request), nonce)
        self.timings["probe"] += time.monotonic() - started
        self.counts["probe"] += 1
        if data is None:
            return [Finding("tamper", f"the grader's integrity probe stopped working ({why})")]
        findings = []
        for item in data.get("found", []):
            if not isinstance(item, list) or not item:
                continue
            kind = str(item[0])
            if kind == "patched" and len(item) >= 5:
                findings.append(Finding(kind, str(item[4]), module=str(item[1]), attr=str(item[2]),
                                        critical=bool(item[3])))
            elif kind == "module" and len(item) >= 3:
                findings.append(Finding(kind, str(item[2]), module=str(item[1])))
            elif len(item) >= 2:
                findings.append(Finding(kind, str(item[1])))
        return findings

    async def snapshot(self, names: Iterable[str]) -> None:
        """Remember the instructor's functions, classes and modules bound by the cell that just ran."""
        names = list(names)
        if not names:
            return
        nonce = new_nonce()
        started = time.monotonic()
        await self._agent_call(call_expression(self.modname, "snapshot", {"nonce": nonce, "names": names}),
                               nonce)
        self.timings["probe"] += time.monotonic() - started

    # the canary ---------------------------------------------------------------------------------

    async def canary(self, source: str, timeout: float | None) -> tuple[str, float]:
        """Run the canary for a test's ``source``; returns (verdict, seconds)."""
        nonce = new_nonce()
        started = time.monotonic()
        try:
            reply = await self.request(canary_source(source, nonce), silent=False, store_history=True,
                                       timeout=timeout)
        finally:
            elapsed = time.monotonic() - started
            self.timings["canary"] += elapsed
            self.counts["canary"] += 1
        return canary_verdict(reply, nonce), elapsed


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value
