"""The integrity agent the grader installs in the kernel before any learner cell runs.

``AGENT_SOURCE`` is executed inside the kernel (never as a notebook cell): it captures
the pristine built-ins, IPython's machinery, hooks and ``sys.modules`` in a closure and
registers ``check`` and ``snapshot`` under a random module name.  ``KernelGuard`` in
``academy.engine.anticheat.kernel`` talks to it.
"""

from __future__ import annotations

import json
from typing import Any

from academy.engine import kernelside

AGENT_SOURCE = kernelside.source("agent_code")
"""The agent's program (``kernelside/agent_code.py``): defines ``_academy_install``."""


def install_expression(modname: str, nonce: str, instructor_files: list[str]) -> str:
    """A ``user_expressions`` entry that installs the agent as module ``modname`` and returns its greeting."""
    namespace = "{'__name__': " + repr(modname) + "}"
    return (f"(lambda g: (exec({AGENT_SOURCE!r}, g), g['_academy_install']({modname!r}, {nonce!r}, "
            f"{instructor_files!r}))[1])({namespace})")


def call_expression(modname: str, function: str, request: dict[str, Any]) -> str:
    """A ``user_expressions`` entry that calls the installed agent's ``function`` with ``request`` as JSON."""
    return f"__import__('sys').modules[{modname!r}].{function}({json.dumps(request)!r})"
