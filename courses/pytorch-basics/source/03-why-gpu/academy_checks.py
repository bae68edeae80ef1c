"""Strict comparison helpers for nbgrader test cells: values that lie about equality fail.

A test such as ``assert mean([1, 2, 3]) == 2.0`` trusts the learner's object to answer
``==`` honestly.  A learner can return an object whose ``__eq__`` always says True, a
``float`` subclass that does the same, or one whose ``__sub__``/``__abs__`` make
``abs(x - 2.0) < 1e-9`` hold, and the test passes whatever the answer.  The helpers here
never ask the learner's object anything:

* the value must be of *exactly* the expected built-in type (``type(value) is float``; a
  subclass fails) or a genuine NumPy scalar or array (NumPy's own compiled types, which a
  notebook cannot fake), which is converted to plain Python values first;
* only then is it compared, with ``math.isclose`` on plain floats or ``==`` on plain
  built-in values, whose comparison code the learner cannot replace.

Using them (the file has no dependencies; NumPy is optional)::

    cp academy/engine/checks.py courses/<course>/source/<assignment>/academy_checks.py

nbgrader copies every non-notebook file of ``source/<assignment>/`` next to the notebook,
both in the released assignment and when grading, so a test cell can say::

    from academy_checks import check_close, check_equal
    check_close(mean([1, 2, 3]), 2.0)
    check_equal(sorted_words("b a"), ["a", "b"])

The grader checks from outside the kernel that the copy next to the notebook is still the
instructor's before every test (a notebook that rewrites it gets 0 for the later tests),
and its integrity probe reports functions of this module replaced by notebook code.
Import it inside the test cell itself, so a binding made by the notebook earlier does not
matter.  See docs/anticheat.md.
"""

from __future__ import annotations

import math
import sys

__all__ = ["check_array_close", "check_close", "check_equal", "check_true", "plain"]

# Captured when the module is imported (inside a test cell, after the grader restored the
# built-ins): later changes to ``builtins`` by the notebook do not reach these names.
_type, _len, _float, _int, _repr, _range, _sorted = type, len, float, int, repr, range, sorted
_bool, _complex, _set, _map = bool, complex, set, map
_tget = type.__getattribute__  # reads a class's own attributes, bypassing any metaclass trickery
_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for every class written in Python, never for compiled types


def _pure_isclose(a: float, b: float, *, rel_tol: float, abs_tol: float) -> bool:
    """``math.isclose`` in plain float arithmetic (used if ``math.isclose`` is not the genuine one)."""
    if a == b:
        return True
    if a != a or b != b or a in (_INF, -_INF) or b in (_INF, -_INF):  # NaN or an infinity
        return False
    diff = a - b if a > b else b - a
    size = max(a if a >= 0 else -a, b if b >= 0 else -b)
    return diff <= rel_tol * size or diff <= abs_tol


_INF = float("inf")
# math.isclose on plain floats, unless the notebook replaced it before this module was imported.
_isclose = math.isclose if type(math.isclose) is type(len) else _pure_isclose


def _fail(message: str) -> None:
    raise AssertionError(message)


def _describe(value: object) -> str:
    cls = _type(value)
    module, name = _tget(cls, "__module__"), _tget(cls, "__qualname__")
    return name if module == "builtins" else f"{module}.{name}"


def _compiled(cls: type) -> bool:
    """True for types implemented in C (built-ins, NumPy's scalars and arrays), which Python code cannot make."""
    return not (_tget(cls, "__flags__") & _HEAPTYPE)


def _numpy_kind(value: object) -> str | None:
    """``"float"``, ``"int"``, ``"bool"``, ``"complex"``, ``"array"`` for genuine NumPy objects, else None."""
    cls = _type(value)
    if not _compiled(cls) or _tget(cls, "__module__") != "numpy":
        return None
    name = _tget(cls, "__name__")
    if name == "ndarray":
        return "array"
    if name in ("float16", "float32", "float64", "longdouble", "double", "single", "half"):
        return "float"
    if name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "intc", "intp", "uintc",
                "uintp", "longlong", "ulonglong", "short", "ushort", "byte", "ubyte", "long", "ulong"):
        return "int"
    if name in ("bool", "bool_"):
        return "bool"
    if name in ("complex64", "complex128", "clongdouble", "cdouble", "csingle"):
        return "complex"
    return None


