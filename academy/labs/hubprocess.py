"""Start and stop the local JupyterHub (``academy demo``, the tests and bench/labs.py use this)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from academy.processes import descendants, stop_process

PROJECT_DIR = Path(__file__).resolve().parents[2]
HUB_CONFIG = PROJECT_DIR / "hub_config" / "jupyterhub_config.py"


class HubStartError(RuntimeError):
    pass


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class HubProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the hub (SIGTERM: it stops its servers, proxy and culler), then kill whatever of them it left.

        Lab servers, the proxy and the culler run in sessions of their own: a hub that had to be killed
        would leave them running, so they are found by parentage before the hub is asked to stop.
        """
        started = descendants(self.process.pid)
        stop_process(self.process)
        for ref in started:
            ref.send(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def hub_environment(*, data_dir: Path, hub_url: str, portal_url: str, api_token: str, client_secret: str,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    ports = free_ports(2)
    env = dict(os.environ)
    env.update({
        "ACADEMY_HUB_URL": hub_url,
        "ACADEMY_HUB_INTERNAL_PORT": str(ports[0]),
        "ACADEMY_HUB_PROXY_API_PORT": str(ports[1]),
        "ACADEMY_PORTAL_URL": portal_url,
        "ACADEMY_HUB_API_TOKEN": api_token,
        "ACADEMY_HUB_CLIENT_SECRET": client_secret,
        "ACADEMY_DATA_DIR": str(data_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    env.pop("CONFIGPROXY_AUTH_TOKEN", None)
    env.update(extra or {})
    return env


def start_hub(*, data_dir: Path, hub_url: str, portal_url: str, api_token: str, client_secret: str,
              extra_env: dict[str, str] | None = None, timeout: float = 60.0) -> HubProcess:
    """Start ``jupyterhub`` with hub_config/jupyterhub_config.py and wait until its API answers.

    Raises HubStartError with the end of the hub's log when it exits or does not answer in time.
    """
    env = hub_environment(data_dir=data_dir, hub_url=hub_url, portal_url=portal_url, api_token=api_token,
                          client_secret=client_secret, extra=extra_env)
    state = data_dir / "hub"
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / "jupyterhub.log"
    jupyterhub = Path(sys.executable).parent / "jupyterhub"
    with open(log_path, "ab") as log:
        # Its own session: a terminal's Ctrl-C reaches the demo, which stops the hub in order.  No terminal
        # on stdin: lab servers and kernels inherit it, and nothing of theirs may read from or wait on it.
        process = subprocess.Popen([str(jupyterhub), "-f", str(HUB_CONFIG)], cwd=state, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    hub = HubProcess(url=hub_url.rstrip("/"), process=process, log_path=log_path, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HubStartError(f"JupyterHub exited with {process.returncode}:\n{hub.log_tail()}")
        try:
            if requests.get(f"{hub.url}/hub/api/", timeout=2).status_code == 200:
                return hub
        except requests.RequestException:
            pass
        time.sleep(0.2)
    hub.stop()
    raise HubStartError(f"JupyterHub did not answer within {timeout:.0f} s:\n{hub.log_tail()}")
