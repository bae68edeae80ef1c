"""Static checks of the learner's cells: suspicious constructs become flags, nothing is executed."""

from __future__ import annotations

import ast
import re
from typing import Any

from academy.engine.anticheat.cells import (
    CRITICAL_MODULES,
    cell_label,
    is_learner_cell,
    parse_tolerant,
    python_source,
)

MAX_STATIC_FINDINGS = 30
"""Static findings kept per notebook (the rest is summarised in one line)."""

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
                    findings.append(f"{notebook}: cell {cell_label(cell, index)} line 1: writes a Python module "
                                    f"({head.split()[-1]!r})")
                continue
        tree = parse_tolerant(python_source(source))
        if tree is None:
            continue
        visitor = _StaticVisitor()
        try:
            visitor.visit(tree)
        except RecursionError:
            findings.append(f"{notebook}: cell {cell_label(cell, index)}: too deeply nested to check")
            continue
        seen: set[tuple[int, str]] = set()
        for line, text in sorted(visitor.found):
            if (line, text) in seen:
                continue
            seen.add((line, text))
            findings.append(f"{notebook}: cell {cell_label(cell, index)} line {line}: {text} (static check)")
    if len(findings) > MAX_STATIC_FINDINGS:
        extra = len(findings) - MAX_STATIC_FINDINGS
        findings = findings[:MAX_STATIC_FINDINGS] + [f"{notebook}: {extra} more static findings"]
    return findings
