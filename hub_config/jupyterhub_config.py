"""JupyterHub for the academy's embedded default: one machine, 127.0.0.1, local processes.

Started by ``academy demo`` and the tests (academy/labs/hubprocess.py) as
``jupyterhub -f hub_config/jupyterhub_config.py`` with these environment variables:

  ACADEMY_HUB_URL              public address (proxy), e.g. http://127.0.0.1:8000
  ACADEMY_HUB_INTERNAL_PORT    the hub's own port (default: public port + 1)
  ACADEMY_HUB_PROXY_API_PORT   configurable-http-proxy's API port (default: public port + 2)
  ACADEMY_PORTAL_URL           the portal: OpenID Connect provider and receiver of start/stop events
  ACADEMY_HUB_API_TOKEN        the portal's service token (also signs launch grants)
  ACADEMY_HUB_CLIENT_SECRET    OAuth client secret of the hub at the portal
  ACADEMY_DATA_DIR             hub state in <data>/hub, learners' homes in <data>/labs/homes/<user>
  ACADEMY_LAB_ENV              the learners' Python environment (default: ./.venv-lab)
  ACADEMY_LAB_PROFILES         profiles file (default: hub_config/profiles.toml)
  ACADEMY_HUB_SPAWN_LIMIT      concurrent spawns (default 40)
  ACADEMY_LAB_IDLE_TIMEOUT     seconds without kernel activity before a server is culled (default 3600)
  ACADEMY_LAB_CULL_EVERY       how often the culler looks (default 300)
  ACADEMY_LAB_MAX_AGE          the longest a server lives, busy or not (default 43200, 12 hours)
  ACADEMY_LAB_ACTIVITY_INTERVAL how often servers report kernel activity to the hub (default 60)

Kubernetes and Slurm deployments use hub_config/k8s/values.yaml and hub_config/slurm/ instead.
"""

# ruff: noqa: F821  (``c`` and ``get_config`` are provided by JupyterHub when it loads this file)

import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import signal
import sys
import threading
import tomllib
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web

c = get_config()  # noqa: F821

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent


def env(name, default=None):
    value = os.environ.get(name, "").strip()
    return value or default


hub_url = env("ACADEMY_HUB_URL", "http://127.0.0.1:8000").rstrip("/")
public = urlsplit(hub_url)
public_port = public.port or 8000
portal_url = env("ACADEMY_PORTAL_URL", "http://127.0.0.1:5000").rstrip("/")
data_dir = Path(env("ACADEMY_DATA_DIR", str(PROJECT / "instance"))).resolve()
state_dir = data_dir / "hub"
state_dir.mkdir(parents=True, exist_ok=True)
homes = data_dir / "labs" / "homes"
homes.mkdir(parents=True, exist_ok=True)
lab_env = Path(env("ACADEMY_LAB_ENV", str(PROJECT / ".venv-lab"))).resolve()
profiles_file = Path(env("ACADEMY_LAB_PROFILES", str(HERE / "profiles.toml")))
PROFILES = tomllib.loads(profiles_file.read_text(encoding="utf-8"))["profiles"]


