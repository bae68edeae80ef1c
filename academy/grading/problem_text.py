"""Learner-facing wording of the grader's ``problems``, in the reader's language.

The grader writes each problem as one plain English line (``GradeResult.problems``,
stored on the submission and printed by ``academy grade`` as JSON, an interface that
stays as it is).  ``describe_problem`` recognises each kind of line the grader produces
and returns the translated sentence with the cell, notebook, seconds or points put back
in; a line it does not know is returned unchanged, so a new wording degrades to English
rather than to nothing.  Templates use it as the ``problem`` filter.

Where the lines come from (keep these in step when a wording changes;
``tests/grading/test_problem_text.py`` produces them with the real code):

* ``validation.reconcile_with_release``: instructor cells changed, deleted, duplicated
  or retyped, unknown nbgrader cells, none of the assignment's cells found;
* ``pipeline``: a notebook not submitted, ``grader error: ...``; ``scores``: output cut by
  nbgrader; ``execute.GuardedExecute``: time limits, dead kernels and truncated output;
* ``anticheat.defence.NotebookDefence``: tampering detected, forged partial credit;
* ``worker``: the grading worker stopped repeatedly; ``gpu``: a GPU course's attempt graded on the CPU, and why.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask_babel import gettext as _

# nbgrader cells are named by ``repr(grade_id)`` or by their 1-based position.
_CELL = r"(?P<cell>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\d+)"
# Notebook names are letters, digits and ``_ . @ -`` (validation.check_name): never a colon.
_NOTEBOOK = r"(?P<notebook>[^:]+)"
_LABEL = rf"{_NOTEBOOK}: cell {_CELL}"
# The label NotebookDefence uses for a test: ``repr(grade_id)`` or ``cell <n>``.
_TEST = r"(?P<test>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|cell \d+)"

_Describe = Callable[[dict[str, str]], str]
_PATTERNS: list[tuple[re.Pattern[str], _Describe]] = []


def _problem(pattern: str) -> Callable[[_Describe], _Describe]:
    """Register a translation for the problem lines that match ``pattern`` in full."""
    def register(describe: _Describe) -> _Describe:
        _PATTERNS.append((re.compile(pattern, re.DOTALL), describe))
        return describe
    return register


def describe_problem(text: str) -> str:
    """The problem line ``text`` in the current locale; unknown lines come back unchanged."""
    for pattern, describe in _PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return describe(match.groupdict())
    return text


def _test_name(label: str) -> str:
    """A test's label as ``NotebookDefence`` wrote it (``'id'`` or ``cell 3``), for a sentence."""
    number = re.fullmatch(r"cell (\d+)", label)
    return _("cell %(number)s", number=number.group(1)) if number else label


# --- validation.reconcile_with_release ---------------------------------------------------


@_problem(rf"{_NOTEBOOK}: nbgrader metadata of cell {_CELL} was changed \(restored\)")
def _metadata_changed(g: dict[str, str]) -> str:
    return _("%(notebook)s: the grading settings of cell %(cell)s had been changed; the original settings were put "
             "back.", **g)


@_problem(rf"{_NOTEBOOK}: cell {_CELL} was turned into a (?P<kind>\w+) cell \(restored\)")
def _cell_retyped(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cell)s had been turned into a %(kind)s cell; it was changed back.", **g)


@_problem(rf"{_NOTEBOOK}: test cell {_CELL} was changed \(the original was restored\)")
def _test_changed(g: dict[str, str]) -> str:
    return _("%(notebook)s: test cell %(cell)s had been edited; the original test was put back.", **g)


@_problem(rf"{_NOTEBOOK}: read-only cell {_CELL} was changed \(the original was restored\)")
def _read_only_changed(g: dict[str, str]) -> str:
    return _("%(notebook)s: read-only cell %(cell)s had been edited; the original was put back.", **g)


@_problem(rf"{_NOTEBOOK}: unknown nbgrader cell (?P<cells>.+) ignored")
def _unknown_cell(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cells)s is not part of this assignment and was ignored.", **g)


@_problem(rf"{_NOTEBOOK}: unknown nbgrader cells (?P<cells>.+?) and (?P<more>\d+) more ignored")
def _unknown_cells_more(g: dict[str, str]) -> str:
    return _("%(notebook)s: cells %(cells)s and %(more)s more are not part of this assignment and were ignored.", **g)


@_problem(rf"{_NOTEBOOK}: unknown nbgrader cells (?P<cells>.+) ignored")
def _unknown_cells(g: dict[str, str]) -> str:
    return _("%(notebook)s: cells %(cells)s are not part of this assignment and were ignored.", **g)


@_problem(rf"{_NOTEBOOK}: none of the assignment's cells were found \(is this the right notebook\?\); "
          r"they were restored from the assignment")
def _no_cells_found(g: dict[str, str]) -> str:
    return _("%(notebook)s: none of the assignment's cells were found (is this the right notebook?). They were put "
             "back from the assignment.", **g)


@_problem(rf"{_NOTEBOOK}: cell {_CELL} appears (?P<count>\d+) times \(only the last one is graded\)")
def _cell_repeated(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cell)s appears %(count)s times; only the last one was graded.", **g)


@_problem(rf"{_NOTEBOOK}: test cell {_CELL} was deleted \(restored from the assignment\)")
def _test_deleted(g: dict[str, str]) -> str:
    return _("%(notebook)s: test cell %(cell)s had been deleted; it was put back from the assignment.", **g)


@_problem(rf"{_NOTEBOOK}: cell {_CELL} was deleted \(restored from the assignment\)")
def _cell_deleted(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cell)s had been deleted; it was put back from the assignment.", **g)


