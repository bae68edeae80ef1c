"""Tamper detection for autograding: canaries, an integrity probe, static checks and file checks.

Plain nbgrader runs the learner's cells and the instructor's tests in one kernel and gives
full points to any test cell that ends without an error.  Everything in that kernel is the
learner's to change: built-in functions, IPython's machinery (AST and input transformers,
event callbacks, exception handlers, ``showtraceback``), library functions the tests
call, files in the working directory.  ``docs/anticheat.md`` lists the attacks and what
stops each.  This module holds the grader's side of the defences; ``GuardedExecute`` in
``academy.grading.pipeline`` calls it around every cell.

Static checks (``static_findings``)
    Before anything runs, the learner's cells (nbgrader ``solution`` cells and unmarked
    cells) are parsed with ``ast`` (IPython syntax turned into Python first, syntax errors
    tolerated) and suspicious constructs become *flags* with the cell and line.  They
    never cost points by themselves.

Integrity agent (``AGENT_SOURCE``)
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

Canary (``canary_source``)
    Before each autograded test cell the grader runs, through the client and never as a
    notebook cell, the test's own source followed by ``assert False, "<nonce>"`` (a fresh
    random nonce each time).  It must fail with that nonce.  If it reports success, or a
    different error while the real test then passes, something between the request and the
    interpreter rewrote, blanked or excused the cell: that test and every later test get 0
    and the submission is flagged.

Working-directory files (``WorkdirWatch``)
    The instructor's files that nbgrader copies next to the notebook (helper modules, data)
    are compared, from outside the sandbox, with the course's source before every test;
    a changed helper module (``.py``) is tampering, other changed files are flagged.

What cannot be prevented inside the kernel is detected and flagged; ``flags`` end up in
``GradeResult.flags`` and the gradebook's "check" marker.  A determined learner can still
defeat the agent and the canary from inside the kernel (see docs/anticheat.md).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

__all__ = [
    "AGENT_SOURCE",
    "CRITICAL_MODULES",
    "CellFacts",
    "Finding",
    "KernelGuard",
    "WorkdirWatch",
    "canary_source",
    "canary_verdict",
    "cell_facts",
    "is_instructor_cell",
    "is_learner_cell",
    "is_test_cell",
    "new_nonce",
    "static_findings",
    "top_level_names",
]

TAMPERED = "a check that must fail passed: the kernel was tampered with"
"""The flag (and problem) text when a canary shows that the kernel no longer runs tests as written."""

CRITICAL_MODULES = frozenset({
    "builtins", "math", "cmath", "operator", "numbers", "decimal", "fractions", "statistics", "functools",
    "unittest", "numpy", "pandas", "torch", "sklearn", "academy_checks",
})
"""Modules whose functions tests rely on: a notebook function found in them zeroes the later tests."""

MAX_STATIC_FINDINGS = 30
"""Static findings kept per notebook (the rest is summarised in one line)."""


def new_nonce() -> str:
    """A fresh unguessable token (never written anywhere the kernel can read)."""
    return secrets.token_hex(12)


# --- cells --------------------------------------------------------------------------


def _nbgrader(cell: Any) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def is_test_cell(cell: Any) -> bool:
    """An autograded test: an nbgrader grade cell with code that is not an answer."""
    meta = _nbgrader(cell)
    return (cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")
            and bool(meta.get("grade_id")))


def is_instructor_cell(cell: Any) -> bool:
    """A code cell whose source nbgrader restores from the gradebook (read-only or test cell)."""
    meta = _nbgrader(cell)
    if cell.get("cell_type") != "code" or not meta.get("grade_id") or meta.get("solution"):
        return False
    return bool(meta.get("grade") or meta.get("locked"))


def is_learner_cell(cell: Any) -> bool:
    """A code cell the learner wrote: an answer (``solution``) or a cell without nbgrader marks."""
    return cell.get("cell_type") == "code" and not is_instructor_cell(cell)


def _cell_label(cell: Any, index: int) -> str:
    grade_id = _nbgrader(cell).get("grade_id")
    return repr(grade_id) if grade_id else str(index + 1)


# --- Python source of a cell -----------------------------------------------------------


_MAGIC_LINE = re.compile(r"^\s*(%|!)")


def python_source(source: str) -> str:
    """The cell as plain Python: IPython's own transformation, else magics and shell lines blanked."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - fall back to a plain textual clean-up
        return "\n".join("" if _MAGIC_LINE.match(line) else line for line in source.splitlines()) + "\n"


def parse_tolerant(source: str, *, attempts: int = 20) -> ast.Module | None:
    """``ast.parse`` that blanks the offending line of a syntax error and tries again."""
    lines = source.splitlines()
    for _ in range(attempts):
        try:
            return ast.parse("\n".join(lines) + "\n")
        except SyntaxError as exc:
            number = (exc.lineno or 0) - 1
            if not 0 <= number < len(lines) or not lines[number].strip():
                return None
            lines[number] = ""
        except (ValueError, RecursionError, MemoryError):
            return None
    return None


def top_level_names(tree: ast.Module | None) -> set[str]:
    """Names a cell binds at module level (assignments, definitions, imports)."""
    names: set[str] = set()
    if tree is None:
        return names

    def targets(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Tuple | ast.List):
            for elt in node.elts:
                targets(elt)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                targets(target)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets(node.target)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith | ast.If | ast.Try):
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    names.add(child.id)
                elif isinstance(child, ast.FunctionDef | ast.ClassDef):
                    names.add(child.name)
    return names


@dataclass(frozen=True)
class CellFacts:
    """What the grader knows about an instructor cell before running it."""

    loads: tuple[str, ...]  # global names it reads
    mentions: frozenset[str]  # every identifier and attribute name in it
    binds: tuple[str, ...]  # names it binds at top level
    trailing_expression: bool | None  # whether it ends with an expression (None: unknown)
    cell_magic: bool  # starts with %% (no canary: appending code would change the magic's body)


def cell_facts(source: str) -> CellFacts:
    """Static facts about an instructor cell (used for the probe, canary and partial credit)."""
    cell_magic = source.lstrip().startswith("%%")
    tree = parse_tolerant(python_source(source))
    if tree is None:
        return CellFacts((), frozenset(), (), None, cell_magic)
    loads: list[str] = []
    mentions: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            mentions.add(node.id)
            if isinstance(node.ctx, ast.Load) and node.id not in loads:
                loads.append(node.id)
        elif isinstance(node, ast.Attribute):
            mentions.add(node.attr)
        elif isinstance(node, ast.alias):
            mentions.update(node.name.split("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            mentions.update(node.module.split("."))
    trailing = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    return CellFacts(tuple(loads), frozenset(mentions), tuple(sorted(top_level_names(tree))), trailing, cell_magic)


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


# --- static checks --------------------------------------------------------------------


_SHADOWED_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "callable", "dict", "divmod", "enumerate", "filter", "float", "format",
    "getattr", "hasattr", "hash", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max",
    "min", "next", "pow", "print", "range", "repr", "reversed", "round", "set", "sorted", "str", "sum",
    "tuple", "type", "zip", "open", "AssertionError", "Exception",
})
_VALUE_BASES = frozenset({"float", "int", "complex", "str", "bytes", "list", "tuple", "bool", "ndarray",
                          "float64", "float32", "int64", "generic"})
