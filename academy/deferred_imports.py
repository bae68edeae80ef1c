"""Third-party modules that cost seconds at import time and are seldom used: loaded when first used.

``rfc3987_syntax``
    ``jsonschema`` imports it (when installed, as ``jsonschema[format-nongpl]`` pulls it in
    through ``nbformat``, ``jupyter_events`` and friends) only to offer the ``iri`` and
    ``iri-reference`` format checks, and it compiles some thirty Lark grammars while being
    imported: about 1.6 s of CPU in every process that imports ``nbformat``, that is every
    grading worker, ``academy grade`` and each pool process.  No schema the academy, nbformat
    or nbgrader use has those formats (python-jsonschema/jsonschema#1428).  ``defer()`` puts a
    stand-in module in ``sys.modules`` whose ``is_valid_syntax`` (the one name jsonschema takes)
    imports the real module on its first call; any other attribute does the same.  The checks
    behave exactly as before, only later.

``defer()`` runs when the ``academy`` package is imported, before anything else of ours.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_RFC3987 = "rfc3987_syntax"


class _Deferred(types.ModuleType):
    """A stand-in for a module that is imported for real on first use."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"stand-in for {name}, imported on first use (academy.deferred_imports)")
        self._academy_lock = threading.Lock()
        self._academy_real: types.ModuleType | None = None

    def _academy_load(self) -> types.ModuleType:
        with self._academy_lock:
            if self._academy_real is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                try:
                    self._academy_real = importlib.import_module(self.__name__)
                except BaseException:
                    sys.modules.setdefault(self.__name__, self)
                    raise
            return self._academy_real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_academy"):
            raise AttributeError(name)
        return getattr(self._academy_load(), name)


def _rfc3987_stand_in() -> _Deferred:
    module = _Deferred(_RFC3987)

    def is_valid_syntax(syntax_rule: str, value: str) -> bool:
        return module._academy_load().is_valid_syntax(syntax_rule, value)

    module.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    return module


def defer() -> None:
    """Install the stand-ins (once; a module already imported or not installed is left alone)."""
    if _RFC3987 in sys.modules or "jsonschema._format" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(_RFC3987)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        stand_in = _rfc3987_stand_in()
        stand_in.__spec__ = spec  # find_spec() and friends still see the real module's spec
        sys.modules[_RFC3987] = stand_in
