"""The must-fail tripwire run before every autograded test (see ``KernelGuard.canary``).

``assert False, "<nonce>"`` followed by the test's own source must fail with that nonce;
if it passes, or fails differently while the real test then passes, the kernel no longer
runs tests as written.  The whole cell goes through every transformer, hook and compiler
step that the test will, but IPython stops at its first failing statement, so the test's
own code never runs: a canary costs the same few milliseconds for a test that trains a
model for minutes.  (A test that starts with ``from __future__`` imports, which must come
first, gets the assertion after its source instead, and so runs twice.)
"""

from __future__ import annotations

from typing import Any

TAMPERED = "a check that must fail passed: the kernel was tampered with"
"""The flag (and problem) text when a canary shows that the kernel no longer runs tests as written."""


def canary_source(test_source: str, nonce: str) -> str:
    """An assertion that must fail with ``nonce``, followed by the test's own source (which is then not run)."""
    check = f'assert False, "{nonce}"\n'
    if "__future__" in test_source:
        return test_source.rstrip() + "\n" + check
    return check + test_source.rstrip() + "\n"


def canary_verdict(reply: dict[str, Any] | None, nonce: str) -> str:
    """``"failed"`` (the expected nonce error), ``"passed"`` (tampering), ``"error"`` (another error)."""
    content = (reply or {}).get("content", {})
    status = content.get("status")
    if status == "ok":
        return "passed"
    text = " ".join([str(content.get("ename", "")), str(content.get("evalue", ""))])
    if status == "error" and nonce in text:
        return "failed"
    return "error"
