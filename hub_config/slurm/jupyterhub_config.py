"""JupyterHub on a Slurm cluster (scale path): each learner's lab is a Slurm job (batchspawner).

An example for the operator of a university or research-centre cluster; see README.md beside it.
Started on the hub host (a login or service node that can run ``sbatch``) as
``jupyterhub -f hub_config/slurm/jupyterhub_config.py`` with these environment variables:

  ACADEMY_HUB_URL              public address of the hub, e.g. https://lab.academy.example
  ACADEMY_HUB_CONNECT_URL      how compute nodes reach the hub's API, e.g. http://hub-node.cluster:8081
  ACADEMY_PORTAL_URL           the portal: OpenID Connect provider and receiver of stop events
  ACADEMY_HUB_API_TOKEN        the portal's service token (also signs launch grants)
  ACADEMY_HUB_CLIENT_SECRET    OAuth client secret of the hub at the portal
  JUPYTERHUB_CRYPT_KEY         encrypts auth state (``openssl rand -hex 32``)
  ACADEMY_LAB_ENV              learners' Python environment on the shared file system, built from
                               hub_config/lab-requirements.txt plus batchspawner (default /opt/academy/lab)
  ACADEMY_LAB_PROFILES         profiles file (default: hub_config/profiles.toml)
  ACADEMY_HUB_STATE_DIR        hub database and cookie secret (default /srv/jupyterhub)
  ACADEMY_SLURM_ACCOUNT        Slurm account to charge (default: none)
  ACADEMY_SLURM_RUNTIME        wall time of a lab job (default 08:00:00)
  ACADEMY_HUB_SPAWN_LIMIT      concurrent spawns (default 40)
  ACADEMY_LAB_IDLE_TIMEOUT     seconds without kernel activity before a server is culled (default 3600)
  ACADEMY_LAB_CULL_EVERY       how often the culler looks (default 300)
"""

# ruff: noqa: F821  (``get_config`` is provided by JupyterHub when it loads this file)

import asyncio
import datetime
import hashlib
import hmac
import json
import math
import os
import sys
import tomllib
from pathlib import Path

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

c = get_config()  # noqa: F821

HERE = Path(__file__).resolve().parent


