"""Tamper detection for autograding: canaries, an integrity probe, static checks and file checks.

Plain nbgrader runs the learner's cells and the instructor's tests in one kernel and gives
full points to any test cell that ends without an error.  Everything in that kernel is the
learner's to change: built-in functions, IPython's machinery (AST and input transformers,
event callbacks, exception handlers, ``showtraceback``), library functions the tests
call, files in the working directory.  ``docs/anticheat.md`` lists the attacks and what
stops each.  This package holds the grader's side of the defences; ``GuardedExecute`` in
``academy.engine.pipeline`` calls ``NotebookDefence`` (``defence``) around every cell.
What the parts share about cells (their kind, source and facts) is in ``cells``.

Static checks (``static_findings``, module ``static``)
    Before anything runs, the learner's cells (nbgrader ``solution`` cells and unmarked
    cells) are parsed with ``ast`` (IPython syntax turned into Python first, syntax errors
    tolerated) and suspicious constructs become *flags* with the cell and line.  They
    never cost points by themselves.

Integrity agent (``AGENT_SOURCE`` in ``agent``; ``KernelGuard`` in ``kernel`` talks to it)
    Right after the kernel starts, before any learner cell, the grader installs a small
    agent through the kernel client (``user_expressions`` of a silent, empty request: no
    transformers, hooks or history).  It captures the pristine built-ins, IPython's hook
    lists, the shell's and kernel's execution methods, display/except hooks, trace
    functions and ``sys.modules`` in a closure, registered under a random module name.
    Before every instructor cell (read-only and test cells) the grader calls its
    ``check``: it reports what changed, puts the pristine objects back (prevention), hides
    the notebook's own functions that shadow built-ins the cell uses, restores the
    instructor's helpers that the notebook rebound, and reports library functions the
    notebook replaced and values whose class lies about equality.  Replies carry a fresh
    nonce; a missing or wrong reply is itself tampering.

Canary (``canary_source``, module ``canary``)
    Before each autograded test cell the grader runs, through the client and never as a
    notebook cell, ``assert False, "<nonce>"`` (a fresh random nonce each time) followed by
    the test's own source, which is compiled but not run.  It must fail with that nonce.  If it reports success, or a
    different error while the real test then passes, something between the request and the
    interpreter rewrote, blanked or excused the cell: that test and every later test get 0
    and the submission is flagged.

Working-directory files (``WorkdirWatch``, module ``workdir``)
    The instructor's files that nbgrader copies next to the notebook (helper modules, data)
    are compared, from outside the sandbox, with the course's source before every test;
    a changed helper module (``.py``) is tampering, other changed files are flagged.

What cannot be prevented inside the kernel is detected and flagged; ``flags`` end up in
``GradeResult.flags`` and the gradebook's "check" marker.  A determined learner can still
defeat the agent and the canary from inside the kernel (see docs/anticheat.md).
"""

from academy.engine.anticheat.agent import AGENT_SOURCE
from academy.engine.anticheat.canary import TAMPERED, canary_source, canary_verdict
from academy.engine.anticheat.cells import (
    CRITICAL_MODULES,
    CellFacts,
    cell_facts,
    is_instructor_cell,
    is_learner_cell,
    is_test_cell,
    new_nonce,
    parse_tolerant,
    python_source,
    solution_names,
    top_level_names,
)
from academy.engine.anticheat.defence import NotebookDefence
from academy.engine.anticheat.kernel import AgentUnavailable, Finding, KernelGuard, KernelTimeout
from academy.engine.anticheat.static import MAX_STATIC_FINDINGS, static_findings
from academy.engine.anticheat.workdir import WorkdirWatch

__all__ = [
    "AGENT_SOURCE",
    "CRITICAL_MODULES",
    "MAX_STATIC_FINDINGS",
    "TAMPERED",
    "AgentUnavailable",
    "CellFacts",
    "Finding",
    "KernelGuard",
    "KernelTimeout",
    "NotebookDefence",
    "WorkdirWatch",
    "canary_source",
    "canary_verdict",
    "cell_facts",
    "is_instructor_cell",
    "is_learner_cell",
    "is_test_cell",
    "new_nonce",
    "parse_tolerant",
    "python_source",
    "solution_names",
    "static_findings",
    "top_level_names",
]