_CONSTANT_DUNDERS = frozenset({"__eq__", "__ne__", "__hash__", "__lt__", "__le__", "__gt__", "__ge__",
                               "__sub__", "__rsub__", "__abs__", "__round__", "__float__", "__contains__",
                               "__bool__"})
_IPYTHON_ATTRS = {
    "ast_transformers": "installs an AST transformer (get_ipython().ast_transformers)",
    "input_transformers_cleanup": "installs an input transformer (input_transformers_cleanup)",
    "input_transformers_post": "installs an input transformer (input_transformers_post)",
    "input_transformer_manager": "touches IPython's input transformer manager",
    "set_custom_exc": "installs a custom exception handler (set_custom_exc)",
    "custom_exceptions": "changes IPython's custom exception handling",
    "showtraceback": "replaces or calls IPython's showtraceback",
    "_showtraceback": "replaces IPython's _showtraceback",
    "showsyntaxerror": "replaces IPython's showsyntaxerror",
    "display_trap": "touches IPython's display trap",
    "ast_node_interactivity": "changes which expressions IPython displays (ast_node_interactivity)",
    "run_cell": "touches IPython's run_cell",
    "run_cell_async": "touches IPython's run_cell_async",
    "transform_cell": "touches IPython's transform_cell",
    "run_ast_nodes": "touches IPython's run_ast_nodes",
    "run_code": "touches IPython's run_code",
    "user_expressions": "touches the kernel's user_expressions",
    "do_execute": "touches the kernel's do_execute",
    "execute_request": "touches the kernel's execute_request",
}
_SYS_HOOKS = frozenset({"displayhook", "excepthook", "__displayhook__", "__excepthook__", "unraisablehook",
                        "breakpointhook", "stdout", "stderr", "modules", "meta_path", "path_hooks"})
_IO_CALLS = frozenset({"open", "Path", "PurePath", "PosixPath", "listdir", "scandir", "walk", "glob", "iglob",
                       "read_csv", "read_table", "read_excel", "read_json", "read_parquet", "read_pickle",
                       "loadtxt", "genfromtxt", "load", "fromfile", "chdir", "stat", "lstat", "exists", "isfile",
                       "isdir", "system", "popen", "Popen", "run", "check_output", "call", "copy", "copyfile",
                       "copytree", "rmtree", "remove", "unlink", "symlink", "readlink", "realpath", "iterdir",
                       "read_text", "read_bytes", "connect"})
_FRAME_ATTRS = frozenset({"f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame",
                          "__subclasses__", "__globals__", "f_code"})


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, ``get_ipython()`` for a call to it, else ``''``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        parts.append(node.func.id + "()")
    else:
        return ""
    return ".".join(reversed(parts))


def _constant_body(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> ast.Constant | None:
    if isinstance(node, ast.Lambda):
        return node.body if isinstance(node.body, ast.Constant) else None
    body = [stmt for stmt in node.body
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))]  # docstrings
    if len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Constant):
        return body[0].value
    return None


def _outside_cwd(path: str) -> bool:
    path = path.strip()
    return (path.startswith(("/", "~", "\\")) or path == ".." or "../" in path or "..\\" in path
            or path.endswith("/..") or bool(re.match(r"^[A-Za-z]:[\\/]", path)))


