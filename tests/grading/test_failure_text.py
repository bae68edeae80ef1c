"""A failed test's message in words a learner can act on (``academy.grading.failure_text``).

The error lines come from the grader's own ``_error_text`` over outputs built from real Python
exceptions, so a change of wording on either side fails here.
"""

from __future__ import annotations

import re
import traceback
from typing import Any

import pytest
from flask import Flask
from flask_babel import force_locale
from nbformat.v4 import new_code_cell, new_output

from academy.engine.scores import _error_text
from academy.grading.failure_text import describe_failure

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def error_line(code: str) -> str:
    """The grader's error line for ``code`` raising, as a kernel would report it."""
    try:
        exec(compile(code, "<cell>", "exec"), {})
    except BaseException as exc:  # noqa: BLE001 - any error a test cell can raise
        lines = traceback.format_exception(exc)
        output = new_output("error", ename=type(exc).__name__, evalue=str(exc), traceback=lines)
    else:
        raise AssertionError(f"{code!r} did not fail")
    text = _error_text(new_code_cell(outputs=[output]))
    assert text
    return text


CASES = [
    ("assert 1 + 1 == 3", "테스트"),
    ("assert 0.5 > 1, '불량률은 0과 1 사이여야 합니다.'", "불량률은 0과 1 사이여야 합니다."),
    ("raise NotImplementedError()", "NotImplementedError"),
    ("defect_rate(3, 10)", "'defect_rate'"),
    ("import no_such_library_here", "no_such_library_here"),
    ("1 / 0", "0"),
    ("[1, 2][5]", "index out of range"),
    ("{'a': 1}['b']", "'b'"),
    ("len(5)", "len()"),
    ("int('열')", "int()"),
    ("None.shape", "shape"),
]


@pytest.fixture
def ctx(app: Flask) -> Any:
    with app.test_request_context():
        yield


@pytest.mark.parametrize(("code", "kept"), CASES)
def test_common_failures_read_in_korean(ctx: Any, code: str, kept: str) -> None:
    with force_locale("ko"):
        text = describe_failure(error_line(code))
    assert HANGUL.search(text), text
    assert kept in text, text  # the specific part (name, message, key) is not lost


@pytest.mark.parametrize(("line", "words"), [
    ("CellTimeoutError: the test ran out of time", "시간"),
    ("DeadKernelError: the kernel died in x.ipynb: cell 'a'", "메모리"),
    ("NotRun: not run because the kernel died", "메모리"),
    ("stderr: Traceback ...", "오류"),
    ("SyntaxError: invalid syntax", "문법"),
])
def test_grader_lines_read_in_korean(ctx: Any, line: str, words: str) -> None:
    with force_locale("ko"):
        assert words in describe_failure(line)


def test_unknown_lines_are_shown_unchanged_and_nothing_is_nothing(ctx: Any) -> None:
    assert describe_failure("RuntimeError: 모델이 수렴하지 않았습니다") == "RuntimeError: 모델이 수렴하지 않았습니다"
    assert describe_failure(None) == "" and describe_failure("") == ""


def test_english_readers_get_english(ctx: Any) -> None:
    with force_locale("en"):
        assert describe_failure(error_line("raise NotImplementedError()")).startswith("The answer is not written yet")
