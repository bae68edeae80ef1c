"""Idle culling follows kernel activity, not browser activity (issue 4, point 5).

The integration tests run the real portal, JupyterHub, configurable-http-proxy, jupyterhub-idle-culler
and learners' servers with real kernels, with a short idle timeout: a server whose kernel runs a long
silent cell survives well past the timeout, and one that only sees an open browser tab polling its API
is culled.  The unit tests check academy_lab_activity.kernel_activity, the rule the servers report.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.labs.labstack import LabStack, lab_stack, missing_parts
from tests.support import ROOT, skip_or_fail

IDLE_TIMEOUT = 6  # seconds without kernel activity before the culler stops a server
CULL_EVERY = 2
ACTIVITY_INTERVAL = 1
SILENT_CELL_SECONDS = 30  # five idle timeouts, fifteen culler rounds
#: Slack for a loaded machine: reporting interval + culler round + the hub stopping the server, several times.
CULL_DEADLINE = 60


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    reason = missing_parts()
    if reason:
        skip_or_fail(reason)
    hub_env = {"ACADEMY_LAB_IDLE_TIMEOUT": str(IDLE_TIMEOUT), "ACADEMY_LAB_CULL_EVERY": str(CULL_EVERY),
               "ACADEMY_LAB_ACTIVITY_INTERVAL": str(ACTIVITY_INTERVAL)}
    with lab_stack(tmp_path_factory.mktemp("culling"), gpu_course=None, hub_extra_env=hub_env) as running:
        yield running


def _running_lab(stack: LabStack, email: str) -> str:
    """Open a CPU lab through the portal, as a learner does; the hub user name."""
    user_id = stack.make_learner(email)
    session = stack.portal_session(email)
    response = stack.open_lab(session, "ml-quality", "01-linear-regression")
    assert response.status_code == 303, response.text[:300]
    body = stack.wait_lab(session, response.headers["Location"])
    assert body["state"] == "running", body
    return f"u{user_id}"


def _server_running(stack: LabStack, hub_user: str) -> bool:
    response = stack.hub_api("GET", f"/users/{hub_user}")
    assert response.status_code == 200, response.text[:300]
    return "" in (response.json().get("servers") or {})


def _lab_api(stack: LabStack, hub_user: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{stack.hub_url}/user/{hub_user}/{path}", timeout=30,
                            headers={"Authorization": f"token {stack.api_token}"}, **kwargs)


def _start_kernel(stack: LabStack, hub_user: str) -> str:
    response = _lab_api(stack, hub_user, "POST", "api/kernels", json={"name": "python3"})
    assert response.status_code == 201, response.text[:300]
    return str(response.json()["id"])


def _execute(stack: LabStack, hub_user: str, kernel_id: str, code: str, timeout: float) -> dict[str, Any]:
    """Run one cell over the kernel websocket (as JupyterLab does); the execute_reply's content."""

    async def run() -> dict[str, Any]:
        url = f"{stack.hub_url.replace('http', 'ws', 1)}/user/{hub_user}/api/kernels/{kernel_id}/channels"
        request = HTTPRequest(url, headers={"Authorization": f"token {stack.api_token}"}, request_timeout=30)
        connection = await websocket_connect(request)
        msg_id = uuid.uuid4().hex
        connection.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                       "username": hub_user, "version": "5.3", "date": dt.datetime.now(dt.UTC).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False},
        }))
        try:
            while True:
                raw = await asyncio.wait_for(connection.read_message(), timeout)
                if raw is None:
                    raise AssertionError(f"the kernel websocket closed before the reply: {connection.close_reason}")
                message = json.loads(raw)
                if (message.get("channel") == "shell" and message["msg_type"] == "execute_reply"
                        and message["parent_header"].get("msg_id") == msg_id):
                    return dict(message["content"])
        finally:
            connection.close()
            # Let the closing handshake finish (messages still in flight come first) before the loop goes away.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    while await connection.read_message() is not None:
                        pass

    return asyncio.run(run())


@pytest.mark.slow
def test_a_long_silent_cell_keeps_its_server_past_the_idle_timeout(stack: LabStack) -> None:
    hub_user = _running_lab(stack, "cull-busy@example.kr")
    kernel_id = _start_kernel(stack, hub_user)
    # Nothing else talks to this server while the cell runs: only the kernel can keep it alive.
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        cell = pool.submit(_execute, stack, hub_user, kernel_id, f"import time; time.sleep({SILENT_CELL_SECONDS})",
                           SILENT_CELL_SECONDS + 60)
        while not cell.done():
            assert _server_running(stack, hub_user), (
                f"culled after {time.monotonic() - started:.0f} s while its cell was running")
            time.sleep(1)
        reply = cell.result()
    assert reply["status"] == "ok", reply
    assert time.monotonic() - started >= SILENT_CELL_SECONDS - 1
    assert _server_running(stack, hub_user)

    # The cell is done and the kernel idle: now the server is culled like any idle one.
    deadline = time.monotonic() + CULL_DEADLINE
    while _server_running(stack, hub_user):
        assert time.monotonic() < deadline, f"an idle server was not culled within {CULL_DEADLINE} s"
        time.sleep(1)


