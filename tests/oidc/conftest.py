"""A live portal on 127.0.0.1 for OpenID Connect clients that are not ours, and a browser for it."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import PASSWORD

CLIENT_SECRET = "hub-client-secret-" + "s" * 30
HUB = "http://lab.academy.test"
REDIRECT_URI = f"{HUB}/hub/oauth_callback"


@dataclass
class Provider:
    """The portal served over HTTP: ``url`` is its issuer."""

    app: Flask
    url: str
    learner_email: str
    learner_id: int


@pytest.fixture
def provider(app_config: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Provider]:
    """The portal (SQLite or PostgreSQL, as ``app`` is) with the hub as its client, served on a free port."""
    app_config.update({"hub_url": HUB, "hub_client_secret": CLIENT_SECRET, "RATELIMIT_ENABLED": False,
                       "SERVER_NAME": None})
    app: Flask = request.getfixturevalue("app")
    make_user = request.getfixturevalue("make_user")
    learner_id = make_user("learner", email="learner@example.kr", name="김학습")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["ACADEMY_SETTINGS"].base_url = url
    thread = threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True)
    thread.start()
    try:
        yield Provider(app, url, "learner@example.kr", learner_id)
    finally:
        server.shutdown()
        thread.join(timeout=10)


class Browser:
    """A person's browser: the portal's cookies, redirects looked at rather than followed."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.session = requests.Session()

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.get(url, allow_redirects=False, timeout=30, **kwargs)

    def csrf(self, path: str = "/login") -> str:
        html = self.session.get(self.provider.url + path, timeout=30).text
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def sign_in(self, next_url: str | None = None) -> requests.Response:
        """Sign in through the login form (to ``next_url``, a path, when given)."""
        path = "/login" + (f"?next={requests.utils.quote(next_url, safe='')}" if next_url else "")
        return self.session.post(self.provider.url + path, allow_redirects=False, timeout=30, data={
            "email": self.provider.learner_email, "password": PASSWORD, "csrf_token": self.csrf(path)})

    def signed_in(self) -> bool:
        return self.get(self.provider.url + "/dashboard").status_code == 200


@pytest.fixture
def browser(provider: Provider) -> Browser:
    return Browser(provider)


def query_of(response: requests.Response) -> dict[str, str]:
    """The query parameters of a redirect's target."""
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
