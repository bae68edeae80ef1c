"""The scale-path hub configurations load, use real traits and agree with profiles.toml.

hub_config/k8s/values.yaml (Zero to JupyterHub, KubeSpawner) and hub_config/slurm/jupyterhub_config.py
(batchspawner) cannot be deployed here, so each is loaded the way its hub loads it and checked against
the classes that will read it: a misspelt trait, a profile that drifted from profiles.toml, a scope that
JupyterHub does not know or a hook that raises fails a test.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import hashlib
import hmac
import http.server
import json
import logging
import re
import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_asyncio.config.kube_config
import kubespawner.clients
import pytest
import yaml
from batchspawner import SlurmSpawner
from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
from jupyterhub.app import JupyterHub
from jupyterhub.auth import Authenticator
from jupyterhub.scopes import scope_definitions
from jupyterhub.services.service import Service
from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import HasTraits
from traitlets.config import Config, PyFileConfigLoader
from traitlets.utils.importstring import import_item

from tests.support import ROOT

HUB = ROOT / "hub_config"
PROFILES: dict[str, dict[str, Any]] = tomllib.loads((HUB / "profiles.toml").read_text(encoding="utf-8"))["profiles"]
TOKEN = "portal-service-token-for-tests"
#: Classes a section of these configurations may configure, by the name used in ``c.<Name>``.
CONFIGURABLE: dict[str, type[HasTraits]] = {
    cls.__name__: cls
    for cls in (JupyterHub, Authenticator, GenericOAuthenticator, Spawner, KubeSpawner, SlurmSpawner,
                MappingKernelManager)
}
KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: test
clusters: [{name: test, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: test, context: {cluster: test, user: test, namespace: academy-lab}}]
users: [{name: test, user: {token: test}}]
"""


def grant(user: str, profile: str, device: str = "", session: str = "s1", token: str = TOKEN) -> dict[str, str]:
    """user_options as the portal sends them: the profile and its launch grant."""
    message = f"{user}|{profile}|{device}|{session}".encode()
    signature = hmac.new(token.encode(), message, hashlib.sha256).hexdigest()
    return {"profile": profile, "device": device, "session": session, "grant": signature}


def assert_known_traits(config: Config) -> None:
    """Every ``c.Class.name`` in ``config`` names a configurable trait of that class."""
    for section, settings in config.items():
        assert section in CONFIGURABLE, f"c.{section} configures a class these tests do not know"
        traits = CONFIGURABLE[section].class_trait_names(config=True)
        for name in settings:
            assert name in traits, f"c.{section}.{name} is not a configurable trait"