@pytest.mark.slow
def test_browser_traffic_alone_does_not_keep_a_server_alive(stack: LabStack) -> None:
    hub_user = _running_lab(stack, "cull-idle@example.kr")
    # A notebook is open: its kernel ran a cell and is idle now.
    kernel_id = _start_kernel(stack, hub_user)
    assert _execute(stack, hub_user, kernel_id, "1 + 1", 60)["status"] == "ok"
    # The learner's JupyterLab tab stays open and polls the server every second.
    started = time.monotonic()
    deadline = started + CULL_DEADLINE
    answered = 0
    while _server_running(stack, hub_user):
        assert time.monotonic() < deadline, (
            f"a server with only browser traffic ({answered} answered requests) was not culled "
            f"within {CULL_DEADLINE} s")
        for path in ("lab", "api/sessions", "api/kernels", "api/contents", f"api/kernels/{kernel_id}"):
            try:
                response = _lab_api(stack, hub_user, "GET", path, allow_redirects=False)
            except requests.RequestException:
                continue  # the server is going away
            answered += response.status_code == 200
        time.sleep(1)
    # The tab really was reaching the server, and the cull waited for the kernel's idle timeout.
    assert answered >= 5, answered
    assert time.monotonic() - started >= IDLE_TIMEOUT - 2


# -- the rule the servers report (academy_lab_activity), with small fake objects -----------------------------------

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def _activity_module() -> ModuleType:
    path = ROOT / "hub_config" / "singleuser" / "academy_lab_activity.py"
    spec = importlib.util.spec_from_file_location("academy_lab_activity", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _web_app(kernels: list[tuple[str, dt.datetime | None]], **settings: Any) -> SimpleNamespace:
    """A server whose kernels are (execution_state, last_activity) pairs; the browser polled it a moment ago."""
    by_id = {f"k{i}": SimpleNamespace(execution_state=state, last_activity=activity)
             for i, (state, activity) in enumerate(kernels)}
    manager = SimpleNamespace(last_kernel_activity=NOW - dt.timedelta(hours=3), list_kernel_ids=lambda: list(by_id),
                              get_kernel=by_id.__getitem__)
    base = {"started": NOW - dt.timedelta(hours=4), "kernel_manager": manager,
            "api_last_activity": NOW - dt.timedelta(seconds=1)}
    return SimpleNamespace(settings=base | settings)


def test_a_busy_kernel_is_activity_now() -> None:
    activity = _activity_module()
    web_app = _web_app([("idle", NOW - dt.timedelta(hours=2)), ("busy", NOW - dt.timedelta(hours=2))])
    assert activity.kernel_activity(web_app, now=NOW) == NOW


def test_idle_kernels_report_their_latest_message_never_browser_requests() -> None:
    activity = _activity_module()
    latest = NOW - dt.timedelta(minutes=50)
    web_app = _web_app([("idle", NOW - dt.timedelta(hours=2)), ("idle", latest), ("starting", None)])
    assert activity.kernel_activity(web_app, now=NOW) == latest
    # Naive timestamps are UTC; a terminal's traffic counts like a kernel's.
    terminal = NOW - dt.timedelta(minutes=10)
    web_app = _web_app([("idle", latest.replace(tzinfo=None))], terminal_last_activity=terminal)
    assert activity.kernel_activity(web_app, now=NOW) == terminal
    # No kernel at all: the last kernel shutdown (or the server's start).
    assert activity.kernel_activity(_web_app([]), now=NOW) == NOW - dt.timedelta(hours=3)


def test_the_extension_replaces_the_servers_activity() -> None:
    activity = _activity_module()
    web_app = _web_app([("idle", NOW - dt.timedelta(minutes=5))])
    serverapp = SimpleNamespace(web_app=web_app, log=SimpleNamespace(info=lambda *args: None))
    activity._load_jupyter_server_extension(serverapp)
    assert web_app.last_activity() == NOW - dt.timedelta(minutes=5)
    assert activity._jupyter_server_extension_points() == [{"module": "academy_lab_activity"}]


def test_the_singleuser_config_loads_the_extension_and_never_culls_busy_kernels() -> None:
    config = SimpleNamespace(ServerApp=SimpleNamespace(), LabApp=SimpleNamespace(),
                             MappingKernelManager=SimpleNamespace())
    path = ROOT / "hub_config" / "singleuser" / "jupyter_server_config.py"
    namespace = {"get_config": lambda: config, "__file__": str(path)}  # what traitlets' config loader provides
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    assert config.ServerApp.jpserver_extensions["academy_lab_activity"] is True
    # nbgrader is in the lab environment for the authoring lab; none of its server parts runs in a learner's lab.
    assert not any(on for name, on in config.ServerApp.jpserver_extensions.items() if name.startswith("nbgrader"))
    assert config.MappingKernelManager.cull_busy is False
