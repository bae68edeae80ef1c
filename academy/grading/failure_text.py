"""A failed test's message, as a learner can act on it, in the reader's language.

The grader keeps a failed test's last error as one line, ``Name: value`` (``AssertionError:
불량률은 0과 1 사이여야 합니다``, ``NameError: name 'rate' is not defined``, ``NotImplementedError``)
or ``stderr: ...``.  ``describe_failure`` turns the common ones into a sentence that says what
to do; the instructor's own assertion message is shown as written (courses write them in the
learners' language), and anything it does not recognise is shown unchanged.  Templates use it
as the ``failure`` filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask_babel import gettext as _

_Describe = Callable[[re.Match[str]], str]
_RULES: list[tuple[re.Pattern[str], _Describe]] = []


def _rule(pattern: str) -> Callable[[_Describe], _Describe]:
    def register(fn: _Describe) -> _Describe:
        _RULES.append((re.compile(pattern, re.S), fn))
        return fn

    return register


def describe_failure(text: str | None) -> str:
    """The learner-facing sentence for a failed test's error line ("" when there is none)."""
    if not text:
        return ""
    line = text.strip()
    for pattern, describe in _RULES:
        match = pattern.fullmatch(line)
        if match:
            return describe(match)
    return line


@_rule(r"AssertionError:?\s*")
def _bare_assert(m: re.Match[str]) -> str:
    return _("A check of this test failed: your result is not what the test expects.")


@_rule(r"AssertionError: (?P<message>.+)")
def _assert(m: re.Match[str]) -> str:
    return m["message"].strip()


@_rule(r"NotImplementedError(?::.*)?")
def _not_written(m: re.Match[str]) -> str:
    return _("The answer is not written yet: replace raise NotImplementedError() with your code.")


@_rule(r"NameError: name '(?P<name>[^']+)' is not defined")
def _name(m: re.Match[str]) -> str:
    return _("'%(name)s' is not defined. Check its spelling, and that the cell defining it comes first and runs "
             "without an error.", name=m["name"])


@_rule(r"(?P<kind>ModuleNotFoundError|ImportError): (?P<message>.+)")
def _import(m: re.Match[str]) -> str:
    return _("An import failed (%(message)s). Use only the libraries of the lab environment.",
             message=m["message"].strip())


@_rule(r"ZeroDivisionError: .*")
def _zero(m: re.Match[str]) -> str:
    return _("Your code divided by zero. Check the case where a count or total is 0.")


@_rule(r"(?P<kind>TypeError|ValueError|IndexError|KeyError|AttributeError): (?P<message>.+)")
def _python_error(m: re.Match[str]) -> str:
    kinds = {
        "TypeError": _("A value has the wrong type"),
        "ValueError": _("A value is not acceptable"),
        "IndexError": _("An index is out of range"),
        "KeyError": _("A key or column does not exist"),
        "AttributeError": _("An attribute or method does not exist"),
    }
    return f"{kinds[m['kind']]}: {m['message'].strip()}"


@_rule(r"(?:IndentationError|SyntaxError)(?::.*)?")
def _syntax(m: re.Match[str]) -> str:
    return _("The code has a syntax error (for example a missing bracket or wrong indentation), so the test "
             "could not run.")


@_rule(r"CellTimeoutError(?::.*)?")
def _timeout(m: re.Match[str]) -> str:
    return _("The test ran out of time: your code takes too long (perhaps an endless loop).")


@_rule(r"(?:DeadKernelError|NotRun)(?::.*)?")
def _dead(m: re.Match[str]) -> str:
    return _("The test could not run: your code stopped the notebook (it crashed or used too much memory).")


@_rule(r"stderr: .*")
def _stderr(m: re.Match[str]) -> str:
    return _("The test printed an error message. Run the notebook in your lab to see it.")
