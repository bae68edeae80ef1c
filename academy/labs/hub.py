"""The portal's client of the JupyterHub REST API and of the learners' Jupyter servers.

The portal is a JupyterHub service; its token's role carries only the scopes listed in
``hub_config/jupyterhub_config.py`` (``PORTAL_SCOPES``).  Every failure to reach the hub becomes
``HubUnavailable`` so callers can tell the learner what happened instead of a stack trace.

The client owns every hub address (its REST API, the learners' servers through the proxy, the
pages browsers are sent to) and answers with domain results (``StartResult``, ``ServerState``,
``None`` for what does not exist), never with HTTP status codes.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

if TYPE_CHECKING:
    from academy.config import Settings


class HubError(Exception):
    """The hub answered, but not as expected (it refused the request)."""


class HubUnavailable(HubError):
    """The hub cannot be reached (down, restarting, or the address is wrong)."""


class StartResult(enum.Enum):
    """What the hub did with a start request."""

    ready = "ready"  # the server runs and answers
    spawning = "spawning"  # the hub is starting it; follow ``progress``
    already_running = "already_running"  # started earlier (e.g. before a portal restart)


@dataclass
class ServerState:
    exists: bool
    ready: bool
    pending: str | None
    started: str | None
    last_activity: str | None
    user_options: dict[str, Any]
    url: str | None


def _path(value: str) -> str:
    """Quote each segment of a notebook path; the caller has already refused ``..``."""
    return "/".join(quote(part, safe="") for part in value.split("/"))


class HubClient:
    """The hub's REST API and the learners' servers, for the portal's service token."""

    def __init__(self, base_url: str, token: str, *, browser_url: str | None = None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.browser_url = (browser_url or base_url).rstrip("/")
        self.api = self.base_url + "/hub/api"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, *, ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any
                 ) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise HubUnavailable(f"JupyterHub at {self.base_url} cannot be reached: {exc.__class__.__name__}") from exc
        if response.status_code in (502, 503, 504):
            raise HubUnavailable(f"JupyterHub at {self.base_url} answered {response.status_code}")
        if response.status_code not in ok:
            raise HubError(f"{method} {url.removeprefix(self.base_url)}: {response.status_code} {response.text[:200]}")
        return response

    # -- addresses browsers are sent to ---------------------------------------------------------------------------
    def lab_url(self, name: str, notebook_path: str | None = None) -> str:
        """JupyterLab of hub user ``name``, with ``notebook_path`` open when given."""
        base = f"{self.browser_url}/user/{quote(name)}/lab"
        return f"{base}/tree/{_path(notebook_path)}" if notebook_path else base

    def logout_url(self) -> str:
        """The hub's logout page (it sends the browser back to the portal)."""
        return f"{self.browser_url}/hub/logout"

    # -- hub API ----------------------------------------------------------------------------------------------
    def get_user(self, name: str) -> dict[str, Any] | None:
        response = self._request("GET", f"{self.api}/users/{quote(name)}", ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    def ensure_user(self, name: str, *, admin: bool = False) -> dict[str, Any]:
        """The hub user, created when missing (a race with the sign-in creating it too is fine)."""
        user = self.get_user(name)
        if user is None:
            self._request("POST", f"{self.api}/users/{quote(name)}", ok=(201, 409))
            user = self.get_user(name) or {"name": name, "servers": {}}
        return user

    def server(self, name: str) -> ServerState:
        user = self.get_user(name)
        server = ((user or {}).get("servers") or {}).get("")
        if not server:
            return ServerState(False, False, None, None, None, {}, None)
        return ServerState(True, bool(server.get("ready")), server.get("pending"), server.get("started"),
                           server.get("last_activity"), server.get("user_options") or {}, server.get("url"))

    def start(self, name: str, user_options: dict[str, Any]) -> StartResult:
        """Ask for the user's server."""
        response = self._request("POST", f"{self.api}/users/{quote(name)}/server", json=user_options,
                                 ok=(201, 202, 400))
        return {201: StartResult.ready, 202: StartResult.spawning}.get(response.status_code,
                                                                      StartResult.already_running)

    def stop(self, name: str) -> None:
        """Stop the user's server (nothing to stop is fine)."""
        self._request("DELETE", f"{self.api}/users/{quote(name)}/server", ok=(202, 204, 400, 404))

    def progress(self, name: str, *, budget: float = 0.3) -> list[dict[str, Any]]:
        """The spawn progress events the hub has emitted so far (its event stream, read briefly)."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + budget
        try:
            with self.session.get(f"{self.api}/users/{quote(name)}/server/progress", stream=True,
                                  timeout=(self.timeout, budget)) as response:
                if response.status_code != 200:
                    return events
                for line in _lines(response):
                    if line.startswith("data:"):
                        try:
                            events.append(json.loads(line[5:].strip()))
                        except ValueError:
                            continue
                        if events[-1].get("ready") or events[-1].get("failed"):
                            break
                    if time.monotonic() > deadline:
                        break
        except requests.RequestException:
            pass  # read timeout: no more events for now
        return events

    def running_servers(self) -> set[str]:
        """The hub users whose default server runs (or is starting)."""
        users = self._request("GET", self.api + "/users", params={"state": "active"}).json()
        return {u["name"] for u in users if (u.get("servers") or {}).get("")}

    def delete_tokens(self, name: str) -> int:
        """Delete every API token of a user (the lab's own OAuth tokens included)."""
        response = self._request("GET", f"{self.api}/users/{quote(name)}/tokens", ok=(200, 404))
        if response.status_code == 404:
            return 0
        tokens = response.json().get("api_tokens", [])
        for token in tokens:
            self._request("DELETE", f"{self.api}/users/{quote(name)}/tokens/{token['id']}", ok=(204, 404))
        return len(tokens)

    # -- the learner's Jupyter server (contents API, through the proxy) -------------------------------------------
    def _contents(self, name: str, path: str) -> str:
        return f"{self.base_url}/user/{quote(name)}/api/contents/{_path(path)}"

    def get_file(self, name: str, path: str, *, content: bool = True) -> dict[str, Any] | None:
        """The contents-API model of a file in the learner's workspace; None when there is none."""
        response = self._request("GET", self._contents(name, path), params={"content": int(content)},
                                 ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    def make_dirs(self, name: str, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            # Saving a directory model is idempotent: 201 when made, 200 when it was there already.
            self._request("PUT", self._contents(name, "/".join(parts[:i])), json={"type": "directory"},
                          ok=(200, 201))

    def put_notebook(self, name: str, path: str, notebook: dict[str, Any]) -> None:
        self._request("PUT", self._contents(name, path), json={"type": "notebook", "format": "json",
                                                               "content": notebook}, ok=(200, 201))

    def put_file(self, name: str, path: str, data: bytes) -> None:
        self._request("PUT", self._contents(name, path), json={
            "type": "file", "format": "base64", "content": base64.b64encode(data).decode("ascii")}, ok=(200, 201))

    def rename(self, name: str, path: str, new_path: str) -> None:
        self._request("PATCH", self._contents(name, path), json={"path": new_path}, ok=(200,))


def _lines(response: requests.Response) -> Iterator[str]:
    for raw in response.iter_lines(decode_unicode=True):
        if raw is not None:
            yield raw


def client_for(settings: Settings) -> HubClient:
    """The portal's client of its hub; HubUnavailable when no hub is configured."""
    if not settings.labs_enabled:
        raise HubUnavailable("labs are not configured (ACADEMY_HUB_URL is not set)")
    return HubClient(settings.hub_url or "", settings.resolved_hub_secret("api_token"),
                     browser_url=settings.hub_browser_url)


def parse_time(value: str | None) -> dt.datetime | None:
    """A time as the hub writes it (ISO 8601, ``Z`` for UTC); None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