# --- pipeline ----------------------------------------------------------------------------


@_problem(rf"{_NOTEBOOK}: not submitted \(0 points\)")
def _not_submitted(g: dict[str, str]) -> str:
    return _("%(notebook)s: not submitted (0 points).", **g)


@_problem(r"grader error: (?P<detail>.+)")
def _grader_error_detail(g: dict[str, str]) -> str:
    return _("Grader error: %(detail)s", **g)


@_problem(r"grader error")
def _grader_error(g: dict[str, str]) -> str:
    return _("Grader error")


@_problem(rf"time limit for the submission reached before {_LABEL}; later cells were not run")
def _deadline_before(g: dict[str, str]) -> str:
    return _("%(notebook)s: the time limit for the whole submission was reached before cell %(cell)s; it and the "
             "cells after it were not run.", **g)


@_problem(rf"time limit for the submission reached in {_LABEL}; later cells were not run")
def _deadline_in(g: dict[str, str]) -> str:
    return _("%(notebook)s: the time limit for the whole submission was reached in cell %(cell)s; the cells after "
             "it were not run.", **g)


@_problem(rf"kernel died in {_LABEL} \(memory limit reached\); later cells were not run")
def _out_of_memory(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cell)s used more memory than allowed and the notebook stopped; the cells after it "
             "were not run.", **g)


@_problem(rf"kernel died in {_LABEL}; later cells were not run")
def _kernel_died(g: dict[str, str]) -> str:
    return _("%(notebook)s: the notebook stopped (crashed) in cell %(cell)s; the cells after it were not run.", **g)


@_problem(rf"timeout: {_LABEL} did not stop when interrupted; the kernel was killed and later cells were not run")
def _timeout_killed(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cell)s ran too long and did not stop when asked to, so the notebook was stopped; "
             "the cells after it were not run.", **g)


@_problem(rf"timeout: {_LABEL} ran longer than (?P<seconds>\d+(?:\.\d+)?) s")
def _timeout(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cell)s ran longer than %(seconds)s seconds and was stopped.", **g)


@_problem(rf"output truncated: {_LABEL}")
def _output_truncated(g: dict[str, str]) -> str:
    return _("%(notebook)s: cell %(cell)s printed too much output; the rest was cut off.", **g)


# --- anticheat.defence.NotebookDefence ------------------------------------------------------


def _tamper_reason(reason: str) -> str:
    """The reason part of a tampering line, translated where its wording is known."""
    match = re.fullmatch(rf"the check run before test {_TEST} passed", reason)
    if match:
        return _("a check of test %(test)s that must fail passed", test=_test_name(match["test"]))
    match = re.fullmatch(rf"test {_TEST} failed when the grader checked it but passed when run", reason)
    if match:
        return _("test %(test)s failed when the grader checked it but passed when run", test=_test_name(match["test"]))
    match = re.fullmatch(r"the instructor's module (?P<file>.+) in the working directory was changed", reason)
    if match:
        return _("the instructor's file %(file)s was changed", file=match["file"])
    match = re.fullmatch(r"the grader's integrity probe stopped working \((?P<detail>.*)\)", reason, re.DOTALL)
    if match:
        return _("the grader's integrity check stopped working: %(detail)s", detail=match["detail"])
    match = re.fullmatch(rf"(?P<what>.+) while test {_TEST} ran", reason, re.DOTALL)
    if match:
        return _("%(what)s while test %(test)s ran", what=match["what"], test=_test_name(match["test"]))
    return reason


@_problem(rf"{_NOTEBOOK}: tampering detected at {_TEST}: (?P<reason>.+); it and every later test got 0")
def _tampering(g: dict[str, str]) -> str:
    return _("%(notebook)s: code that interferes with grading was found at test %(test)s (%(reason)s). That test and "
             "every test after it got 0 points.", notebook=g["notebook"], test=_test_name(g["test"]),
             reason=_tamper_reason(g["reason"]))


@_problem(rf"{_NOTEBOOK}: test {_TEST} reported more points than it has \((?P<value>[^ ]+) > (?P<points>[^)]+)\); "
          r"scored 0")
def _forged_points(g: dict[str, str]) -> str:
    return _("%(notebook)s: test %(test)s reported %(value)s points, more than the %(points)s it is worth; it was "
             "scored 0.", notebook=g["notebook"], test=_test_name(g["test"]), value=g["value"], points=g["points"])


# --- worker ----------------------------------------------------------------------------------


@_problem(r"the grading worker stopped repeatedly")
def _worker_stopped(g: dict[str, str]) -> str:
    return _("Grading stopped several times before it could finish.")


# --- gpu (a GPU course graded on the CPU) ------------------------------------------------------


def _cpu_reason(reason: str) -> str:
    """Why a GPU course's attempt was graded on the CPU (``academy.grading.gpu``), for a learner."""
    if reason == "every GPU seat is taken":
        return _("every GPU was in use")
    if reason.startswith("learners are waiting for a GPU"):
        return _("learners were waiting for a GPU, and they come first")
    if reason.startswith("no GPU on this grader"):
        return _("the grading server has no GPU")
    if reason.startswith("no GPU here can hold a seat"):
        return _("no GPU here has enough memory for a grading seat")
    if "is no longer present" in reason or "device file" in reason:
        return _("the GPU it was given is no longer available")
    return _("the GPU could not be used (%(detail)s)", detail=reason)


@_problem(r"graded on the CPU, not a GPU: (?P<reason>.+)")
def _graded_on_cpu(g: dict[str, str]) -> str:
    return _("This course is graded with a GPU, but this attempt was graded on the CPU: %(reason)s.",
             reason=_cpu_reason(g["reason"]))