class _StaticVisitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self.ipython_names: set[str] = set()
        self.class_stack: list[str] = []

    def add(self, node: ast.AST, text: str) -> None:
        self.found.append((getattr(node, "lineno", 0), text))

    # builtins
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.partition(".")[0]
            if top == "builtins":
                self.add(node, "imports builtins")
            elif top == "ctypes":
                self.add(node, "imports ctypes (raw memory access)")
            elif top == "gc":
                self.add(node, "imports gc (the garbage collector can reach the grader's objects)")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        top = (node.module or "").partition(".")[0]
        if top == "builtins":
            self.add(node, "imports from builtins")
        elif top == "ctypes":
            self.add(node, "imports ctypes (raw memory access)")
        elif top == "IPython":
            self.add(node, f"imports from {node.module} (IPython internals)")
        elif top == "inspect" and any(alias.name in ("currentframe", "stack", "getouterframes", "getmembers")
                                      for alias in node.names):
            self.add(node, "imports frame inspection from inspect")
        self.generic_visit(node)

    def _store_target(self, target: ast.AST, node: ast.AST) -> None:
        if isinstance(target, ast.Attribute):
            base = _dotted(target.value)
            if base in ("builtins", "__builtins__") or base.endswith(".__builtins__"):
                self.add(node, f"sets {base}.{target.attr}")
            elif base == "sys" and target.attr in _SYS_HOOKS:
                self.add(node, f"sets sys.{target.attr}")
            elif target.attr in _IPYTHON_ATTRS and ("get_ipython()" in base or base in self.ipython_names):
                self.add(node, _IPYTHON_ATTRS[target.attr])
            elif base and target.attr in ("__eq__", "__ne__", "__hash__", "__class__", "__code__"):
                self.add(node, f"sets {base}.{target.attr} at run time")
            elif base and (base.split(".")[0] in ("np", "numpy", "pd", "pandas", "math", "operator")
                           or base.split(".")[0] in CRITICAL_MODULES):
                self.add(node, f"replaces {base}.{target.attr}")
        elif isinstance(target, ast.Subscript):
            base = _dotted(target.value)
            if base in ("__builtins__", "builtins.__dict__", "sys.modules") or base.endswith("__builtins__"):
                self.add(node, f"assigns into {base}[...]")
            elif (isinstance(target.value, ast.Call) and _dotted(target.value.func) == "vars"
                  and target.value.args and _dotted(target.value.args[0]) in ("builtins", "__builtins__")):
                self.add(node, "assigns into vars(builtins)[...]")
        elif isinstance(target, ast.Name):
            if target.id == "__builtins__":
                self.add(node, "rebinds __builtins__")
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._store_target(elt, node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._store_target(target, node)
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Call) \
                    and _dotted(node.value.func) == "get_ipython":
                self.ipython_names.add(target.id)
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Lambda):
                self._callable_named(target.id, node, node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._store_target(node.target, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._store_target(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._store_target(target, node)
        self.generic_visit(node)

    def _callable_named(self, name: str, node: ast.AST, func: ast.AST) -> None:
        if self.class_stack:
            if name in _CONSTANT_DUNDERS and isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                constant = _constant_body(func)
                if constant is not None:
                    self.add(node, f"class {self.class_stack[-1]} defines {name} that always returns "
                                   f"{constant.value!r}")
        elif name in _SHADOWED_BUILTINS:
            self.add(node, f"defines its own `{name}`, hiding the built-in")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._callable_named(node.name, node, node)
        saved, self.class_stack = self.class_stack, []
        self.generic_visit(node)
        self.class_stack = saved

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            name = _dotted(base).rpartition(".")[2]
            if name in _VALUE_BASES:
                self.add(node, f"class {node.name} subclasses {_dotted(base)}")
        if node.name in _SHADOWED_BUILTINS:
            self.add(node, f"defines its own `{node.name}`, hiding the built-in")
        self.class_stack.append(node.name)
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Lambda):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self._callable_named(target.id, stmt, stmt.value)
            self.visit(stmt)
        self.class_stack.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in _FRAME_ATTRS:
            self.add(node, f"reads .{node.attr} (interpreter frames or internals)")
        elif node.attr in _IPYTHON_ATTRS:
            base = _dotted(node.value)
            if "get_ipython()" in base or base.split(".")[0] in self.ipython_names:
                self.add(node, _IPYTHON_ATTRS[node.attr])
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        short = name.rpartition(".")[2]
        base = name.rpartition(".")[0]
        if name in ("exec", "eval", "compile", "builtins.exec", "builtins.eval") and node.args:
            self.add(node, f"runs code from a string ({short}())")
        elif name in ("__import__", "importlib.import_module") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and str(arg.value).partition(".")[0] in ("builtins", "ctypes", "gc"):
                self.add(node, f"imports {arg.value} dynamically")
        elif name in ("setattr", "delattr") and node.args:
            target = _dotted(node.args[0])
            if target in ("builtins", "__builtins__") or target.split(".")[0] in CRITICAL_MODULES \
                    or target.split(".")[0] in ("np", "pd"):
                self.add(node, f"{name}() on {target}")
        elif name in ("sys.settrace", "sys.setprofile", "threading.settrace", "threading.setprofile"):
            self.add(node, f"calls {name}")
        elif name in ("os._exit", "os.abort", "os.kill", "os.killpg", "sys.exit", "exit", "quit") \
                or (short in ("_exit", "kill", "killpg") and base.endswith("os")):
            self.add(node, f"calls {name}()")
        elif short in ("get_objects", "get_referrers", "get_referents") and base.endswith("gc"):
            self.add(node, f"calls {name}() (reaches objects it was not given)")
        elif name in ("sys._getframe", "inspect.currentframe", "inspect.stack", "inspect.getouterframes") \
                or short == "_getframe":
            self.add(node, f"calls {name}() (inspects the caller's frames)")
        elif short == "register" and base.endswith("events") and ("get_ipython()" in base
                                                                   or base.split(".")[0] in self.ipython_names):
            self.add(node, f"registers an IPython event callback ({name})")
        elif short in _IO_CALLS:
            for arg in list(node.args[:2]) + [kw.value for kw in node.keywords]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _outside_cwd(arg.value):
                    self.add(node, f"{name}() on a path outside its working directory: {arg.value[:80]!r}")
                    break
            if short == "open" and node.args and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).endswith(".py"):
                modes = [a for a in node.args[1:2]] + [kw.value for kw in node.keywords if kw.arg == "mode"]
                if any(isinstance(m, ast.Constant) and any(c in str(m.value) for c in "wax+") for m in modes):
                    self.add(node, f"writes a Python module ({node.args[0].value!r})")
        self.generic_visit(node)


def static_findings(nb: Any, notebook: str) -> list[str]:
    """Flags for suspicious constructs in the learner's cells of ``nb`` (nothing is executed)."""
    findings: list[str] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if not is_learner_cell(cell):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if not source.strip():
            continue
        if source.lstrip().startswith("%%"):
            head = source.lstrip().splitlines()[0]
            if head.split()[0] not in ("%%time", "%%timeit", "%%capture", "%%prun"):
                if head.split()[0] in ("%%writefile", "%%file") and head.rstrip().endswith(".py"):
                    findings.append(f"{notebook}: cell {_cell_label(cell, index)} line 1: writes a Python module "
                                    f"({head.split()[-1]!r})")
                continue
        tree = parse_tolerant(python_source(source))
        if tree is None:
            continue
        visitor = _StaticVisitor()
        try:
            visitor.visit(tree)
        except RecursionError:
            findings.append(f"{notebook}: cell {_cell_label(cell, index)}: too deeply nested to check")
            continue
        seen: set[tuple[int, str]] = set()
        for line, text in sorted(visitor.found):
            if (line, text) in seen:
                continue
            seen.add((line, text))
            findings.append(f"{notebook}: cell {_cell_label(cell, index)} line {line}: {text} (static check)")
    if len(findings) > MAX_STATIC_FINDINGS:
        extra = len(findings) - MAX_STATIC_FINDINGS
        findings = findings[:MAX_STATIC_FINDINGS] + [f"{notebook}: {extra} more static findings"]
    return findings


# --- instructor files in the working directory ------------------------------------------


def _hash_file(path: Path, limit: int) -> str | None:
    """sha256 of a regular file opened without following links or blocking, None if it is not one."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > limit:
            return f"size:{info.st_size}"
        digest = hashlib.sha256()
        with os.fdopen(fd, "rb", closefd=False) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


@dataclass
class WorkdirWatch:
    """The instructor's files next to the notebook, checked against the course source from outside the kernel."""

    workdir: Path
    source: Path
    max_bytes: int = 64 * 1024 * 1024
    expected: dict[str, str] = field(default_factory=dict)
    _stat: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, workdir: Path, source: Path, ignore: Iterable[str] = ()) -> WorkdirWatch:
        import fnmatch

        watch = cls(Path(workdir), Path(source))
        if not watch.source.is_dir():
            return watch
        patterns = [*ignore, "*.ipynb"]
        for dirpath, dirnames, filenames in os.walk(watch.source):
            dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, p) for p in patterns)]
            for filename in filenames:
                if any(fnmatch.fnmatch(filename, p) for p in patterns):
                    continue
                path = Path(dirpath) / filename
                digest = _hash_file(path, watch.max_bytes)
                if digest is not None:
                    watch.expected[str(path.relative_to(watch.source))] = digest
        return watch

    @property
    def python_files(self) -> list[str]:
        return sorted(rel for rel in self.expected if rel.endswith(".py"))

    def drop_bytecode(self) -> None:
        """Remove cached bytecode of the instructor's modules, so a forged ``.pyc`` cannot stand in for them.

        Python trusts ``__pycache__/<module>.*.pyc`` when its recorded size and mtime match
        the source, both of which the notebook can read.  Links are not followed.
        """
        stems = {}
        for rel in self.python_files:
            folder, _, name = rel.rpartition("/")
            stems.setdefault(folder, set()).add(name[:-3])
        for folder, names in stems.items():
            try:
                fd = os.open(self.workdir / folder / "__pycache__",
                             os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                continue
            try:
                if not _inside(self.workdir / folder, self.workdir):
                    continue
                for entry in os.listdir(fd):
                    if entry.partition(".")[0] in names and entry.endswith(".pyc"):
                        with contextlib.suppress(OSError):
                            os.unlink(entry, dir_fd=fd)
            finally:
                os.close(fd)

    def changed(self) -> list[str]:
        """Relative paths of instructor files that differ from the source now (each reported once)."""
        self.drop_bytecode()
        changed = []
        for rel, digest in self.expected.items():
            if rel in self.reported:
                continue
            path = self.workdir / rel
            try:
                info = os.lstat(path)
                key = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
            except OSError:
                key = None
            if key is not None and self._stat.get(rel) == key:
                continue
            current = _hash_file(path, self.max_bytes) if key is not None and _inside(path.parent, self.workdir) \
                else None
            if current == digest and key is not None:
                self._stat[rel] = key
                continue
            self.reported.add(rel)
            changed.append(rel)
        return changed


# --- the kernel-side agent ------------------------------------------------------------------

AGENT_SOURCE = r'''
def _academy_install(modname, nonce, instructor_files):
    import builtins
    import dis
    import json
    import os
    import sys
    import threading
    import types

    from IPython import get_ipython

    ip = get_ipython()
    ns = ip.user_ns
    MISSING = object()
    FunctionType, MethodType, ModuleType, CodeType = (types.FunctionType, types.MethodType, types.ModuleType,
                                                     types.CodeType)
    tget = type.__getattribute__
    oget = object.__getattribute__
    mget = ModuleType.__getattribute__
    cwd = os.path.realpath(os.getcwd())
    try:
        cell_dir = os.path.dirname(ip.compile.get_code_name("pass", "pass", 0))
    except Exception:
        cell_dir = ""
    if not os.path.isabs(cell_dir):
        cell_dir = ""
    instructor_files = set(instructor_files)
    TRAP = {"exit", "quit", "get_ipython", "_", "__", "___"}
    VALUE_TYPES = (float, int, complex, str, bytes, list, tuple, bool)
    DUNDERS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__sub__", "__rsub__", "__abs__",
               "__round__", "__float__", "__contains__", "__bool__")
    SHELL = ("run_cell", "run_cell_async", "_run_cell", "run_ast_nodes", "run_code", "transform_cell",
             "transform_ast", "showtraceback", "_showtraceback", "showsyntaxerror", "CustomTB", "excepthook",
             "user_expressions", "should_run_async", "ev", "ex", "get_exception_only", "_get_exc_info",
             "_format_user_obj")
    KERNEL = ("do_execute", "execute_request", "send_response", "finish_metadata", "_publish_execute_input",
              "_publish_status")
    COMPILER = ("__call__", "ast_parse", "get_code_name", "format_code_name", "cache")
    MANAGER = ("transform_cell", "do_token_transforms", "do_one_token_transform", "check_complete")
    EVENTS = ("pre_run_cell", "post_run_cell", "pre_execute")

    def class_module(cls):
        try:
            return tget(cls, "__module__")
        except Exception:
            return None

    def method_state(obj, names):
        try:
            inst = dict(oget(obj, "__dict__"))
        except Exception:
            inst = {}
        classes = [(cls, {n: tget(cls, "__dict__").get(n, MISSING) for n in names}) for cls in type(obj).__mro__]
        return {n: inst.get(n, MISSING) for n in names}, classes

    kernel = getattr(ip, "kernel", None)
    session = getattr(kernel, "session", None)
    manager = ip.input_transformer_manager
    pristine = {
        "builtins": dict(vars(builtins)),
        "ns_builtins": ns.get("__builtins__", MISSING),
        "ns_shadows": {k: ns[k] for k in list(ns) if k in vars(builtins)},
        "ast_transformers": list(ip.ast_transformers),
        "input_transformers_post": list(ip.input_transformers_post),
        "manager": manager,
        "cleanup": list(manager.cleanup_transforms),
        "line": list(manager.line_transforms),
        "token": list(manager.token_transformers),
        "events_obj": ip.events,
        "events": {name: list(ip.events.callbacks.get(name, [])) for name in EVENTS},
        "post_execute": list(ip.events.callbacks.get("post_execute", [])),
        "custom_exceptions": ip.custom_exceptions,
        "shell": method_state(ip, SHELL),
        "kernel": method_state(kernel, KERNEL) if kernel is not None else None,
        "session": method_state(session, ("send", "serialize", "sign")) if session is not None else None,
        "compile": ip.compile,
        "compiler": method_state(ip.compile, COMPILER),
        "manager_methods": method_state(manager, MANAGER),
        "sys_displayhook": sys.displayhook,
        "sys_excepthook": sys.excepthook,
        "displayhook": ip.displayhook,
        "trap_hook": ip.display_trap.hook,
        "interactivity": ip.ast_node_interactivity,
        "trace": sys.gettrace(),
        "profile": sys.getprofile(),
        "thread_trace": getattr(threading, "_trace_hook", None),
        "thread_profile": getattr(threading, "_profile_hook", None),
        "modules": dict(sys.modules),
    }
    helpers = {}

    def code_file(obj):
        t = type(obj)
        if t is MethodType:
            obj = obj.__func__
            t = type(obj)
        if t is staticmethod or t is classmethod:
            obj = obj.__func__
            t = type(obj)
        if t is FunctionType:
            code = obj.__code__
            if type(code) is CodeType:
                return code.co_filename
        return None

    def cell_file(filename):
        return bool(filename) and (filename.startswith("<ipython-input")
                                   or bool(cell_dir) and filename.startswith(cell_dir + os.sep))

    def learner_file(filename):
        if not filename or not filename.startswith(cwd + os.sep):
            return False
        return os.path.relpath(filename, cwd) not in instructor_files

    def notebook_made(obj):
        filename = code_file(obj)
        if filename is not None:
            if cell_file(filename) or learner_file(filename):
                return True
            return filename.startswith("<") and type(obj) is FunctionType and obj.__module__ == "__main__"
        t = type(obj)
        if issubclass(t, type):
            return class_module(obj) == "__main__"
        return class_module(t) == "__main__"

    def shadows_installed(top):
        """Whether a module named ``top`` also exists outside the working directory (stdlib, site-packages)."""
        if top in getattr(sys, "stdlib_module_names", ()):
            return True
        try:
            import importlib.machinery

            path = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != cwd]
            return importlib.machinery.PathFinder.find_spec(top, path) is not None
        except Exception:
            return False

    def constant_return(func):
        if type(func) is not FunctionType or not cell_file(code_file(func)):
            return None
        try:
            ops = [(i.opname, i.argval) for i in dis.get_instructions(func)]
        except Exception:
            return None
        values = [arg for op, arg in ops if op in ("LOAD_CONST", "RETURN_CONST")]
        rest = [op for op, arg in ops
                if op not in ("LOAD_CONST", "RETURN_CONST", "RETURN_VALUE", "RESUME", "NOP", "CACHE")]
        if rest or len(values) != 1:
            return None
        return (values[0],)

    def class_problems(cls):
        found = []
        try:
            mro = tget(cls, "__mro__")
            name = tget(cls, "__name__")
        except Exception:
            return found
        for base in mro[1:]:
            if base in VALUE_TYPES or (class_module(base) == "numpy" and tget(base, "__name__") in ("ndarray",
                                                                                                 "generic")):
                found.append(f"class `{name}` defined in the notebook subclasses {tget(base, '__name__')}")
                break
        for klass in mro:
            if klass is object or class_module(klass) != "__main__":
                continue
            body = tget(klass, "__dict__")
            for dunder in DUNDERS:
                func = body.get(dunder)
                const = constant_return(func) if func is not None else None
                if const is not None:
                    found.append(f"class `{name}` defined in the notebook has {dunder} that always returns "
                                 f"{const[0]!r}")
        return found

    def restore_methods(obj, state, label, found):
        inst_saved, classes_saved = state
        try:
            inst = oget(obj, "__dict__")
        except Exception:
            inst = {}
        for name, value in inst_saved.items():
            if inst.get(name, MISSING) is not value:
                found.append(["core", f"{label}.{name} was replaced"])
                if value is MISSING:
                    inst.pop(name, None)
                else:
                    inst[name] = value
        known = []
        for cls, saved in classes_saved:
            known.append(cls)
            body = tget(cls, "__dict__")
            for name, value in saved.items():
                if body.get(name, MISSING) is not value:
                    found.append(["core", f"{label}.{name} was replaced (class {tget(cls, '__name__')})"])
                    try:
                        if value is MISSING:
                            type.__delattr__(cls, name)
                        else:
                            type.__setattr__(cls, name, value)
                    except Exception:
                        found.append(["tamper", f"{label}.{name} could not be restored"])
        if list(type(obj).__mro__) != known:
            found.append(["tamper", f"the class of {label} was changed"])

    def restore_list(current, saved, setter, text, found):
        if [id(x) for x in current] != [id(x) for x in saved]:
            found.append(["core", text])
            setter(list(saved))

    def section_builtins(req, found):
        bdict = builtins.__dict__
        for name, value in pristine["builtins"].items():
            if name not in TRAP and bdict.get(name, MISSING) is not value:
                found.append(["core", f"builtins.{name} was replaced"])
                bdict[name] = value
        if ns.get("__builtins__", MISSING) is not pristine["ns_builtins"]:
            found.append(["core", "__builtins__ was replaced in the notebook's namespace"])
            ns["__builtins__"] = pristine["ns_builtins"]

    def section_names(req, found):
        allowed = set(req.get("allowed", ()))
        for name in req.get("names", ()):
            if name not in pristine["builtins"] or name in allowed or name in TRAP:
                continue
            value = ns.get(name, MISSING)
            if value is MISSING or value is pristine["ns_shadows"].get(name, MISSING):
                continue
            if notebook_made(value):
                del ns[name]
                found.append(["restored", f"the notebook's own `{name}` hid the built-in {name}() that "
                              f"{req.get('cell', 'a test')} uses (the built-in was used)"])
        for name, value in list(helpers.items()):
            if ns.get(name, MISSING) is not value:
                found.append(["restored", f"the instructor's `{name}` was replaced by the notebook (restored)"])
                ns[name] = value

    def section_ipython(req, found):
        restore_list(ip.ast_transformers, pristine["ast_transformers"],
                     lambda v: setattr(ip, "ast_transformers", v),
                     "an AST transformer was installed (get_ipython().ast_transformers)", found)
        restore_list(ip.input_transformers_post, pristine["input_transformers_post"],
                     lambda v: setattr(ip, "input_transformers_post", v),
                     "an input transformer was installed (input_transformers_post)", found)
        if ip.input_transformer_manager is not pristine["manager"]:
            found.append(["core", "IPython's input transformer manager was replaced"])
            ip.input_transformer_manager = pristine["manager"]
        mgr = pristine["manager"]
        restore_list(mgr.cleanup_transforms, pristine["cleanup"], lambda v: setattr(mgr, "cleanup_transforms", v),
                     "an input transformer was installed (input_transformers_cleanup)", found)
        restore_list(mgr.line_transforms, pristine["line"], lambda v: setattr(mgr, "line_transforms", v),
                     "an input transformer was installed (line_transforms)", found)
        restore_list(mgr.token_transformers, pristine["token"], lambda v: setattr(mgr, "token_transformers", v),
                     "an input transformer was installed (token_transformers)", found)
        if ip.events is not pristine["events_obj"]:
            found.append(["core", "IPython's event manager was replaced"])
            ip.events = pristine["events_obj"]
        callbacks = ip.events.callbacks
        for name, saved in pristine["events"].items():
            restore_list(callbacks.get(name, []), saved, lambda v, n=name: callbacks.__setitem__(n, v),
                         f"a {name} callback was registered (get_ipython().events)", found)
        post = list(callbacks.get("post_execute", []))
        bad = [cb for cb in post if not any(cb is old for old in pristine["post_execute"]) and notebook_made(cb)]
        if bad:
            found.append(["core", "a post_execute callback from the notebook was registered"])
            callbacks["post_execute"] = [cb for cb in post if not any(cb is b for b in bad)]
        current = ip.custom_exceptions
        saved = pristine["custom_exceptions"]
        if type(current) is not tuple or len(current) != len(saved) or any(a is not b for a, b in zip(current, saved)):
            found.append(["core", "a custom exception handler was installed (set_custom_exc)"])
            ip.custom_exceptions = pristine["custom_exceptions"]
        restore_methods(ip, pristine["shell"], "IPython's shell", found)
        if kernel is not None:
            restore_methods(kernel, pristine["kernel"], "the kernel", found)
        if session is not None:
            restore_methods(session, pristine["session"], "the kernel's session", found)
        if ip.compile is not pristine["compile"]:
            found.append(["core", "IPython's compiler was replaced"])
            ip.compile = pristine["compile"]
        restore_methods(ip.compile, pristine["compiler"], "IPython's compiler", found)
        restore_methods(mgr, pristine["manager_methods"], "IPython's input transformer manager", found)

    def section_hooks(req, found):
        hooks = (
            ("sys.displayhook", sys.displayhook, pristine["sys_displayhook"], lambda v: setattr(sys, "displayhook", v)),
            ("sys.excepthook", sys.excepthook, pristine["sys_excepthook"], lambda v: setattr(sys, "excepthook", v)),
            ("IPython's displayhook", ip.displayhook, pristine["displayhook"], lambda v: setattr(ip, "displayhook", v)),
            ("IPython's display trap", ip.display_trap.hook, pristine["trap_hook"],
             lambda v: setattr(ip.display_trap, "hook", v)),
        )
        for label, current, saved, setter in hooks:
            if current is not saved:
                found.append(["core", f"{label} was replaced"])
                setter(saved)
        mode = ip.ast_node_interactivity
        if type(mode) is not str or mode != pristine["interactivity"]:
            shown = str.__repr__(mode) if type(mode) is str else "an object"
            found.append(["core", f"ast_node_interactivity was set to {shown}"])
            ip.ast_node_interactivity = pristine["interactivity"]
        if sys.gettrace() is not pristine["trace"]:
            found.append(["core", "a trace function was set (sys.settrace)"])
            sys.settrace(pristine["trace"])
        if sys.getprofile() is not pristine["profile"]:
            found.append(["core", "a profile function was set (sys.setprofile)"])
            sys.setprofile(pristine["profile"])
        if getattr(threading, "_trace_hook", None) is not pristine["thread_trace"]:
            found.append(["core", "a trace function was set for new threads (threading.settrace)"])
            threading.settrace(pristine["thread_trace"])
        if getattr(threading, "_profile_hook", None) is not pristine["thread_profile"]:
            found.append(["core", "a profile function was set for new threads (threading.setprofile)"])
            threading.setprofile(pristine["thread_profile"])

    def section_modules(req, found):
        for name, module in pristine["modules"].items():
            current = sys.modules.get(name, MISSING)
            if current is not MISSING and current is not module:
                found.append(["core", f"sys.modules[{name!r}] was replaced"])
                sys.modules[name] = module
        for name, module in list(sys.modules.items()):
            if name == "__main__" or name == modname:
                continue
            if not issubclass(type(module), ModuleType):
                if name not in pristine["modules"] and notebook_made(module):
                    found.append(["module", name, f"sys.modules[{name!r}] holds an object made by the notebook"])
                continue
            try:
                mdict = mget(module, "__dict__")
            except Exception:
                continue
            filename = mdict.get("__file__")
            own = filename if isinstance(filename, str) else ""
            if own and own.startswith(cwd + os.sep) and name not in pristine["modules"]:
                rel = os.path.relpath(own, cwd)
                if rel not in instructor_files and shadows_installed(name.partition(".")[0]):
                    found.append(["module", name, f"module `{name}` was loaded from {rel}, a file the notebook "
                                  "wrote into the working directory"])
            critical = name.partition(".")[0] in req.get("critical", ()) or (
                own.startswith(cwd + os.sep) and os.path.relpath(own, cwd) in instructor_files)
            for attr, value in list(mdict.items()):
                t = type(value)
                if t is FunctionType:
                    filename = value.__code__.co_filename
                    if filename != own and (cell_file(filename) or learner_file(filename)):
                        found.append(["patched", name, attr, critical,
                                      f"{name}.{attr} was replaced by code from the notebook"])
                elif t is ModuleType or t is MethodType:
                    continue
                elif issubclass(t, type):
                    if class_module(value) == "__main__":
                        found.append(["patched", name, attr, critical,
                                      f"{name}.{attr} was replaced by a class from the notebook"])
                    elif critical and class_module(value) == name:
                        for key, member in list(tget(value, "__dict__").items()):
                            target = member.fget if type(member) is property else member
                            if type(target) is not type and notebook_made(target):
                                found.append(["patched", name, key, True,
                                              f"{name}.{attr}.{key} was replaced by code from the notebook"])
                elif class_module(t) == "__main__":
                    found.append(["patched", name, attr, critical,
                                  f"{name}.{attr} was replaced by an object from the notebook"])

    def section_values(req, found):
        seen = set()
        for name, value in list(ns.items())[:5000]:
            if name.startswith("_"):
                continue
            cls = value if issubclass(type(value), type) else type(value)
            if id(cls) in seen or class_module(cls) != "__main__":
                continue
            seen.add(id(cls))
            for text in class_problems(cls):
                found.append(["value", text + ("" if cls is value else f" (the value of `{name}`)")])

    SECTIONS = (section_builtins, section_names, section_ipython, section_hooks, section_modules,
                section_values)

    def check(request):
        req = json.loads(request)
        found = []
        for section in SECTIONS:
            try:
                section(req, found)
            except Exception as exc:  # a bug or an odd object must not look like tampering
                found.append(["error", f"{section.__name__}: {type(exc).__name__}: {exc}"[:300]])
        return json.dumps({"nonce": req["nonce"], "found": found})

    def snapshot(request):
        req = json.loads(request)
        kept = []
        for name in req.get("names", ()):
            value = ns.get(name, MISSING)
            t = type(value)
            if value is not MISSING and (t in (FunctionType, MethodType, ModuleType, types.BuiltinFunctionType)
                                         or issubclass(t, type)):
                helpers[name] = value
                kept.append(name)
            else:
                helpers.pop(name, None)
        return json.dumps({"nonce": req["nonce"], "kept": kept})

    agent = ModuleType(modname)
    agent.check = check
    agent.snapshot = snapshot
    sys.modules[modname] = agent
    return json.dumps({"nonce": nonce, "cell_dir": cell_dir, "cwd": cwd})
'''


def _install_expression(modname: str, nonce: str, instructor_files: list[str]) -> str:
    namespace = "{'__name__': " + repr(modname) + "}"
    return (f"(lambda g: (exec({AGENT_SOURCE!r}, g), g['_academy_install']({modname!r}, {nonce!r}, "
            f"{instructor_files!r}))[1])({namespace})")


def _call_expression(modname: str, function: str, request: dict[str, Any]) -> str:
    return f"__import__('sys').modules[{modname!r}].{function}({json.dumps(request)!r})"


# --- talking to the kernel ---------------------------------------------------------------


@dataclass
class Finding:
    """One observation of the agent: ``kind`` is restored | tamper | module | patched | value."""

    kind: str
    text: str
    module: str = ""
    attr: str = ""
    critical: bool = False


class AgentUnavailable(RuntimeError):
    """The agent could not be installed in a fresh kernel: the grader's fault, never the learner's."""


class KernelTimeout(Exception):
    """A trusted request did not finish in time; ``interrupted`` tells whether an interrupt ended it."""

    def __init__(self, interrupted: bool) -> None:
        super().__init__("timeout")
        self.interrupted = interrupted


class KernelGuard:
    """The grader's side of the agent and the canaries for one kernel (one notebook).

    ``client`` is the nbclient ``NotebookClient`` (``kc``, ``km``); every request goes
    straight through the kernel client, so nothing it sends or receives reaches the
    notebook.
    """

    def __init__(self, client: Any, notebook: str, *, allowed: Iterable[str] = (), instructor_files: Iterable[str] = (),
                 interrupt_grace: float = 5.0) -> None:
        self.client = client
        self.notebook = notebook
        self.allowed = sorted(set(allowed))
        self.instructor_files = sorted(set(instructor_files))
        self.modname = "_" + secrets.token_hex(8)
        self.interrupt_grace = interrupt_grace
        self.installed = False
        self.timings: dict[str, float] = {"probe": 0.0, "canary": 0.0}
        self.counts: dict[str, int] = {"probe": 0, "canary": 0}

    # low level ----------------------------------------------------------------------------

    async def request(self, code: str, *, silent: bool, store_history: bool = False,
                      user_expressions: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send one execute request; return its reply, dropping every IOPub message it causes."""
        from nbclient.exceptions import DeadKernelError

        kc = self.client.kc
        msg_id = kc.execute(code, silent=silent, store_history=store_history,
                            user_expressions=user_expressions or {}, allow_stdin=False, stop_on_error=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        interrupted = False
        reply = None
        while reply is None:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                msg = await _maybe_await(kc.shell_channel.get_msg(timeout=wait))
            except (Empty, TimeoutError):
                if not await _maybe_await(kc.is_alive()):
                    raise DeadKernelError("Kernel died") from None
                if deadline is not None and time.monotonic() >= deadline:
                    if interrupted:
                        raise KernelTimeout(interrupted=False) from None
                    interrupted = True
                    await _maybe_await(self.client.km.interrupt_kernel())
                    deadline = time.monotonic() + self.interrupt_grace
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                reply = msg
        await self._drain(msg_id)
        if interrupted:
            raise KernelTimeout(interrupted=True)
        return reply

    async def _drain(self, msg_id: str, timeout: float = 5.0) -> None:
        """Read IOPub until the kernel is idle after ``msg_id`` (its outputs are discarded)."""
        kc = self.client.kc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await _maybe_await(kc.iopub_channel.get_msg(timeout=max(0.05, deadline - time.monotonic())))
            except (Empty, TimeoutError):
                return
            if msg.get("parent_header", {}).get("msg_id") == msg_id and msg.get("msg_type") == "status" \
                    and msg.get("content", {}).get("execution_state") == "idle":
                return

    async def _agent_call(self, expression: str, nonce: str) -> tuple[dict[str, Any] | None, str]:
        """The agent's JSON answer (checked against ``nonce``), or None and why there is none."""
        try:
            reply = await self.request("", silent=True, user_expressions={"r": expression}, timeout=30)
        except KernelTimeout:
            return None, "it did not answer within 30 s"
        content = reply.get("content", {})
        value = content.get("user_expressions", {}).get("r", {})
        if content.get("status") != "ok" or value.get("status") != "ok":
            ename = value.get("ename") or content.get("ename", "")
            error = f"{ename}: {value.get('evalue') or content.get('evalue', '')}"
            if self.modname in error:
                return None, "it was removed from the kernel"
            return None, f"it failed ({error.strip(': ')[:200]})"
        try:
            data = json.loads(ast.literal_eval(value.get("data", {}).get("text/plain", "")))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None, "its answer was not readable"
        if not isinstance(data, dict) or data.get("nonce") != nonce:
            return None, "its answer did not carry the grader's nonce"
        return data, ""

    # the agent ----------------------------------------------------------------------------------

    async def install(self) -> bool:
        """Install the agent in the fresh kernel; ``AgentUnavailable`` when the kernel does not accept it."""
        nonce = new_nonce()
        started = time.monotonic()
        data, why = await self._agent_call(_install_expression(self.modname, nonce, self.instructor_files), nonce)
        self.timings["install"] = time.monotonic() - started
        self.installed = data is not None
        if not self.installed:
            raise AgentUnavailable(f"the grader's integrity agent could not be installed: {why}")
        return True

    async def check(self, facts: CellFacts, label: str, extra_names: Iterable[str] = ()) -> list[Finding]:
        """Run the agent's check before an instructor cell; returns findings (already restored)."""
        nonce = new_nonce()
        names = list(dict.fromkeys([*facts.loads, *extra_names]))
        request = {"nonce": nonce, "names": names, "allowed": self.allowed, "cell": label,
                   "critical": sorted(CRITICAL_MODULES)}
        started = time.monotonic()
        data, why = await self._agent_call(_call_expression(self.modname, "check", request), nonce)
        self.timings["probe"] += time.monotonic() - started
        self.counts["probe"] += 1
        if data is None:
            return [Finding("tamper", f"the grader's integrity probe stopped working ({why})")]
        findings = []
        for item in data.get("found", []):
            if not isinstance(item, list) or not item:
                continue
            kind = str(item[0])
            if kind == "patched" and len(item) >= 5:
                findings.append(Finding(kind, str(item[4]), module=str(item[1]), attr=str(item[2]),
                                        critical=bool(item[3])))
            elif kind == "module" and len(item) >= 3:
                findings.append(Finding(kind, str(item[2]), module=str(item[1])))
            elif len(item) >= 2:
                findings.append(Finding(kind, str(item[1])))
        return findings

    async def snapshot(self, names: Iterable[str]) -> None:
        """Remember the instructor's functions, classes and modules bound by the cell that just ran."""
        names = list(names)
        if not names:
            return
        nonce = new_nonce()
        started = time.monotonic()
        await self._agent_call(_call_expression(self.modname, "snapshot", {"nonce": nonce, "names": names}),
                               nonce)
        self.timings["probe"] += time.monotonic() - started

    # the canary ---------------------------------------------------------------------------------

    async def canary(self, source: str, timeout: float | None) -> tuple[str, float]:
        """Run the canary for a test's ``source``; returns (verdict, seconds)."""
        nonce = new_nonce()
        started = time.monotonic()
        try:
            reply = await self.request(canary_source(source, nonce), silent=False, store_history=True,
                                       timeout=timeout)
        finally:
            elapsed = time.monotonic() - started
            self.timings["canary"] += elapsed
            self.counts["canary"] += 1
        return canary_verdict(reply, nonce), elapsed


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


_BUILTIN_NAMES = frozenset(dir(__import__("builtins")))


def solution_names(source_notebook: Path) -> set[str]:
    """Names the instructor's own notebook binds at top level (answers included): never "shadows"."""
    names: set[str] = set()
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(source_notebook.read_text(encoding="utf-8"))
        for cell in data.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            names |= top_level_names(parse_tolerant(python_source(source)))
    return names


# --- one notebook's defence, driven by GuardedExecute -------------------------------------


def _error_output(ename: str, evalue: str) -> Any:
    from nbformat.v4 import new_output

    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _failed(cell: Any) -> bool:
    return any(out.get("output_type") == "error"
               or (out.get("output_type") == "stream" and out.get("name") == "stderr") for out in cell.outputs)


class NotebookDefence:
    """Everything the grader does around the cells of one notebook in one kernel.

    ``run(cell, label, execute, timeout)`` wraps nbclient's execution of one code cell:
    the agent is installed before the first cell; before each instructor cell the
    working directory and the kernel are checked (and repaired); before each test cell the
    canary runs; after a test cell its outputs are made safe for nbgrader's scoring; after
    an instructor cell its helpers are remembered.  Once the kernel is known to be tampered
    with, every later test gets an error output (0 points in nbgrader's scoring).
    """

    def __init__(self, client: Any, notebook: str, *, workdir: Path | None, source_dir: Path | None,
                 ignore: Iterable[str] = (), canary: bool = True, flag: Callable[[str], None],
                 problem: Callable[[str], None], log: Callable[[str], None] = print,
                 interrupt_grace: float = 5.0) -> None:
        self.notebook = notebook
        self.canary_enabled = canary
        self._flag, self._problem, self._log = flag, problem, log
        self.watch = (WorkdirWatch.create(workdir, source_dir, ignore)
                      if workdir is not None and source_dir is not None else None)
        allowed = solution_names(source_dir / f"{notebook}.ipynb") if source_dir is not None else set()
        self.guard = KernelGuard(client, notebook, allowed=allowed,
                                 instructor_files=list(self.watch.expected) if self.watch else [],
                                 interrupt_grace=interrupt_grace)
        self.client = client
        self.tampered: str | None = None
        self.started = False
        self.tests = 0
        self.disabled = False
        self.dirty = True  # code ran since the last probe
        self.helper_loads: tuple[str, ...] = ()

    def flag(self, text: str) -> None:
        self._flag(f"{self.notebook}: {text}")

    def tamper(self, reason: str, label: str, *, canary: bool = False) -> None:
        if self.tampered is not None:
            return
        self.tampered = reason
        text = f"{TAMPERED} ({reason})" if canary else reason
        self.flag(f"{text}; test {label} and every later test get 0")
        self._problem(f"{self.notebook}: tampering detected at {label}: {reason}; it and every later test got 0")

    async def run(self, cell: Any, label: str, execute: Callable[[], Any], timeout: float | None) -> Any:
        if not self.started:
            self.started = True
            nb = getattr(self.client, "nb", None) or {}
            language = nb.get("metadata", {}).get("language_info", {}).get("name")
            if language not in (None, "python"):
                self._log(f"{self.notebook}: a {language} kernel: no canaries or integrity probe")
                self.disabled = True
            else:
                # Built-in names the instructor's cells read (helpers called by tests use them too).
                loads: dict[str, None] = {}
                for other in nb.get("cells", []):
                    if is_instructor_cell(other):
                        loads.update(dict.fromkeys(name for name in cell_facts(other.source).loads
                                                   if name in _BUILTIN_NAMES))
                self.helper_loads = tuple(loads)
                await self.guard.install()  # AgentUnavailable: a grader error (no learner cell has run yet)
        if self.disabled:
            return await execute()
        instructor = is_instructor_cell(cell)
        test = is_test_cell(cell)
        facts = cell_facts(cell.source) if instructor else None
        verdict = None
        if instructor and self.tampered is None:
            await self._inspect(facts, label, during=False)
        if test:
            self.tests += 1
            if self.tampered is None and self.canary_enabled and not facts.cell_magic:
                self.dirty = True
                verdict, _ = await self.guard.canary(cell.source, timeout)
                if verdict == "passed":
                    self.tamper(f"the check run before test {label} passed", label, canary=True)
        self.dirty = True
        cell = await execute()
        if test and self.tampered is None:
            # Learner code the test called may have changed the kernel while the test ran.
            await self._inspect(facts, label, during=True)
        if test:
            if verdict == "error" and self.tampered is None and not _failed(cell):
                # The test failed when the grader ran it but passed as a cell: look again.
                try:
                    again, _ = await self.guard.canary(cell.source, timeout)
                except KernelTimeout:
                    again = "failed"
                if again != "failed":
                    self.tamper(f"test {label} failed when the grader checked it but passed when run", label,
                                canary=True)
            self._fix_outputs(cell, facts, label)
            if self.tampered is not None:
                cell.outputs.insert(0, _error_output("TamperingDetected", f"{TAMPERED}: {self.tampered}"))
        if instructor and self.tampered is None and facts.binds:
            await self.guard.snapshot(facts.binds)
        return cell

    async def _inspect(self, facts: CellFacts, label: str, *, during: bool) -> None:
        """Check the working directory and the kernel before an instructor cell (or after a test: ``during``).

        Before: what the notebook changed is put back and flagged.  After a test: a change
        to the interpreter's machinery was made by learner code *the test called*, so that
        test's result cannot be trusted.
        """
        if self.watch is not None:
            for rel in self.watch.changed():
                if rel.endswith(".py"):
                    self.tamper(f"the instructor's module {rel} in the working directory was changed", label)
                else:
                    self.flag(f"the instructor's file {rel} in the working directory was changed")
        if not self.dirty:
            return
        findings = await self.guard.check(facts, label, self.helper_loads)
        self.dirty = False
        for finding in findings:
            if finding.kind == "error":
                self._log(f"{self.notebook}: integrity probe at {label}: {finding.text}")
            elif during and finding.kind == "core":
                self.tamper(f"{finding.text} while test {label} ran", label)
            elif self._is_tampering(finding, facts):
                self.tamper(finding.text, label)
            else:
                self.flag(finding.text)

    @staticmethod
    def _is_tampering(finding: Finding, facts: CellFacts) -> bool:
        """Findings that make the coming tests meaningless (the rest is restored or only suspicious)."""
        if finding.kind == "tamper":
            return True
        if finding.kind == "patched":
            return finding.critical or finding.attr in facts.mentions
        if finding.kind == "module":
            return (finding.module.partition(".")[0] in CRITICAL_MODULES
                    or bool(set(finding.module.split(".")) & facts.mentions))
        return False

    def _fix_outputs(self, cell: Any, facts: CellFacts, label: str) -> None:
        """Make nbgrader's scoring of a test cell depend on the test, not on what the notebook displayed.

        nbgrader scores the *first* ``execute_result`` as partial credit, even when an error
        follows, and aborts the whole job when that value exceeds the cell's points.
        """
        results = [out for out in cell.outputs if out.get("output_type") == "execute_result"]
        if results and facts.trailing_expression is False:
            cell.outputs = [out for out in cell.outputs if out.get("output_type") != "execute_result"]
            self.flag(f"test {label} displayed a result although its last line is not an expression (a forged "
                      "partial credit); it was ignored")
        elif len(results) > 1:
            cell.outputs = [out for out in cell.outputs if out.get("output_type") != "execute_result"
                            or out is results[-1]]
            self.flag(f"test {label} displayed {len(results)} results; only its own last one was kept")
        errors = [out for out in cell.outputs if out.get("output_type") == "error"]
        if errors and any(out.get("output_type") == "execute_result" for out in cell.outputs):
            cell.outputs = errors + [out for out in cell.outputs if out.get("output_type") != "error"]
        points = float(cell.metadata.get("nbgrader", {}).get("points") or 0)
        for index, out in enumerate(cell.outputs):
            if out.get("output_type") != "execute_result":
                continue
            try:
                value = float(str(out.get("data", {}).get("text/plain", "")).strip())
            except ValueError:
                continue
            if value > points:
                cell.outputs[index] = _error_output("PartialCreditError",
                                                    f"the test reported {value:g} points out of {points:g}")
                self._problem(f"{self.notebook}: test {label} reported more points than it has ({value:g} > "
                              f"{points:g}); scored 0")