def plain(value: object, *, _depth: int = 0) -> object:
    """``value`` as plain built-in data, or AssertionError if any part of it is not genuine.

    Exact built-in scalars stay as they are; genuine NumPy scalars become ``float``/``int``/
    ``bool``/``complex`` and arrays nested lists; lists, tuples, dicts, sets and frozensets
    are rebuilt from their plain parts.  Subclasses of built-in types and any other object
    (including lookalikes of NumPy types defined in the notebook) are refused.
    """
    if _depth > 50:
        _fail("value is nested too deeply to check")
    cls = _type(value)
    if cls in _PLAIN_SCALARS:
        return value
    kind = _numpy_kind(value)
    if kind == "float":
        return _float(value)
    if kind == "int":
        return _int(value)
    if kind == "bool":
        return _bool(value)
    if kind == "complex":
        return _complex(value)
    if kind == "array":
        return plain(value.tolist(), _depth=_depth + 1)
    if cls is list:
        return [plain(item, _depth=_depth + 1) for item in value]
    if cls is tuple:
        return tuple(plain(item, _depth=_depth + 1) for item in value)
    if cls in (set, frozenset):
        return cls(plain(item, _depth=_depth + 1) for item in value)
    if cls is dict:
        return {plain(key, _depth=_depth + 1): plain(item, _depth=_depth + 1) for key, item in value.items()}
    _fail(f"expected plain data, got a {_describe(value)} object")
    return None  # unreachable


def _same_types(value: object, expected: object, where: str) -> None:
    """Both plain: the same exact type at every level (int vs float is a difference)."""
    if _type(value) is not _type(expected):
        _fail(f"{where}: expected a {_describe(expected)}, got a {_describe(value)}")
    if _type(value) in (list, tuple):
        if _len(value) != _len(expected):
            _fail(f"{where}: expected {_len(expected)} items, got {_len(value)}")
        for index in _range(_len(value)):
            _same_types(value[index], expected[index], f"{where}[{index}]")
    elif _type(value) is dict:
        if _set(value) != _set(expected):
            _fail(f"{where}: expected keys {_sorted(_map(_repr, expected))}, got {_sorted(_map(_repr, value))}")
        for key in expected:
            _same_types(value[key], expected[key], f"{where}[{key!r}]")


def check_equal(value: object, expected: object, *, same_type: bool = True) -> None:
    """Assert that ``value`` equals ``expected`` exactly, as plain data of the same types.

    ``same_type=False`` lets ``2`` equal ``2.0`` (still plain values only).
    """
    got, want = plain(value), plain(expected)
    if same_type:
        _same_types(got, want, "value")
    if got != want:  # plain built-ins: their == cannot be replaced by the notebook
        _fail(f"expected {want!r}, got {got!r}")


def check_close(value: object, expected: float, *, rel_tol: float = 1e-9, abs_tol: float = 1e-12,
                same_type: bool = True) -> None:
    """Assert that ``value`` is a plain number close to ``expected`` (``math.isclose``).

    With ``same_type`` (the default) the value must have exactly the type of ``expected``
    after NumPy scalars are converted (``float`` for ``2.0``); ``same_type=False`` also
    accepts an ``int`` where a ``float`` is expected.  ``bool`` is never a number here.
    """
    got, want = plain(value), plain(expected)
    if _type(want) not in (int, float) or _type(got) not in (int, float):
        _fail(f"expected a number like {want!r}, got a {_describe(value)}")
    if same_type and _type(got) is not _type(want):
        _fail(f"expected a {_describe(want)}, got a {_describe(got)} ({got!r})")
    if not _isclose(_float(got), _float(want), rel_tol=rel_tol, abs_tol=abs_tol):
        _fail(f"expected {want!r}, got {got!r}")


def check_array_close(value: object, expected: object, *, rel_tol: float = 1e-7, abs_tol: float = 1e-9) -> None:
    """Assert that ``value`` (a NumPy array or nested list of numbers) matches ``expected`` element-wise."""
    got, want = plain(value), plain(expected)

    def walk(a: object, b: object, where: str) -> None:
        if _type(b) is list:
            if _type(a) is not list or _len(a) != _len(b):
                _fail(f"{where}: expected {_len(b)} items, got {_repr(a)[:80]}")
            for index in _range(_len(b)):
                walk(a[index], b[index], f"{where}[{index}]")
            return
        if _type(a) not in (int, float) or _type(b) not in (int, float):
            _fail(f"{where}: expected a number, got {_repr(a)[:80]}")
        if not _isclose(_float(a), _float(b), rel_tol=rel_tol, abs_tol=abs_tol):
            _fail(f"{where}: expected {b!r}, got {a!r}")

    walk(got, want, "value")


def check_true(condition: object, message: str = "check failed") -> None:
    """Assert that ``condition`` is the genuine ``True`` (not merely truthy)."""
    if condition is not True:
        _fail(message)


if __name__ == "__main__":  # pragma: no cover - a quick self-test: python checks.py
    class _Liar(float):
        def __eq__(self, other: object) -> bool:
            return True

    check_close(2.0, 2.0)
    for bad in (_Liar(0.0),):
        try:
            check_close(bad, 2.0)
        except AssertionError:
            pass
        else:
            sys.exit("a float subclass passed")
    print("ok")
