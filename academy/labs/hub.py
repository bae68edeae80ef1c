"""The portal's client of the JupyterHub REST API and of the learners' Jupyter servers.

The portal is a JupyterHub service; its token's role carries only the scopes listed in
``hub_config/jupyterhub_config.py`` (``PORTAL_SCOPES``).  Every failure to reach the hub becomes
``HubUnavailable`` so callers can tell the learner what happened instead of a stack trace.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests


class HubError(Exception):
    """The hub answered, but not as expected."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class HubUnavailable(HubError):
    """The hub cannot be reached (down, restarting, or the address is wrong)."""


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
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
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
            raise HubUnavailable(f"JupyterHub at {self.base_url} answered {response.status_code}",
                                 response.status_code)
        if response.status_code not in ok:
            raise HubError(f"{method} {url.removeprefix(self.base_url)}: {response.status_code} {response.text[:200]}",
                           response.status_code)
        return response

    # -- hub API ----------------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._request("GET", self.api + "/").json()

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

    def start(self, name: str, user_options: dict[str, Any]) -> int:
        """Ask for the user's server; returns 201 (ready), 202 (spawning) or 400 when it already runs."""
        response = self._request("POST", f"{self.api}/users/{quote(name)}/server", json=user_options,
                                 ok=(201, 202, 400))
        return response.status_code

    def stop(self, name: str) -> None:
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

    def users(self) -> list[dict[str, Any]]:
        return self._request("GET", self.api + "/users", params={"state": "active"}).json()

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

    def ping_server(self, name: str) -> bool:
        """The learner's server answers through the proxy (the notebook is reachable)."""
        try:
            response = self.session.get(f"{self.base_url}/user/{quote(name)}/api/status", timeout=self.timeout)
        except requests.RequestException:
            return False
        return response.status_code == 200


def _lines(response: requests.Response) -> Iterator[str]:
    for raw in response.iter_lines(decode_unicode=True):
        if raw is not None:
            yield raw