def env(name, default=None):
    """An environment variable, or ``default`` when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or default


def required(name):
    """An environment variable the deployment cannot run without."""
    value = env(name)
    if not value:
        raise SystemExit(f"hub_config/slurm/jupyterhub_config.py: set {name}")
    return value


hub_url = env("ACADEMY_HUB_URL", "https://lab.academy.example").rstrip("/")
portal_url = env("ACADEMY_PORTAL_URL", "https://portal.academy.example").rstrip("/")
PORTAL_TOKEN = required("ACADEMY_HUB_API_TOKEN")
lab_env = Path(env("ACADEMY_LAB_ENV", "/opt/academy/lab"))
state_dir = Path(env("ACADEMY_HUB_STATE_DIR", "/srv/jupyterhub"))
profiles_file = Path(env("ACADEMY_LAB_PROFILES", str(HERE.parent / "profiles.toml")))
PROFILES = tomllib.loads(profiles_file.read_text(encoding="utf-8"))["profiles"]

#: How each lab profile of profiles.toml becomes a Slurm request. Partition names are the site's.
#: gpu-shared uses Slurm's GPU sharding (Slurm 22.05+): gres.conf offers each GPU as ``per_device``
#: shards (``Name=shard Count=4``), so up to four labs share one device.
SLURM = {
    "cpu": {"partition": "cpu", "gres": ""},
    "gpu": {"partition": "gpu", "gres": "gpu:1"},
    "gpu-shared": {"partition": "gpu", "gres": "shard:1"},
    "authoring": {"partition": "cpu", "gres": ""},
}

# -- network: the proxy faces the learners, the hub's API faces the compute nodes ---------------------------------
c.JupyterHub.bind_url = hub_url + "/"
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = env("ACADEMY_HUB_CONNECT_URL", "http://hub-node.cluster:8081")
c.JupyterHub.db_url = f"sqlite:///{state_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = False  # a hub restart must not cancel running lab jobs
c.JupyterHub.concurrent_spawn_limit = int(env("ACADEMY_HUB_SPAWN_LIMIT", "40"))
# Activity comes from the servers' kernels only (hub_config/singleuser/academy_lab_activity.py).
c.JupyterHub.last_activity_interval = 0

# -- sign-in: the portal is the OpenID Connect provider ----------------------------------------------------------
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.client_id = "jupyterhub"
c.GenericOAuthenticator.client_secret = required("ACADEMY_HUB_CLIENT_SECRET")
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
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"  # the userinfo "groups" claim
c.GenericOAuthenticator.admin_groups = {"academy-admins"}
c.GenericOAuthenticator.enable_auth_state = True
c.GenericOAuthenticator.auth_refresh_age = 60  # a session revoked at the portal ends here within a minute
c.GenericOAuthenticator.logout_redirect_url = portal_url + "/"
# The portal starts servers for learners who have not opened the hub yet (no tokens to refresh).
c.GenericOAuthenticator.refresh_pre_spawn = False
c.Authenticator.auto_login = True

# -- services: the portal (external) and the idle culler (managed) ------------------------------------------------
c.JupyterHub.services = [
    {"name": "academy-portal", "api_token": PORTAL_TOKEN, "display": False},
    {
        "name": "idle-culler",
        "command": [
            sys.executable, "-m", "jupyterhub_idle_culler",
            f"--timeout={env('ACADEMY_LAB_IDLE_TIMEOUT', '3600')}",
            f"--cull-every={env('ACADEMY_LAB_CULL_EVERY', '300')}",
        ],
        "display": False,
    },
]
c.JupyterHub.load_roles = [
    {
        "name": "academy-portal",
        "description": "The academy portal creates hub users, starts, stops and reaches their labs",
        "scopes": ["admin:users", "admin:servers", "access:servers", "read:users:activity", "list:users", "tokens"],
        "services": ["academy-portal"],
    },
    {
        "name": "idle-culler",
        "description": "Stops servers without kernel activity",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    },
]

# -- spawner: one Slurm job per lab --------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.SlurmSpawner.batchspawner_singleuser_cmd = str(lab_env / "bin" / "batchspawner-singleuser")
c.SlurmSpawner.cmd = [str(lab_env / "bin" / "jupyterhub-singleuser")]
c.SlurmSpawner.default_url = "/lab"
c.SlurmSpawner.req_runtime = env("ACADEMY_SLURM_RUNTIME", "08:00:00")
c.SlurmSpawner.req_account = env("ACADEMY_SLURM_ACCOUNT", "")
c.SlurmSpawner.req_prologue = f"export PATH={lab_env / 'bin'}:$PATH"
c.SlurmSpawner.environment = {
    # jupyter_server_config.py and the academy_lab_activity extension (idle culling follows kernels)
    "JUPYTER_CONFIG_PATH": str(HERE.parent / "singleuser"),
    "PYTHONPATH": str(HERE.parent / "singleuser"),
    "JUPYTERHUB_ACTIVITY_INTERVAL": "60",
    # JupyterLab's "back to the academy" entry (singleuser/academy_lab_settings.py) opens this portal.
    "ACADEMY_PORTAL_URL": portal_url,
}
c.SlurmSpawner.start_timeout = 600  # a job may wait in the queue
c.SlurmSpawner.http_timeout = 120


def grant_signature(username, profile, device, session):
    """The portal signs each launch with its token (as for the local hub and Kubernetes)."""
    message = f"{username}|{profile}|{device}|{session}".encode()
    return hmac.new(PORTAL_TOKEN.encode(), message, hashlib.sha256).hexdigest()


def academy_prepare_job(spawner):
    """Check the portal's launch grant, then turn the lab profile into the Slurm request.

    Raises a 403 for a launch the portal did not sign or a profile that is not in profiles.toml.
    batchspawner copies ``user_options`` into the batch script's variables, so after the check only
    the validated profile name is kept: nothing a learner sends can change the job's resources.
    """
    options = spawner.user_options or {}
    profile = str(options.get("profile", ""))
    expected = grant_signature(
        spawner.user.name, profile, str(options.get("device", "")), str(options.get("session", ""))
    )
    if profile not in PROFILES or profile not in SLURM or not hmac.compare_digest(
        expected, str(options.get("grant", ""))
    ):
        raise web.HTTPError(403, "Labs are started from the academy portal (unsigned or unknown profile)")
    limits, slurm = PROFILES[profile], SLURM[profile]
    spawner.req_partition = slurm["partition"]
    spawner.req_gres = slurm["gres"]
    spawner.req_memory = str(limits["mem_limit"])
    spawner.req_nprocs = str(math.ceil(float(limits["cpu_limit"])))
    spawner.mem_limit = str(limits["mem_limit"])
    spawner.cpu_limit = float(limits["cpu_limit"])
    spawner.environment = {**spawner.environment, "ACADEMY_LAB_PROFILE": profile,
                           "ACADEMY_LAB_ROLE": "authoring" if profile == "authoring" else "learner"}
    spawner.user_options = {"profile": profile}


c.SlurmSpawner.pre_spawn_hook = academy_prepare_job

# -- stop events to the portal (GPU-hour metering), never blocking the hub -----------------------------------------
_event_tasks = set()


async def send_portal_event(event, log):
    """POST one event to ``$ACADEMY_PORTAL_URL/labs/hub-events``, three tries, never raising."""
    headers = {"Authorization": f"token {PORTAL_TOKEN}", "Content-Type": "application/json"}
    client = AsyncHTTPClient(force_instance=True)
    try:
        for delay in (1, 5, 0):
            try:
                request = HTTPRequest(portal_url + "/labs/hub-events", method="POST", headers=headers,
                                      body=json.dumps(event), connect_timeout=5, request_timeout=10)
                await client.fetch(request)
                return
            except Exception as error:  # the portal is away: it reconciles with the hub's user list later
                log.warning("academy: could not send %s event to the portal: %s", event["event"], error)
                if delay:
                    await asyncio.sleep(delay)
    finally:
        client.close()


def academy_post_stop_hook(spawner):
    """Queue a stop event for the portal and return at once (learner, admin, culler, wall time, crash)."""
    try:
        event = {
            "event": "stop",
            "user": spawner.user.name,
            "server": spawner.name,
            "time": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        loop = asyncio.get_running_loop()  # the hub's; RuntimeError outside it
        task = loop.create_task(send_portal_event(event, spawner.log))
        _event_tasks.add(task)
        task.add_done_callback(_event_tasks.discard)
    except Exception:
        spawner.log.exception("academy: stop event not sent")


c.SlurmSpawner.post_stop_hook = academy_post_stop_hook
