"""Jupyter Server extension: the server's "last activity" is its kernels' activity.

Jupyter Server counts every API request as activity, and an open JupyterLab tab polls the API
every few seconds, so a forgotten browser tab would keep a (GPU) server alive forever.  This
extension makes the activity the hub's idle culler sees come from kernels only: the last kernel
message, and *now* while any kernel is busy, so a long silent computation is never culled.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "academy_lab_activity"}]


def kernel_activity(web_app: Any, now: dt.datetime | None = None) -> dt.datetime:
    settings = web_app.settings
    manager = settings["kernel_manager"]
    sources = [settings["started"], manager.last_kernel_activity]
    for kernel_id in list(manager.list_kernel_ids()):
        kernel = manager.get_kernel(kernel_id)
        if getattr(kernel, "execution_state", None) == "busy":
            return now or dt.datetime.now(dt.UTC)
        activity = getattr(kernel, "last_activity", None)
        if activity is not None:
            sources.append(activity)
    terminals = settings.get("terminal_last_activity")
    if terminals is not None:
        sources.append(terminals)
    return max(s if s.tzinfo else s.replace(tzinfo=dt.UTC) for s in sources)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    web_app.last_activity = lambda: kernel_activity(web_app)
    serverapp.log.info("academy: idle culling follows kernel activity")
