"""JupyterLab settings of the learners' labs (hub_config/singleuser): the portal's address becomes a File-menu
entry and a top-bar button, the duplicate sign-out and the hub's control panel go, and a bad address is left out.

These check the files the server reads; tests/labs/test_lab_portal_link.py checks what Chromium shows.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from traitlets.config import PyFileConfigLoader

from tests.support import ROOT

SINGLEUSER = ROOT / "hub_config" / "singleuser"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("academy_lab_settings", SINGLEUSER / "academy_lab_settings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _file_items(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    menus = overrides["@jupyterlab/mainmenu-extension:plugin"]["menus"]
    return next(m for m in menus if m["id"] == "jp-mainmenu-file")["items"]


def _server_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, portal: str | None,
                   role: str | None = None) -> Any:
    """hub_config/singleuser/jupyter_server_config.py as jupyterhub-singleuser loads it, in a server's environment."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    if role is None:
        monkeypatch.delenv("ACADEMY_LAB_ROLE", raising=False)
    else:
        monkeypatch.setenv("ACADEMY_LAB_ROLE", role)
    if portal is None:
        monkeypatch.delenv("ACADEMY_PORTAL_URL", raising=False)
    else:
        monkeypatch.setenv("ACADEMY_PORTAL_URL", portal)
    return PyFileConfigLoader("jupyter_server_config.py", path=str(SINGLEUSER)).load_config()


def test_the_portal_url_becomes_a_menu_entry_and_a_top_bar_button(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    config = _server_config(monkeypatch, tmp_path, "https://portal.academy.example/")
    settings_dir = Path(config.LabApp.app_settings_dir)
    assert settings_dir == tmp_path / "runtime" / "academy-lab-settings"
    overrides = json.loads((settings_dir / "overrides.json").read_text(encoding="utf-8"))
    expected = {"url": "https://portal.academy.example/dashboard", "text": "아카데미로 돌아가기 · Back to the academy",
                "newBrowserTab": True}
    [entry] = [item for item in _file_items(overrides) if item["command"] == "help:open"]
    assert entry["args"] == expected
    [button] = overrides["@jupyterlab/application-extension:top-bar"]["toolbar"]
    assert (button["name"], button["command"], button["args"]) == ("academy-portal", "help:open", expected)
    assert button["label"].startswith("아카데미로 돌아가기")
    # The fixed settings are still there: Korean interface, one sign-out (the hub's), no hub control panel.
    assert overrides["@jupyterlab/translation-extension:plugin"]["locale"] == "ko_KR"
    disabled = {item["command"] for item in _file_items(overrides) if item.get("disabled")}
    assert disabled == {"filemenu:logout", "hub:control-panel"}


def test_a_new_start_writes_the_current_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _server_config(monkeypatch, tmp_path, "http://127.0.0.1:5000")
    config = _server_config(monkeypatch, tmp_path, "https://portal.new.example")
    text = (Path(config.LabApp.app_settings_dir) / "overrides.json").read_text(encoding="utf-8")
    assert "portal.new.example/dashboard" in text and "127.0.0.1:5000" not in text
    assert sorted(p.name for p in Path(config.LabApp.app_settings_dir).iterdir()) == ["overrides.json",
                                                                                      "page_config.json"]


@pytest.mark.parametrize("portal", [None, "", "javascript:alert(1)", "portal.academy.example", "ftp://portal.example",
                                    'https://portal.example/"><script>', "https://"])
def test_without_a_usable_portal_address_there_is_no_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           portal: str | None) -> None:
    config = _server_config(monkeypatch, tmp_path, portal)
    overrides = json.loads((Path(config.LabApp.app_settings_dir) / "overrides.json").read_text(encoding="utf-8"))
    static = json.loads((SINGLEUSER / "lab-settings" / "overrides.json").read_text(encoding="utf-8"))
    assert overrides == static  # the fixed settings, nothing added
    assert not [item for item in _file_items(overrides) if item["command"] == "help:open"]
    assert "@jupyterlab/application-extension:top-bar" not in overrides


def test_dashboard_url_is_the_portal_base_plus_dashboard() -> None:
    module = _module()
    assert module.portal_dashboard_url("http://127.0.0.1:5000/") == "http://127.0.0.1:5000/dashboard"
    assert module.portal_dashboard_url("  https://academy.example/portal  ") == "https://academy.example/portal/dashboard"
    assert module.portal_dashboard_url("https://a.example/x y") is None


@pytest.mark.parametrize("role", [None, "learner", "authoring"])
def test_only_the_authoring_lab_has_nbgrader_authoring_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             role: str | None) -> None:
    """Learners' labs have none of nbgrader's parts (the portal hands out and grades); course staff's authoring
    lab has the "Create Assignment" toolbar and validate, never the exchange, formgrader or the lists."""
    config = _server_config(monkeypatch, tmp_path, "http://127.0.0.1:5000", role)
    disabled = set(json.loads((Path(config.LabApp.app_settings_dir) / "page_config.json")
                              .read_text(encoding="utf-8"))["disabledExtensions"])
    servers = config.ServerApp.jpserver_extensions
    never = {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:course-list",
             "@jupyter/nbgrader:menu"}
    tools = {"@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:validate-assignment"}
    assert never <= disabled
    for part in ("formgrader", "course_list", "assignment_list"):
        assert not servers[f"nbgrader.server_extensions.{part}"]
    if role == "authoring":
        assert not tools & disabled and servers["nbgrader.server_extensions.validate_assignment"]
    else:
        assert tools <= disabled and not servers["nbgrader.server_extensions.validate_assignment"]
