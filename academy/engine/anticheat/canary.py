"""The must-fail tripwire run before every autograded test (see ``KernelGuard.canary``).

The test's own source followed by ``assert False, "<nonce>"`` must fail with that nonce;
if it passes, or fails differently while the real test then passes, the kernel no longer
runs tests as written.
"""

from __future__ import annotations

from typing import Any

TAMPERED = "a check that must fail passed: the kernel was tampered with"
"""The flag (and problem) text when a canary shows that the kernel no longer runs tests as written."""


def canary_source(test_source: str, nonce: str) -> str:
    """The test's own source followed by an assertion that must fail with ``nonce``."""
    return test_source.rstrip() + f'\nassert False, "{nonce}"\n'


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