def local_hub_definition(name: str) -> ast.stmt:
    """A top-level function or assignment of the local hub's config, to compare with the examples."""
    tree = ast.parse((HUB / "jupyterhub_config.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node
    raise AssertionError(f"hub_config/jupyterhub_config.py no longer defines {name}")


# -- Kubernetes ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    """hub_config/k8s/values.yaml as Helm reads it."""
    return yaml.safe_load((HUB / "k8s" / "values.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def profile_list(values: dict[str, Any]) -> list[dict[str, Any]]:
    """singleuser.profileList, which the chart hands to KubeSpawner.profile_list unchanged."""
    return values["singleuser"]["profileList"]


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A kubeconfig naming an unreachable cluster: KubeSpawner builds its client but never calls it."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    # kubernetes_asyncio reads $KUBECONFIG once, at import; kubespawner loads the configuration once.
    monkeypatch.setattr(kubernetes_asyncio.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    kubespawner.clients.load_config.cache_clear()
    yield
    kubespawner.clients.load_config.cache_clear()


def run_extra_config(values: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """Execute hub.extraConfig in key order with ``c`` and ``get_config``, as the chart's config does."""
    config = Config()
    config.KubeSpawner.profile_list = values["singleuser"]["profileList"]  # the chart sets it before extraConfig
    namespace: dict[str, Any] = {"c": config, "get_config": lambda: config}
    for key, source in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(source, f"values.yaml:hub.extraConfig.{key}", "exec"), namespace)
    return config, namespace


def test_profile_slugs_are_the_profiles_of_profiles_toml(profile_list: list[dict[str, Any]]) -> None:
    assert [p["slug"] for p in profile_list] == list(PROFILES)
    defaults = [p["slug"] for p in profile_list if p.get("default")]
    assert defaults == ["cpu"], "a launch without a profile must never get a GPU"
    for entry in profile_list:
        title = PROFILES[entry["slug"]]["title"]
        assert title["ko"] in entry["display_name"] and title["en"] in entry["display_name"]


def test_overrides_are_valid_kubespawner_traits(profile_list: list[dict[str, Any]]) -> None:
    traits = KubeSpawner.class_traits(config=True)
    for entry in profile_list:
        for name, value in entry["kubespawner_override"].items():
            assert name in traits, f"{entry['slug']}: {name} is not a configurable KubeSpawner trait"
            probe = type("Probe", (HasTraits,), {name: copy.deepcopy(traits[name])})
            probe(**{name: value})  # raises TraitError for a value of the wrong kind


def test_limits_follow_profiles_toml(profile_list: list[dict[str, Any]]) -> None:
    for entry in profile_list:
        override, profile = entry["kubespawner_override"], PROFILES[entry["slug"]]
        assert override["cpu_limit"] == profile["cpu_limit"]
        assert override["mem_limit"] == profile["mem_limit"]


def test_gpu_profiles_ask_for_a_gpu_on_gpu_nodes(profile_list: list[dict[str, Any]]) -> None:
    for entry in profile_list:
        override, profile = entry["kubespawner_override"], PROFILES[entry["slug"]]
        if not profile["gpus"]:
            assert not override.get("extra_resource_limits"), "a CPU lab must not hold a GPU"
            continue
        resource = "nvidia.com/gpu.shared" if profile.get("shared") else "nvidia.com/gpu"
        assert override["extra_resource_limits"] == {resource: str(profile["gpus"])}
        assert override["node_selector"]["nvidia.com/gpu.present"] == "true"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in override["tolerations"]


@pytest.mark.usefixtures("kubeconfig")
def test_each_profile_becomes_a_pod_with_its_limits(profile_list: list[dict[str, Any]]) -> None:
    """KubeSpawner applies the profile the portal names and builds the pod the cluster would get."""

    async def pod_for(slug: str) -> Any:
        config = Config()
        config.KubeSpawner.profile_list = profile_list
        spawner = KubeSpawner(_mock=True, config=config)
        spawner.user_options = {"profile": slug}
        await spawner.load_user_options()
        return await spawner.get_pod_manifest()

    for slug, profile in PROFILES.items():
        pod = asyncio.run(pod_for(slug))
        limits = pod.spec.containers[0].resources.limits
        assert limits["cpu"] == profile["cpu_limit"]
        assert limits["memory"] == int(profile["mem_limit"].rstrip("G")) * 1024**3
        gpu_limits = {k: v for k, v in limits.items() if k.startswith("nvidia.com/")}
        assert gpu_limits == ({} if not profile["gpus"] else {next(iter(gpu_limits), "-"): str(profile["gpus"])})
        if profile["gpus"]:
            assert pod.spec.node_selector["nvidia.com/gpu.present"] == "true"


async def _pod_limits(profile_list: list[dict[str, Any]], slug: str) -> dict[str, Any]:
    config = Config()
    config.KubeSpawner.profile_list = profile_list
    spawner = KubeSpawner(_mock=True, config=config)
    spawner.user_options = {"profile": slug}
    await spawner.load_user_options()
    return (await spawner.get_pod_manifest()).spec.containers[0].resources.limits


@pytest.mark.usefixtures("kubeconfig")
def test_without_gpu_resource_settings_the_profiles_are_as_listed(
    values: dict[str, Any], profile_list: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACADEMY_K8S_GPU_RESOURCES", raising=False)
    assert run_extra_config(values)[0].KubeSpawner.profile_list == profile_list
    monkeypatch.setenv("ACADEMY_K8S_GPU_RESOURCES", values["hub"]["extraEnv"]["ACADEMY_K8S_GPU_RESOURCES"])
    assert run_extra_config(values)[0].KubeSpawner.profile_list == profile_list


@pytest.mark.usefixtures("kubeconfig")
def test_a_mig_cluster_gives_gpu_profiles_mig_instances(
    values: dict[str, Any], profile_list: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MIG resource names reach the pod KubeSpawner builds; the other profiles and limits stay as listed."""
    monkeypatch.setenv("ACADEMY_K8S_GPU_RESOURCES", " gpu-shared = nvidia.com/mig-1g.18gb, gpu=nvidia.com/mig-7g.141gb")
    swapped = run_extra_config(values)[0].KubeSpawner.profile_list
    assert [p["slug"] for p in swapped] == [p["slug"] for p in profile_list]
    shared = asyncio.run(_pod_limits(swapped, "gpu-shared"))
    assert {k: v for k, v in shared.items() if k.startswith("nvidia.com/")} == {"nvidia.com/mig-1g.18gb": "1"}
    assert shared["cpu"] == PROFILES["gpu-shared"]["cpu_limit"]
    whole = asyncio.run(_pod_limits(swapped, "gpu"))
    assert {k: v for k, v in whole.items() if k.startswith("nvidia.com/")} == {"nvidia.com/mig-7g.141gb": "1"}
    cpu = asyncio.run(_pod_limits(swapped, "cpu"))
    assert not [k for k in cpu if k.startswith("nvidia.com/")]
    # the values as listed are untouched (the chart hands KubeSpawner its own copy)
    assert profile_list[2]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu.shared": "1"}


@pytest.mark.parametrize(("setting", "message"), [
    ("gpu-shared", "is not <profile>=<NVIDIA resource>"),
    ("gpu-shared=amd.com/gpu", "is not <profile>=<NVIDIA resource>"),
    ("gpu-shared=nvidia.com/mig-9g.10gb", "is not <profile>=<NVIDIA resource>"),
    ("=nvidia.com/gpu", "is not <profile>=<NVIDIA resource>"),
    ("cpu=nvidia.com/mig-1g.18gb", "'cpu' is not a GPU profile"),
    ("gpu-xl=nvidia.com/mig-1g.18gb", "no profile gpu-xl"),
])
def test_a_wrong_gpu_resource_setting_stops_the_hub_with_the_reason(
    values: dict[str, Any], monkeypatch: pytest.MonkeyPatch, setting: str, message: str
) -> None:
    monkeypatch.setenv("ACADEMY_K8S_GPU_RESOURCES", setting)
    with pytest.raises(ValueError, match=re.escape(message)):
        run_extra_config(values)


@pytest.mark.usefixtures("kubeconfig")
def test_kubespawner_refuses_a_profile_not_in_the_list(profile_list: list[dict[str, Any]]) -> None:
    async def load(options: dict[str, str]) -> None:
        config = Config()
        config.KubeSpawner.profile_list = profile_list
        spawner = KubeSpawner(_mock=True, config=config)
        spawner.user_options = options
        await spawner.load_user_options()

    with pytest.raises(ValueError, match="No such profile"):
        asyncio.run(load({"profile": "gpu-xl"}))


def test_extra_config_is_python_that_sets_known_traits(values: dict[str, Any]) -> None:
    config, _ = run_extra_config(values)
    assert_known_traits(config)
    assert callable(config.KubeSpawner.pre_spawn_hook)
    assert callable(config.Spawner.post_stop_hook)


def test_launch_grant_admits_only_what_the_portal_signed(
    values: dict[str, Any], profile_list: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACADEMY_HUB_API_TOKEN", TOKEN)
    config, _ = run_extra_config(values)
    check = config.KubeSpawner.pre_spawn_hook

    def spawner(options: dict[str, str]) -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(name="learner1"), user_options=options, profile_list=profile_list)

    for slug in PROFILES:
        check(spawner(grant("learner1", slug)))
    refused = [
        {"profile": "gpu"},  # no grant: a learner calling the hub's API directly
        grant("learner1", "cpu") | {"profile": "gpu"},  # a CPU grant reused for a GPU
        grant("learner2", "gpu"),  # someone else's grant
        grant("learner1", "gpu", token="not-the-portal"),
        grant("learner1", "gpu-xl"),  # signed, but not a profile
        {},
    ]
    for options in refused:
        with pytest.raises(web.HTTPError) as error:
            check(spawner(options))
        assert error.value.status_code == 403
    monkeypatch.delenv("ACADEMY_HUB_API_TOKEN")
    with pytest.raises(web.HTTPError):
        check(spawner(grant("learner1", "cpu", token="")))


def test_launch_grant_is_signed_as_for_the_local_hub() -> None:
    """The portal signs one way for every deployment: the local hub's grant_signature agrees with ours."""
    namespace: dict[str, Any] = {"hmac": hmac, "hashlib": hashlib, "PORTAL_TOKEN": TOKEN}
    exec(compile(ast.Module([local_hub_definition("grant_signature")], []), "jupyterhub_config.py", "exec"), namespace)
    assert namespace["grant_signature"]("learner1", "gpu", "", "s1") == grant("learner1", "gpu")["grant"]


class EventReceiver(http.server.BaseHTTPRequestHandler):
    """The portal's /labs/hub-events, recording what the hub posts."""

    received: list[tuple[str, str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, self.headers["Authorization"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def portal() -> Iterator[str]:
    """A stand-in portal on a free loopback port."""
    EventReceiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EventReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def fake_spawner() -> SimpleNamespace:
    """What the stop hook reads from a spawner."""
    return SimpleNamespace(user=SimpleNamespace(name="learner1"), name="", log=logging.getLogger("test.hub"))


async def call_stop_hook(hook: Any, tasks: set[asyncio.Task[None]], wait: bool) -> Any:
    """Call the hook inside a running loop, as the hub does; optionally let the background post finish."""
    result = hook(fake_spawner())
    assert tasks, "the hook queued no event"
    if wait:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    else:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


def test_stop_hook_posts_a_stop_event_to_the_portal(
    values: dict[str, Any], portal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACADEMY_PORTAL_URL", portal + "/")
    monkeypatch.setenv("ACADEMY_HUB_API_TOKEN", TOKEN)
    config, namespace = run_extra_config(values)
    result = asyncio.run(call_stop_hook(config.Spawner.post_stop_hook, namespace["_academy_event_tasks"], wait=True))
    assert result is None, "the hub must not wait for the portal"
    [(path, authorization, body)] = EventReceiver.received
    assert (path, authorization) == ("/labs/hub-events", f"token {TOKEN}")
    assert {k: body[k] for k in ("event", "user", "server")} == {"event": "stop", "user": "learner1", "server": ""}
    assert body["time"].endswith("+00:00")


def test_stop_hook_never_raises_when_the_portal_is_down(
    values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("ACADEMY_PORTAL_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ACADEMY_HUB_API_TOKEN", TOKEN)
    config, namespace = run_extra_config(values)
    hook, tasks = config.Spawner.post_stop_hook, namespace["_academy_event_tasks"]
    assert asyncio.run(call_stop_hook(hook, tasks, wait=False)) is None
    # Outside any event loop (no hub running) it logs and returns.
    assert config.Spawner.post_stop_hook(fake_spawner()) is None


def test_oauthenticator_settings_are_valid(values: dict[str, Any]) -> None:
    hub_config = Config(values["hub"]["config"])
    assert_known_traits(hub_config)
    assert JupyterHub.class_traits()["authenticator_class"].validate(None, "generic-oauth") is GenericOAuthenticator
    authenticator = GenericOAuthenticator(config=hub_config)
    assert authenticator.client_id == "jupyterhub"
    assert authenticator.authorize_url.endswith("/oauth/authorize")
    assert authenticator.token_url.endswith("/oauth/token")
    assert authenticator.userdata_url.endswith("/oauth/userinfo")
    assert authenticator.logout_redirect_url.endswith("/")  # the portal home (its sign-out is a POST)
    assert authenticator.refresh_pre_spawn is False
    assert authenticator.scope == ["openid", "profile", "email", "groups"]
    assert authenticator.enable_auth_state and authenticator.allow_all and authenticator.auth_refresh_age == 60


def test_groups_claim_makes_portal_admins_hub_admins(values: dict[str, Any]) -> None:
    """The groups claim of the portal's userinfo is where auth_state_groups_key looks."""
    authenticator = GenericOAuthenticator(config=Config(values["hub"]["config"]))
    userinfo = {"sub": "7", "preferred_username": "admin1", "groups": ["academy-admins", "course-ai-101"]}
    auth_state = authenticator.build_auth_state_dict({"access_token": "a", "token_type": "Bearer"}, userinfo)
    groups = asyncio.run(authenticator.get_user_groups(auth_state))
    assert groups == {"academy-admins", "course-ai-101"}
    assert groups & authenticator.admin_groups


def test_portal_service_has_only_its_scopes(values: dict[str, Any]) -> None:
    services, roles = values["hub"]["services"], values["hub"]["loadRoles"]
    service_fields = Service.class_trait_names()
    for name, service in services.items():
        fields = set(service) - {"apiToken"}  # the chart turns apiToken into api_token
        assert fields <= set(service_fields), f"hub.services.{name}: unknown fields {fields - set(service_fields)}"
    role = roles["academy-portal"]
    assert set(role) <= {"name", "description", "scopes", "users", "services", "groups"}
    assert role["services"] == ["academy-portal"] and "academy-portal" in services
    assert set(role["scopes"]) <= set(scope_definitions), set(role["scopes"]) - set(scope_definitions)
    local_scopes = ast.literal_eval(local_hub_definition("PORTAL_SCOPES").value)
    assert sorted(role["scopes"]) == sorted(local_scopes), "the portal's role differs from the local hub's"


def test_culling_follows_kernel_activity(values: dict[str, Any]) -> None:
    cull = values["cull"]
    assert cull["enabled"] is True and (cull["timeout"], cull["every"]) == (3600, 300)
    assert values["hub"]["config"]["JupyterHub"]["last_activity_interval"] == 0
    assert values["hub"]["concurrentSpawnLimit"] >= 30
    server_config = PyFileConfigLoader("jupyter_server_config.py", path=str(HUB / "singleuser")).load_config()
    assert server_config.MappingKernelManager.cull_busy is False
    assert "academy_lab_activity" in server_config.ServerApp.jpserver_extensions


def test_labs_are_told_the_portal_address(values: dict[str, Any]) -> None:
    """JupyterLab's "back to the academy" entry (singleuser/academy_lab_settings.py) opens the portal of the hub."""
    portal = values["hub"]["extraEnv"]["ACADEMY_PORTAL_URL"]
    assert values["singleuser"]["extraEnv"]["ACADEMY_PORTAL_URL"] == portal
    assert values["hub"]["config"]["GenericOAuthenticator"]["authorize_url"].startswith(portal + "/")
    assert (HUB / "singleuser" / "academy_lab_settings.py").exists()  # in the image: COPY singleuser/


def test_image_is_built_from_lab_requirements(values: dict[str, Any]) -> None:
    dockerfile = (HUB / "k8s" / "Dockerfile").read_text(encoding="utf-8")
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copied == ["lab-requirements.txt", "singleuser/"]
    assert all((HUB / path).exists() for path in copied)
    assert "jupyterlab-language-pack-ko-KR" in (HUB / "lab-requirements.txt").read_text(encoding="utf-8")
    image = values["singleuser"]["image"]
    assert image["name"].startswith("registry.academy.example/") and isinstance(image["tag"], str)


# -- Slurm -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def slurm_config(monkeypatch: pytest.MonkeyPatch) -> Config:
    """hub_config/slurm/jupyterhub_config.py loaded by traitlets, as ``jupyterhub -f`` loads it."""
    monkeypatch.setenv("ACADEMY_HUB_API_TOKEN", TOKEN)
    monkeypatch.setenv("ACADEMY_HUB_CLIENT_SECRET", "client-secret")
    monkeypatch.setenv("ACADEMY_PORTAL_URL", "https://portal.academy.example")
    return PyFileConfigLoader("jupyterhub_config.py", path=str(HUB / "slurm")).load_config()


def test_slurm_config_sets_known_traits(slurm_config: Config) -> None:
    assert_known_traits(slurm_config)
    spawner_class = import_item(slurm_config.JupyterHub.spawner_class)
    assert issubclass(spawner_class, SlurmSpawner)
    GenericOAuthenticator(config=slurm_config)  # values of the right kind, groups settings consistent


def test_slurm_labs_are_told_the_portal_address(slurm_config: Config) -> None:
    assert slurm_config.SlurmSpawner.environment["ACADEMY_PORTAL_URL"] == "https://portal.academy.example"
    assert slurm_config.GenericOAuthenticator.authorize_url.startswith("https://portal.academy.example/")


def test_slurm_config_refuses_to_start_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACADEMY_HUB_API_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="ACADEMY_HUB_API_TOKEN"):
        PyFileConfigLoader("jupyterhub_config.py", path=str(HUB / "slurm")).load_config()


def test_slurm_services_and_roles_match_kubernetes(slurm_config: Config, values: dict[str, Any]) -> None:
    services = {s["name"]: s for s in slurm_config.JupyterHub.services}
    assert services["academy-portal"]["api_token"] == TOKEN
    for service in services.values():
        assert set(service) <= set(Service.class_trait_names())
    roles = {r["name"]: r for r in slurm_config.JupyterHub.load_roles}
    assert roles["academy-portal"]["scopes"] == values["hub"]["loadRoles"]["academy-portal"]["scopes"]
    for role in roles.values():
        assert set(role["scopes"]) <= set(scope_definitions)
        assert set(role["services"]) <= set(services)
    assert "jupyterhub_idle_culler" in services["idle-culler"]["command"]
    assert {"--timeout=3600", "--cull-every=300"} <= set(services["idle-culler"]["command"])


def slurm_job_script(config: Config, options: dict[str, str]) -> str:
    """The batch script SlurmSpawner would submit for a launch with these user_options."""
    spawner = SlurmSpawner(config=config, user=SimpleNamespace(name="learner1"), hub=SimpleNamespace())
    spawner.user_options = options
    spawner.pre_spawn_hook(spawner)
    spawner.req_homedir, spawner.req_keepvars = "/home/learner1", "PATH"
    subvars = spawner.get_req_subvars() | {"cmd": "jupyterhub-singleuser"} | spawner.user_options
    return asyncio.run(spawner._get_batch_script(**subvars))


def test_slurm_profiles_become_job_requests(slurm_config: Config) -> None:
    expected = {
        "cpu": ["#SBATCH --partition=cpu", "#SBATCH --mem=2G", "#SBATCH --cpus-per-task=1"],
        "gpu": ["#SBATCH --partition=gpu", "#SBATCH --mem=8G", "#SBATCH --cpus-per-task=2", "#SBATCH --gres=gpu:1"],
        "gpu-shared": ["#SBATCH --partition=gpu", "#SBATCH --mem=4G", "#SBATCH --gres=shard:1"],
        "authoring": ["#SBATCH --partition=cpu", "#SBATCH --mem=2G", "#SBATCH --cpus-per-task=1"],
    }
    assert set(expected) == set(PROFILES)
    for slug, lines in expected.items():
        script = slurm_job_script(slurm_config, grant("learner1", slug))
        for line in lines:
            assert line in script.splitlines(), f"{slug}: {line} missing from\n{script}"
        assert ("--gres" in script) == bool(PROFILES[slug]["gpus"])


def test_slurm_ignores_options_the_portal_did_not_grant(slurm_config: Config) -> None:
    """batchspawner copies user_options into the script: only the checked profile name may get there."""
    forged = grant("learner1", "cpu") | {"options": "--gres=gpu:8", "partition": "gpu", "prologue": "curl evil"}
    script = slurm_job_script(slurm_config, forged)
    assert "gpu" not in script and "curl" not in script
    for options in ({"profile": "gpu"}, grant("learner1", "gpu-xl"), grant("learner2", "gpu")):
        with pytest.raises(web.HTTPError):
            slurm_job_script(slurm_config, options)


def test_slurm_stop_hook_posts_a_stop_event(slurm_config: Config, portal: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACADEMY_PORTAL_URL", portal)
    hook = PyFileConfigLoader("jupyterhub_config.py", path=str(HUB / "slurm")).load_config().SlurmSpawner.post_stop_hook
    assert asyncio.run(call_stop_hook(hook, hook.__globals__["_event_tasks"], wait=True)) is None
    [(path, authorization, body)] = EventReceiver.received
    assert (path, authorization) == ("/labs/hub-events", f"token {TOKEN}")
    assert set(body) == {"event", "user", "server", "time"} and body["event"] == "stop"
    assert hook(fake_spawner()) is None  # outside the hub's loop: logged, not raised
