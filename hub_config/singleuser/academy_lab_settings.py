"""JupyterLab settings of the learners' labs, with the way back to the academy portal.

JupyterLab reads admin defaults from ``<app_settings_dir>/overrides.json``. The fixed part lives in
``lab-settings/overrides.json`` beside this file (Korean interface, no news, the File menu's duplicate
sign-out and the hub's control panel taken out). The part that differs per deployment, the portal's
address, comes from ``ACADEMY_PORTAL_URL``, which every hub hands to the server (the local hub's
spawner environment, ``singleuser.extraEnv`` on Kubernetes, the Slurm job's environment):
``jupyter_server_config.py`` calls :func:`lab_settings_dir`, which writes the two merged into the
server's runtime folder and returns that folder for ``LabApp.app_settings_dir``.

The entry is a File menu item and a top-bar button running JupyterLab's own ``help:open`` command
with ``newBrowserTab``: the portal's dashboard opens in a new browser tab and the lab stays open.
Its text is Korean with the English beside it: the lab's interface is Korean for every learner, and
the server does not know the learner's portal language (it would have to travel in the launch's
user_options to three kinds of spawner, and a server started in one language keeps its label when
the learner switches the portal's language).

Only the standard library: this runs in the learners' environment, at server start.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
STATIC_SETTINGS = HERE / "lab-settings"
MAIN_MENU = "@jupyterlab/mainmenu-extension:plugin"
TOP_BAR = "@jupyterlab/application-extension:top-bar"
#: The entry's text, Korean first (the lab's interface language), English for the others.
BACK_LABEL = "아카데미로 돌아가기 · Back to the academy"
BACK_CAPTION = "AI 새마을 아카데미 포털을 새 탭에서 엽니다 · Opens the AI Saemaul Academy portal in a new tab"
#: Its command and item name; tests and the File menu's order (rank 100: with the sign-out) rely on them.
OPEN_COMMAND = "help:open"
TOP_BAR_ITEM = "academy-portal"

#: nbgrader's JupyterLab plugins. Learners' labs have none (the portal hands out, collects and grades);
#: course staff's authoring lab has the "Create Assignment" cell toolbar and the validate button, never the
#: "Nbgrader" menu (it opens the formgrader, the assignment and course lists).
NBGRADER_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:assignment-list",
                    "@jupyter/nbgrader:course-list", "@jupyter/nbgrader:menu",
                    "@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:validate-assignment")
AUTHORING_PLUGINS = ("@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:validate-assignment")

log = logging.getLogger("academy.lab_settings")


def portal_dashboard_url(portal_url: str | None) -> str | None:
    """The portal's dashboard for a portal base URL; None when it is unset or not an http(s) address."""
    if not portal_url or not portal_url.strip():
        return None
    base = portal_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in base for c in "\"'<>\\ \t\r\n"):
        return None
    return base + "/dashboard"


def overrides(portal_url: str | None, static: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fixed overrides plus the "back to the academy" menu item and top-bar button (when there is a portal)."""
    merged = copy.deepcopy(static if static is not None else _read_static())
    url = portal_dashboard_url(portal_url)
    if url is None:
        return merged
    args = {"url": url, "text": BACK_LABEL, "newBrowserTab": True}
    menus = merged.setdefault(MAIN_MENU, {}).setdefault("menus", [])
    file_menu = next((m for m in menus if m.get("id") == "jp-mainmenu-file"), None)
    if file_menu is None:
        file_menu = {"id": "jp-mainmenu-file", "items": []}
        menus.append(file_menu)
    file_menu.setdefault("items", []).append({"command": OPEN_COMMAND, "args": args, "rank": 99})
    toolbar = merged.setdefault(TOP_BAR, {}).setdefault("toolbar", [])
    toolbar.append({"name": TOP_BAR_ITEM, "command": OPEN_COMMAND, "args": args, "label": BACK_LABEL,
                    "caption": BACK_CAPTION, "rank": 60})
    return merged


def _read_static() -> dict[str, Any]:
    return json.loads((STATIC_SETTINGS / "overrides.json").read_text(encoding="utf-8"))


def lab_settings_dir(portal_url: str | None, runtime_dir: Path, *, authoring: bool = False) -> Path:
    """The folder for ``LabApp.app_settings_dir``, written under ``runtime_dir``: the overrides (with the way
    back to the portal when there is one) and the page config (which of nbgrader's plugins the lab has).

    Written at every server start (the portal's address may have changed since the last one), through
    a temporary file renamed into place. A portal address that is not http(s) is logged and left out.
    """
    if portal_dashboard_url(portal_url) is None and portal_url:
        log.warning("academy: ACADEMY_PORTAL_URL %r is not an http(s) address; no way back to the portal",
                    portal_url)
    target = runtime_dir / "academy-lab-settings"
    target.mkdir(parents=True, exist_ok=True)
    _write(target / "overrides.json", overrides(portal_url))
    _write(target / "page_config.json", page_config(authoring=authoring))
    return target


def page_config(*, authoring: bool) -> dict[str, Any]:
    """JupyterLab's page config: nbgrader's lab plugins switched off, but for the authoring lab's tools."""
    return {"disabledExtensions": [p for p in NBGRADER_PLUGINS if not (authoring and p in AUTHORING_PLUGINS)]}


def _write(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    temporary.replace(path)
