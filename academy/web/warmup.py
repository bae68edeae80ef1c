"""Compile the portal's page templates when a server process starts, not on its first visitors' requests.

Jinja compiles a template the first time it is rendered: in a fresh process the learner dashboard's first
request spent 150 of its 240 ms compiling six templates.  A production server (``wsgi.py``: each gunicorn worker,
after every restart) compiles them all at start, from a bytecode cache under the data directory, which Jinja keys
by each template's source, so an edited template is compiled again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from jinja2 import FileSystemBytecodeCache

log = logging.getLogger(__name__)


def warm_templates(app: Flask) -> int:
    """Compile every ``.html`` template of ``app`` (through the bytecode cache in ``<data dir>/cache/templates``);
    returns how many.  A template that fails to compile is left for its request to report."""
    cache_dir = Path(app.config["ACADEMY_SETTINGS"].data_dir) / "cache" / "templates"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        app.jinja_env.bytecode_cache = FileSystemBytecodeCache(str(cache_dir))
    except OSError as exc:  # a read-only data directory: compile without the cache
        log.warning("template bytecode cache unavailable in %s: %s", cache_dir, exc)
    compiled = 0
    for name in app.jinja_env.list_templates(filter_func=lambda name: name.endswith(".html")):
        try:
            app.jinja_env.get_template(name)
            compiled += 1
        except Exception:  # noqa: BLE001 - rendering it will raise the same error where it can be seen
            log.exception("template %s does not compile", name)
    return compiled
