"""Adversarial notebooks against the grader: each attack scores 0 on what it attacks and is flagged.

Every case is graded for real: ``academy.engine.pipeline.grade_submission`` runs nbgrader
0.9.6 with the learner's kernel in the bubblewrap sandbox (``sandboxed`` is asserted where
the machine has one).  One small nbgrader course is generated once per module
(``course``): a read-only helper cell, two answers (``mean``, ``spread``) and three tests,
one with hidden tests and one that uses ``academy/engine/checks.py`` copied into the
source folder as ``academy_checks.py`` (``anticheat_course.py``).  Each attack is the released notebook with a
malicious answer, wrong on purpose, so every point it gets comes from the attack.

Plain nbgrader (``nbgrader autograde`` with a kernelspec for ``.venv-lab``, no sandbox, no
defences) against this grader, points out of 5 (``PLAIN_SCORES``, measured by
``test_plain_nbgrader_is_fooled_where_we_are_not``):

===========================================  =====  ====  ==================================
attack (a wrong answer plus ...)             plain  ours  stopped by
===========================================  =====  ====  ==================================
builtins.abs / builtins.round replaced       4      0     agent restores, flagged
def round / abs = lambda in the notebook     4      0     agent hides the shadows, flagged
instructor helper approx() rebound           2      0     agent restores helper, flagged
mean() patches builtins.abs when called      2      0     check after the test: tampering
AST transformer strips asserts               4      0     agent restores, flagged
input transformer blanks ``assert`` cells    4      0     agent restores, flagged
set_custom_exc + post_run_cell forgets err   5      0     agent restores, flagged
showtraceback + post_run_cell (#1324 redux)  5      0     agent restores, flagged
displayhook forges partial credit            2      0     outputs repaired, flagged
rewrites academy_checks.py next to it        1      0     file check from outside, flagged
agent disabled + AST transformer             4      0     canary: every test 0, flagged
===========================================  =====  ====  ==================================

What is not prevented: an always-equal object against a test that uses plain ``==``
(flagged, but it keeps those points; the strict helper gives 0).
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.engine.anticheat_course import (
    ASSIGNMENT,
    CANARY,
    HONEST_SPREAD,
    POINTS,
    WRONG_SPREAD,
    assert_graded,
    flagged,
    grade,
    learner_notebook,
    scores,
)
from tests.engine.plain_nbgrader import plain_nbgrader_env, recorded, run_nbgrader

# --- honest submissions -----------------------------------------------------------------

HONEST_NUMPY = '''\
%matplotlib inline
import json
import os
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np


@dataclass
class Summary:
    total: float
    count: int


class Accumulator:
    def __init__(self):
        self.items = []

    def add(self, value):
        if not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"not a number: {value!r}")
        self.items.append(float(value))
        return self


def mean(xs):
    acc = Accumulator()
    for x in xs:
        acc.add(x)
    with open("scratch.json", "w") as handle:  # file IO in its own working directory
        json.dump(acc.items, handle)
    with open(os.path.join(".", "scratch.json")) as handle:
        items = json.load(handle)
    summary = Summary(total=float(np.sum(items)), count=len(items))
    return summary.total / summary.count


figure, axes = plt.subplots()
axes.plot(np.arange(4), [mean([1, 2, 3])] * 4)
plt.close(figure)
%time print(mean([1, 2, 3]), os.listdir("."))
'''

HONEST_STAR = '''\
from numpy import *   # shadows sum, round, abs, min, max ... with NumPy's own
import sys

sum_of_squares = 0
for value in [1.0, 2.0]:
    sum_of_squares += value ** 2

def mean(xs):
    return float(sum(array(xs, dtype=float)) / len(xs))
'''


@pytest.mark.parametrize("answer", [HONEST_NUMPY, HONEST_STAR], ids=["numpy-classes-files", "star-import"])
def test_honest_submissions_keep_full_marks_and_are_not_flagged(course: dict[str, Any], answer: str) -> None:
    """No false positives: NumPy, classes, isinstance, dataclasses, matplotlib, magics, files in its cwd."""
    spread = "import numpy as np\n\ndef spread(xs):\n    values = np.asarray(xs, dtype=float)\n" \
             "    return float(values.max() - values.min())\n"
    result = grade(course, answer, spread)
    assert_graded(result)
    assert scores(result) == POINTS, [(c.grade_id, c.error) for nb in result.notebooks for c in nb.cells]
    assert result.flags == []
    assert result.problems == []
    assert result.to_json()["flags"] == []
    # The canaries and the probe ran, and none of their output reached the learner.
    assert result.timings["anticheat_canary"] > 0 and result.timings["anticheat_probe"] > 0
    feedback = html.unescape(result.feedback[ASSIGNMENT])
    assert not CANARY.search(feedback) and "TamperingDetected" not in feedback


def test_wrong_answer_without_tricks_is_not_flagged(course: dict[str, Any]) -> None:
    result = grade(course, "def mean(xs):\n    return 0.0\n", WRONG_SPREAD)
    assert_graded(result)
    assert scores(result) == {"test_mean": 0.0, "test_spread": 0.0, "test_strict": 0.0}
    assert result.flags == []


# --- attacks --------------------------------------------------------------------------

BUILTINS_ATTACK = '''\
import builtins
builtins.abs = lambda x: 0
builtins.round = lambda *args, **kwargs: 1.5

def mean(xs):
    return 2.0
'''

SHADOW_ATTACK = '''\
def round(value, digits=0):
    return 1.5

abs = lambda value: 0

def mean(xs):
    return 2.0
'''

HELPER_REBIND_ATTACK = '''\
def approx(a, b):
    return True

def mean(xs):
    return 2.0
'''

PATCH_WHILE_TESTED = '''\
def mean(xs):
    import builtins
    builtins.abs = lambda value: 0  # only once the test has started
    return 2.0
'''


@pytest.mark.parametrize(("answer", "reason"), [
    (BUILTINS_ATTACK, "builtins.abs was replaced"),
    (SHADOW_ATTACK, "the notebook's own `abs` hid the built-in"),
    (HELPER_REBIND_ATTACK, "the instructor's `approx` was replaced"),
    (PATCH_WHILE_TESTED, "builtins.abs was replaced while test 'test_mean' ran; test 'test_mean' and every later"),
], ids=["builtins-module", "shadowing-globals", "test-helper-rebound", "patched-while-tested"])
def test_replaced_builtins_and_helpers_are_restored(course: dict[str, Any], answer: str, reason: str) -> None:
    """(a) ``builtins.abs = lambda x: 0``, ``def round``, a rebound test helper: restored before tests."""
    result = grade(course, answer, WRONG_SPREAD)
    assert_graded(result)
    assert scores(result) == {"test_mean": 0.0, "test_spread": 0.0, "test_strict": 0.0}
    flagged(result, reason)


ALWAYS_EQUAL = '''\
class Anything:
    def __eq__(self, other):
        return True

    def __sub__(self, other):
        return 0.0

    __hash__ = object.__hash__

def mean(xs):
    return Anything()
'''

LYING_FLOAT = '''\
class Liar(float):
    def __eq__(self, other):
        return True

    def __sub__(self, other):
        return 0.0

    __hash__ = float.__hash__

def mean(xs):
    return Liar(0.0)
'''


@pytest.mark.parametrize(("answer", "reasons"), [
    (ALWAYS_EQUAL, ["class Anything defines __eq__ that always returns True",
                    "class `Anything` defined in the notebook has __eq__ that always returns True"]),
    (LYING_FLOAT, ["class Liar subclasses float", "class `Liar` defined in the notebook subclasses float"]),
], ids=["always-equal", "float-subclass"])
def test_lying_values_are_flagged_and_fail_strict_checks(course: dict[str, Any], answer: str,
                                                         reasons: list[str]) -> None:
    """(b) ``__eq__`` returning True: plain ``==`` tests are fooled (no canary can see it), so the
    static check and the probe flag it for review; ``academy_checks.check_close`` refuses it (0)."""
    result = grade(course, answer)
    assert_graded(result)
    got = scores(result)
    assert got["test_strict"] == 0.0  # the strict helper is not fooled
    assert got["test_mean"] == POINTS["test_mean"]  # documented limit: plain == and abs(x - y) believe the object
    flagged(result, *reasons)


STRIP_ASSERTS = '''\
import ast

class StripAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()

get_ipython().ast_transformers.append(StripAsserts())

def mean(xs):
    return 0.0
'''

BLANK_ASSERT_CELLS = '''\
def blank(lines):
    return [] if any("assert" in line for line in lines) else lines

get_ipython().input_transformers_cleanup.append(blank)

def mean(xs):
    return 0.0
'''

FORGET_ERRORS = '''\
ip = get_ipython()
ip.set_custom_exc((Exception,), lambda *args, **kwargs: None)

def forget(result):
    result.error_in_exec = None

ip.events.register("post_run_cell", forget)

def mean(xs):
    return 0.0
'''

SHOWTRACEBACK = '''\
get_ipython().showtraceback = lambda *args, **kwargs: None

def forget(result):
    result.error_in_exec = None

get_ipython().events.register("post_run_cell", forget)

def mean(xs):
    return 0.0
'''

SHOWTRACEBACK_ONLY = '''\
get_ipython().showtraceback = lambda *args, **kwargs: None

def mean(xs):
    return 0.0
'''

HOOKS = '''\
import sys
sys.excepthook = lambda *args: None
get_ipython().excepthook = lambda *args: None
get_ipython().ast_node_interactivity = "all"

def mean(xs):
    get_ipython().displayhook(1)  # an execute_result: nbgrader reads it as partial credit
    return 0.0
'''

ATTACKS = {
    "ast-transformer": (STRIP_ASSERTS, "an AST transformer was installed"),
    "input-transformer": (BLANK_ASSERT_CELLS, "an input transformer was installed (input_transformers_cleanup)"),
    "custom-exc-post-run-cell": (FORGET_ERRORS, "a custom exception handler was installed (set_custom_exc)"),
    "showtraceback-post-run-cell": (SHOWTRACEBACK, "IPython's shell.showtraceback was replaced"),
    "showtraceback-1324": (SHOWTRACEBACK_ONLY, "IPython's shell.showtraceback was replaced"),
    "displayhook-excepthook": (HOOKS, "displayed a result although its last line is not an expression"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_ipython_hooks_are_undone_and_flagged(course: dict[str, Any], name: str) -> None:
    """(c)-(g) transformers, exception handlers, showtraceback, display/except hooks: 0 and flagged."""
    answer, reason = ATTACKS[name]
    result = grade(course, answer, WRONG_SPREAD)
    assert_graded(result)
    assert scores(result) == {"test_mean": 0.0, "test_spread": 0.0, "test_strict": 0.0}
    flagged(result, reason)
    if name == "displayhook-excepthook":
        flagged(result, "IPython's shell.excepthook was replaced", "ast_node_interactivity was set to 'all'",
                "sets sys.excepthook (static check)")


DISABLE_PROBE = '''\
import ast
import json
import sys

for module in list(sys.modules.values()):  # find the grader's agent and make it report nothing
    try:
        if callable(getattr(module, "check", None)) and callable(getattr(module, "snapshot", None)):
            module.check = lambda request: json.dumps({"nonce": json.loads(request)["nonce"], "found": []})
    except Exception:
        pass

'''


DISGUISE_CANARY = '''\
def disguise(lines):
    if lines and lines[0].startswith("assert False, "):  # looks like the grader's check: fail differently
        return ["raise ValueError('no')\\n"] + lines[1:]
    return [] if any("assert" in line for line in lines) else lines

get_ipython().input_transformers_cleanup.append(disguise)

def mean(xs):
    return 0.0
'''


@pytest.mark.parametrize("name", ["ast-transformer", "input-transformer", "showtraceback-post-run-cell", "disguised"])
def test_canary_catches_what_the_probe_missed(course: dict[str, Any], name: str) -> None:
    """With the probe subverted, the must-fail canary passes (or fails the wrong way while the test
    passes): that test and all later ones get 0."""
    answer = DISABLE_PROBE + (DISGUISE_CANARY if name == "disguised" else ATTACKS[name][0])
    result = grade(course, answer, HONEST_SPREAD)  # spread is right: its test is zeroed anyway
    assert_graded(result)
    assert scores(result) == {"test_mean": 0.0, "test_spread": 0.0, "test_strict": 0.0}
    flagged(result, "a check that must fail passed: the kernel was tampered with", "test 'test_mean'")
    assert any("tampering detected at 'test_mean'" in problem for problem in result.problems)
    cells = {cell.grade_id: cell for nb in result.notebooks for cell in nb.cells}
    assert "TamperingDetected" in (cells["test_spread"].error or "")
    assert not CANARY.search(html.unescape(result.feedback[ASSIGNMENT]))  # the canary never shows


REWRITE_HELPER = '''\
with open("academy_checks.py", "w") as handle:
    handle.write("def check_close(*args, **kwargs):\\n    pass\\n")

def mean(xs):
    return 0.0
'''

PATCH_LIBRARY = '''\
import math
math.isclose = lambda *args, **kwargs: True

def mean(xs):
    return 0.0
'''


@pytest.mark.parametrize(("answer", "reason"), [
    (REWRITE_HELPER, "the instructor's module academy_checks.py in the working directory was changed"),
    (PATCH_LIBRARY, "math.isclose was replaced by code from the notebook"),
], ids=["rewrite-helper-file", "patch-math-isclose"])
def test_tampered_helpers_zero_the_later_tests(course: dict[str, Any], answer: str, reason: str) -> None:
    """The strict helper file rewritten next to the notebook, or ``math.isclose`` replaced: 0 from there on."""
    result = grade(course, answer, HONEST_SPREAD)
    assert_graded(result)
    assert scores(result)["test_strict"] == 0.0
    flagged(result, reason)


IMPORTS_FIRST = "import colorsys\nimport fractions\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n"

LATE_PATCHES = {
    "critical-class-member": ("fractions.Fraction.__eq__ = lambda self, other: True\n\n" + WRONG_SPREAD,
                              "fractions.Fraction.__eq__ was replaced by code from the notebook"),
    "library-function": ("colorsys.rgb_to_hsv = lambda r, g, b: (0, 0, 0)\n\n" + WRONG_SPREAD,
                         "colorsys.rgb_to_hsv was replaced by code from the notebook"),
}


@pytest.mark.parametrize("name", sorted(LATE_PATCHES))
def test_a_module_found_clean_is_still_checked_after_later_cells(course: dict[str, Any], name: str) -> None:
    """The probe skips modules whose attributes are the very objects it last found clean; a library patched
    by a later cell (a function of a module, a member of a class of a critical module) is still found."""
    answer, reason = LATE_PATCHES[name]
    result = grade(course, IMPORTS_FIRST, answer)  # both modules are probed clean around test_mean first
    assert_graded(result)
    assert scores(result)["test_mean"] == 2.0
    flagged(result, reason)
    if name == "critical-class-member":  # a critical library: the later tests cannot be trusted
        assert scores(result)["test_spread"] == 0.0 and scores(result)["test_strict"] == 0.0


# --- the same attacks against plain nbgrader -----------------------------------------------

PLAIN_CASES = {
    "builtins": (BUILTINS_ATTACK, WRONG_SPREAD),
    "shadow": (SHADOW_ATTACK, WRONG_SPREAD),
    "helper": (HELPER_REBIND_ATTACK, WRONG_SPREAD),
    "whiletested": (PATCH_WHILE_TESTED, WRONG_SPREAD),
    "ast": (STRIP_ASSERTS, WRONG_SPREAD),
    "input": (BLANK_ASSERT_CELLS, WRONG_SPREAD),
    "forget": (FORGET_ERRORS, WRONG_SPREAD),
    "showtb": (SHOWTRACEBACK, WRONG_SPREAD),
    "display": (HOOKS, WRONG_SPREAD),
    "helperfile": (REWRITE_HELPER, WRONG_SPREAD),
    "canary": (DISABLE_PROBE + STRIP_ASSERTS, WRONG_SPREAD),
}


# Every one of these answers is wrong: plain nbgrader's points are all the attack's doing.
PLAIN_SCORES = {
    "builtins": {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 0.0},
    "shadow": {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 0.0},
    "helper": {"test_mean": 2.0, "test_spread": 0.0, "test_strict": 0.0},
    "whiletested": {"test_mean": 2.0, "test_spread": 0.0, "test_strict": 0.0},
    "ast": {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 0.0},
    "input": {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 0.0},
    "forget": {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 1.0},
    "showtb": {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 1.0},
    "display": {"test_mean": 1.0, "test_spread": 0.0, "test_strict": 1.0},
    "helperfile": {"test_mean": 0.0, "test_spread": 0.0, "test_strict": 1.0},
    "canary": {"test_mean": 2.0, "test_spread": 2.0, "test_strict": 0.0},
}


def _plain_scores(plain: Path, home: Path) -> dict[str, dict[str, float]]:
    """``nbgrader generate_assignment`` and ``autograde`` on the course folder ``plain``: each student's points per
    test."""
    env = plain_nbgrader_env(home)
    for step in (["generate_assignment", ASSIGNMENT, "--force"], ["autograde", ASSIGNMENT, "--force"]):
        run = run_nbgrader(step, plain, env)
        assert run.returncode == 0, run.stderr[-3000:]

    from nbgrader.api import Gradebook

    theirs: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{plain / 'gradebook.db'}", "anticheat") as gradebook:
        for student in PLAIN_CASES:
            submission = gradebook.find_submission(ASSIGNMENT, student)
            theirs[student] = {g.name: g.auto_score for nb in submission.notebooks for g in nb.grades
                               if g.name in POINTS}
    return theirs


@pytest.mark.slow
def test_plain_nbgrader_is_fooled_where_we_are_not(course: dict[str, Any], tmp_path: Path) -> None:
    """Plain ``nbgrader autograde`` (no sandbox, a kernelspec for .venv-lab) gives these attacks points;
    this grader gives them 0 (the table in the module docstring)."""
    plain = tmp_path / "plain"
    shutil.copytree(course["root"], plain)
    for student, (mean, spread) in PLAIN_CASES.items():
        folder = plain / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_bytes(learner_notebook(course, mean, spread))
    # Plain nbgrader's points, recorded per input and version (tests/engine/plain_nbgrader.py, ``recorded``).
    theirs = recorded("anticheat", plain, lambda: _plain_scores(plain, tmp_path))
    ours = {student: scores(grade(course, mean, spread)) for student, (mean, spread) in PLAIN_CASES.items()}

    zero = {"test_mean": 0.0, "test_spread": 0.0, "test_strict": 0.0}
    print("\nplain nbgrader:", json.dumps(theirs))
    assert all(result == zero for result in ours.values()), ours
    assert theirs == PLAIN_SCORES
