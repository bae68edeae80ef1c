"""Escapes from the notebook against the grader: the answer key, traps for the grader, exits, endless tests.

With the static checks and the cost of the canary; the course and the helpers are
``anticheat_course.py``'s, the attacks on the kernel itself are ``test_anticheat.py``'s.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.engine.anticheat_course import (
    ASSIGNMENT,
    POINTS,
    assert_graded,
    flagged,
    grade,
    nbgrader_meta,
    scores,
)
from tests.support import ROOT


def test_reading_the_answer_key_and_other_files_finds_nothing(course: dict[str, Any]) -> None:
    """(h) the source notebook, the gradebook, other learners' work, the repository: none readable."""
    other = course["base"] / "work" / "academy-grade-other" / "submitted" / "bob" / ASSIGNMENT
    other.mkdir(parents=True, exist_ok=True)
    (other / f"{ASSIGNMENT}.ipynb").write_text("bob's answers")
    sensitive = [
        str(course["root"] / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
        str(course["root"]), str(course["cache"]), str(course["base"] / "work"), str(other / f"{ASSIGNMENT}.ipynb"),
        str(ROOT / "instance"), str(ROOT / "academy"), str(ROOT / ".env"), "/work/shared", "/root",
    ]
    answer = f'''\
import glob
import os

try:
    open("../../source/stats/stats.ipynb").read()
except OSError:
    pass
SENSITIVE = {sensitive!r}
patterns = ["/*", "../../source/*/*.ipynb", "../../../source/*/*.ipynb", "../../gradebook.db", "../../../gradebook.db",
            "../../*/*/*/*.ipynb", "../*/*.ipynb", "/*/gradebook.db", "/tmp/*", "/work/*", "/work/main/*"]
readable = set()
for pattern in patterns + [path + suffix for path in SENSITIVE for suffix in ("", "/*", "/*/*/*")]:
    for path in glob.glob(pattern):
        try:
            with open(path, "rb") as handle:
                handle.read(1)
            readable.add(os.path.abspath(path))
        except OSError:
            pass
        if os.path.isdir(path) and os.listdir(path):
            readable.add(os.path.abspath(path) + "/")
print("READABLE[" + "|".join(sorted(readable)) + "]")

def mean(xs):
    for path in sorted(readable):  # use the instructor's solution if the key is anywhere
        if path.endswith(".ipynb"):
            import json
            for cell in json.load(open(path))["cells"]:
                if "def mean" in "".join(cell["source"]):
                    exec("".join(cell["source"]), globals())
                    return globals()["mean"](xs)
    return 0.0
'''
    result = grade(course, answer)
    assert_graded(result)
    assert scores(result)["test_mean"] == 0.0
    match = re.search(r"READABLE\[([^\]]*)\]", html.unescape(result.feedback[ASSIGNMENT]))
    assert match, "the attack's report is missing from the feedback"
    readable = [path for path in match.group(1).split("|") if path]
    leaked = [path for path in readable for secret in sensitive if path.rstrip("/").startswith(secret)]
    assert leaked == []
    assert not [path for path in readable if path.endswith((".db", ".ipynb"))], readable
    flagged(result, "open() on a path outside its working directory: '../../source/stats/stats.ipynb'")


@pytest.mark.parametrize("zygote", ["1", "0"], ids=["zygote", "fresh-kernel"])
@pytest.mark.parametrize("trap", ["symlink", "fifo"])
def test_a_trap_in_place_of_the_notebook_does_not_reach_the_grader(
    course: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trap: str, zygote: str
) -> None:
    """The kernel replaces its notebook with a link to a host file (or a FIFO); the grader, root, then
    writes the autograded notebook there: it must neither overwrite the host file nor block."""
    monkeypatch.setenv("ACADEMY_GRADER_ZYGOTE", zygote)
    target = tmp_path / "host-file.txt"
    target.write_text("a host file the grader must not touch\n")
    os.chmod(target, 0o600)
    make = f"os.symlink({str(target)!r}, name)" if trap == "symlink" else "os.mkfifo(name)"
    answer = (f"import os\nname = {ASSIGNMENT + '.ipynb'!r}\nos.remove(name)\n{make}\n"
              "def mean(xs):\n    return sum(xs) / len(xs)\n")
    result = grade(course, answer)
    assert_graded(result)
    assert scores(result)["test_mean"] == POINTS["test_mean"]
    assert target.read_text() == "a host file the grader must not touch\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("where", ["answer-cell", "inside-the-tested-function"])
def test_os_exit_is_the_learners_failure_not_full_marks(course: dict[str, Any], where: str) -> None:
    """(i) ``os._exit(0)``: learner_code_failed, the tests after it get 0."""
    answer = ("import os\nos._exit(0)\n" if where == "answer-cell"
              else "def mean(xs):\n    import os\n    os._exit(0)\n")
    result = grade(course, answer)
    assert result.status.value == "learner_code_failed", result.problems
    assert scores(result) == {"test_mean": 0.0, "test_spread": 0.0, "test_strict": 0.0}
    assert any("kernel died" in problem for problem in result.problems)
    flagged(result, "calls os._exit()")


def test_tested_function_that_never_returns_is_a_timeout(course: dict[str, Any]) -> None:
    """A function that loops when a test calls it: the test times out and gets 0, grading goes on."""
    from academy.engine.sandbox import SandboxPolicy

    result = grade(course, "def mean(xs):\n    while True:\n        pass\n", policy=SandboxPolicy(cell_timeout=2))
    assert result.status.value == "learner_code_failed", result.problems
    assert scores(result) == {"test_mean": 0.0, "test_spread": 2.0, "test_strict": 0.0}
    assert any("timeout" in problem and "test_mean" in problem for problem in result.problems), result.problems
    assert result.flags == []


# --- static checks without running anything --------------------------------------------------


def test_static_checks_name_cell_and_line_and_tolerate_broken_cells() -> None:
    from academy.engine.anticheat import static_findings

    nb = new_notebook()
    nb.cells = [
        new_code_cell("%load_ext autoreload\n!ls\nx = 1\nimport builtins\nbuiltins.len = len",
                      metadata=nbgrader_meta("answer", solution=True)),
        new_code_cell("def broken(:\n    pass\nsys.settrace(None)\nopen('/etc/passwd')"),
        new_code_cell("import builtins\nbuiltins.len = len", metadata=nbgrader_meta("test_x", grade=True, points=1)),
        new_code_cell("class X(list):\n    def __ne__(self, other):\n        return False\n"
                      "eval('1 + 1')\nimport gc\ngc.get_objects()"),
    ]
    findings = static_findings(nb, "nb")
    text = "\n".join(findings)
    assert "nb: cell 'answer' line 4: imports builtins (static check)" in findings
    assert "nb: cell 'answer' line 5: sets builtins.len (static check)" in findings
    assert "nb: cell 2 line 3: calls sys.settrace" in text
    assert "nb: cell 2 line 4: open() on a path outside its working directory: '/etc/passwd'" in text
    assert "test_x" not in text  # instructor cells are not the learner's
    assert "class X subclasses list" in text and "defines __ne__ that always returns False" in text
    assert "runs code from a string (eval())" in text and "gc.get_objects()" in text


# --- the canary's cost -------------------------------------------------------------------


def test_canary_cost_is_measured(course: dict[str, Any]) -> None:
    """One more execution per test cell: report what it costs (the figure for docs/anticheat.md)."""
    result = grade(course, "def mean(xs):\n    return sum(xs) / len(xs)\n")
    assert_graded(result)
    tests = len(POINTS)
    per_test = result.timings["anticheat_canary"] / tests
    probe = result.timings["anticheat_probe"]
    print(f"\ncanary {per_test * 1000:.1f} ms per test cell, probe {probe * 1000:.1f} ms per notebook, "
          f"execution {result.timings['kernel_and_execution']:.2f} s, total {result.timings['total']:.2f} s")
    assert per_test < 1.0 and probe < 2.0

