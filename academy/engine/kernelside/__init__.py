"""Python that runs inside grading kernels, kept as real files (ruff checks them, a reader finds them).

The engine never imports these modules: it reads their text (``source``) and sends it, as
``python -c`` programs of the sandbox (``launcher``, ``zygote_main``, each with ``tuning``) or as
the anti-cheat agent the grader executes in a kernel (``agent_code``).  They run in the lab's
interpreter, which has the standard library, IPython and ipykernel but nothing of the academy.
Values go in as literals on a last line the engine writes (``call``), never by editing the text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@cache
def source(name: str) -> str:
    """The text of ``kernelside/<name>.py``."""
    return (_HERE / f"{name}.py").read_text(encoding="utf-8")


def call(function: str, *args: str | int | list[str] | tuple[str, ...]) -> str:
    """A line of Python calling ``function`` with ``args`` written as literals (``repr``; tuples as lists)."""
    for arg in args:
        items = arg if isinstance(arg, list | tuple) else [arg]
        if not all(type(item) in (str, int) for item in items):
            raise TypeError(f"not a plain literal: {arg!r}")
    written = ", ".join(repr(list(arg) if isinstance(arg, tuple) else arg) for arg in args)
    return f"{function}({written})\n"