def _beside(name):
    """A module of this folder (the hub's configuration is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"academy_hub_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_share = _beside("gpu_share")


def secret(name, filename):
    """A secret from the environment, or (embedded mode) the file the portal generated."""
    value = env(name)
    if value:
        return value
    path = data_dir / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


PORTAL_TOKEN = secret("ACADEMY_HUB_API_TOKEN", "hub_api_token")
CLIENT_SECRET = secret("ACADEMY_HUB_CLIENT_SECRET", "hub_client_secret")
os.environ.setdefault("JUPYTERHUB_CRYPT_KEY", secret("JUPYTERHUB_CRYPT_KEY", "hub/crypt_key"))

# -- network: everything on loopback -------------------------------------------------------------------------
c.JupyterHub.bind_url = hub_url + "/"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env("ACADEMY_HUB_INTERNAL_PORT", str(public_port + 1)))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('ACADEMY_HUB_PROXY_API_PORT', str(public_port + 2))}"
c.ConfigurableHTTPProxy.command = [str(PROJECT / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = f"sqlite:///{state_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state_dir / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True
c.JupyterHub.concurrent_spawn_limit = int(env("ACADEMY_HUB_SPAWN_LIMIT", "40"))
# Answer a start request at once (202) and let the portal follow the progress events.
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
# Activity comes from the servers' kernels only (academy_lab_activity below), never from browser
# traffic through the proxy: an open browser tab must not keep a server alive forever.
c.JupyterHub.last_activity_interval = 0
# Someone who arrives at the hub itself (not at a lab URL) is sent to the portal, where labs are opened.
c.JupyterHub.default_url = portal_url + "/dashboard"

# -- sign-in: the portal is the OpenID Connect provider ----------------------------------------------------------
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.client_id = "jupyterhub"
c.GenericOAuthenticator.client_secret = CLIENT_SECRET
c.GenericOAuthenticator.oauth_callback_url = hub_url + "/hub/oauth_callback"
c.GenericOAuthenticator.authorize_url = portal_url + "/oauth/authorize"
c.GenericOAuthenticator.token_url = portal_url + "/oauth/token"
c.GenericOAuthenticator.userdata_url = portal_url + "/oauth/userinfo"
c.GenericOAuthenticator.scope = ["openid", "profile", "email", "groups"]
c.GenericOAuthenticator.enable_pkce = True  # the portal refuses a code request without PKCE (S256)
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.login_service = "AI 새마을 아카데미"
c.GenericOAuthenticator.allow_all = True  # the portal decides who may start what
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.admin_groups = {"academy-admins"}
c.GenericOAuthenticator.enable_auth_state = True
c.GenericOAuthenticator.auth_refresh_age = 60  # a token revoked at the portal ends the hub session within a minute
# The portal starts servers for people who may not have visited the hub yet (no auth state to refresh):
# it checks the person itself before every launch.
c.GenericOAuthenticator.refresh_pre_spawn = False
c.GenericOAuthenticator.logout_redirect_url = portal_url + "/"


def refresh_without_sign_in(authenticator, user, auth_state):
    """A learner whose lab the portal started but who has not opened it yet has no tokens to
    refresh: their server may still report activity.  Everyone else is checked with the portal."""
    return True if not auth_state else None


c.GenericOAuthenticator.refresh_user_hook = refresh_without_sign_in
c.Authenticator.auto_login = True

# -- services: the portal (external) and the idle culler (managed) ------------------------------------------------
#: Only what the portal does: create hub users, start/stop/read their servers, reach them (contents
#: API) and delete tokens when someone signs out of the portal.
PORTAL_SCOPES = ["admin:users", "admin:servers", "access:servers", "tokens", "list:users", "read:users:activity"]
c.JupyterHub.services = [
    {"name": "academy-portal", "api_token": PORTAL_TOKEN, "display": False},
    {
        "name": "idle-culler",
        "command": [
            sys.executable, "-m", "jupyterhub_idle_culler",
            f"--timeout={env('ACADEMY_LAB_IDLE_TIMEOUT', '3600')}",
            f"--cull-every={env('ACADEMY_LAB_CULL_EVERY', '300')}",
            # A cell that never ends (an endless loop, a forgotten input()) keeps a kernel busy and so
            # its server alive: no server lives longer than this (default 12 h; GPU quotas stop sooner).
            f"--max-age={env('ACADEMY_LAB_MAX_AGE', '43200')}",
        ],
        "display": False,
    },
]
c.JupyterHub.load_roles = [
    {"name": "academy-portal", "description": "The academy portal launches and stops labs",
     "scopes": PORTAL_SCOPES, "services": ["academy-portal"]},
    {"name": "idle-culler", "description": "Stops servers without kernel activity",
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"], "services": ["idle-culler"]},
]


# -- spawner: a local process per learner, home under the data directory -----------------------------------------
def grant_signature(username, profile, device, session):
    """The portal signs each launch; the hub refuses options it did not sign (a forged profile or device)."""
    message = f"{username}|{profile}|{device}|{session}".encode()
    return hmac.new(PORTAL_TOKEN.encode(), message, hashlib.sha256).hexdigest()


class LaunchRefused(web.HTTPError):
    def __init__(self):
        super().__init__(403, "Labs are opened from the academy portal: go back to your assignment and choose "
                              "'Open lab'. (실습 환경은 아카데미 포털의 과제 화면에서 '실습 열기'로 시작합니다.)")


class AcademySpawner(SimpleLocalProcessSpawner):
    """Local process, the learners' environment, the profile's limits, the device the portal granted."""

    def _academy_options(self):
        options = self.user_options or {}
        profile = str(options.get("profile", ""))
        device = str(options.get("device", ""))
        session = str(options.get("session", ""))
        expected = grant_signature(self.user.name, profile, device, session)
        if profile not in PROFILES or not hmac.compare_digest(expected, str(options.get("grant", ""))):
            raise LaunchRefused()
        return profile, device

    def get_env(self):
        environment = super().get_env()
        profile, device = self._academy_options()
        gpus = int(PROFILES[profile].get("gpus", 0))
        # No device granted (CPU profile, or no GPU on this machine): hide every GPU from CUDA.
        environment["CUDA_VISIBLE_DEVICES"] = device if gpus and device else ""
        # A seat on a shared device: its memory (and compute) share, through MPS or PyTorch (gpu_share.py).
        environment.update(gpu_share.share_environment(PROFILES[profile], device if gpus else "", os.environ))
        environment["ACADEMY_LAB_PROFILE"] = profile
        # Course staff's authoring lab shows nbgrader's authoring tools (singleuser/jupyter_server_config.py).
        environment["ACADEMY_LAB_ROLE"] = "authoring" if profile == "authoring" else "learner"
        environment["JUPYTER_CONFIG_PATH"] = str(HERE / "singleuser")
        environment["PYTHONPATH"] = str(HERE / "singleuser")
        environment["JUPYTERHUB_ACTIVITY_INTERVAL"] = env("ACADEMY_LAB_ACTIVITY_INTERVAL", "60")
        # JupyterLab's "back to the academy" entry (singleuser/academy_lab_settings.py) opens this portal.
        environment["ACADEMY_PORTAL_URL"] = portal_url
        return environment

    async def stop(self, now=False):
        """SIGTERM first, not JupyterHub's SIGINT: Jupyter Server stops cleanly (its kernels first) on SIGTERM,
        but on SIGINT only when its stdin is a terminal, which a hub under a service manager or ``academy demo``
        does not give it (it would leave its kernels to notice they were orphaned)."""
        if not now and await self.poll() is None:
            await self._signal(signal.SIGTERM)
            await self.wait_for_death(self.interrupt_timeout)
        await super().stop(now=True)  # still running: SIGTERM again, then SIGKILL


def validate_launch(spawner):
    spawner._academy_options()
    profile = PROFILES[spawner.user_options["profile"]]
    problem = gpu_share.mps_problem(profile, os.environ)
    if problem:  # a seat whose share nothing would enforce: not started
        spawner.log.error(problem)
        raise web.HTTPError(503, "The GPU sharing service (MPS) is not running, so a shared GPU lab cannot "
                                 "open now: tell the academy's administrators. (GPU 공유 서비스(MPS)가 멈춰 있어 "
                                 "지금은 공유 GPU 실습 환경을 열 수 없습니다. 아카데미 관리자에게 알려 주세요.)")
    if profile.get("mem_limit"):
        spawner.mem_limit = profile["mem_limit"]
    if profile.get("cpu_limit"):
        spawner.cpu_limit = float(profile["cpu_limit"])


c.JupyterHub.spawner_class = AcademySpawner
c.Spawner.pre_spawn_hook = validate_launch
c.SimpleLocalProcessSpawner.home_dir_template = str(homes / "{username}")
c.Spawner.cmd = [str(lab_env / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = int(env("ACADEMY_LAB_SPAWN_TIMEOUT", "90"))
c.Spawner.http_timeout = int(env("ACADEMY_LAB_SPAWN_TIMEOUT", "90"))
if os.geteuid() == 0:
    c.Spawner.args = ["--allow-root"]


# -- start/stop events to the portal (metering), never blocking the hub ---------------------------------------------
class PortalEventHandler(logging.Handler):
    """Forwards the hub's server-action events (start/stop) to the portal in a background thread."""

    def __init__(self):
        super().__init__()
        self.queue = queue.Queue(maxsize=10000)
        threading.Thread(target=self._send_forever, name="academy-events", daemon=True).start()

    def emit(self, record):
        try:
            data = json.loads(self.format(record)) if not isinstance(record.msg, dict) else dict(record.msg)
        except ValueError:
            return
        event = {"event": data.get("action"), "user": data.get("username"), "server": data.get("servername", ""),
                 "time": data.get("__timestamp__") or datetime.datetime.now(datetime.UTC).isoformat()}
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(event)

    def _send_forever(self):
        while True:
            event = self.queue.get()
            for _attempt in range(3):
                request = urllib.request.Request(
                    portal_url + "/labs/hub-events", data=json.dumps(event).encode(), method="POST",
                    headers={"Content-Type": "application/json", "Authorization": f"token {PORTAL_TOKEN}"})
                try:
                    urllib.request.urlopen(request, timeout=5).close()
                    break
                except Exception:  # the portal is down: it reconciles with the hub's user list later
                    threading.Event().wait(1)


c.EventLogger.handlers = [PortalEventHandler()]
