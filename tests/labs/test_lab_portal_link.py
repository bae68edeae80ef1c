"""JupyterLab's way back to the academy, in a real learner's lab seen through Korean Chromium.

One real stack for the module (portal, JupyterHub + configurable-http-proxy, the local spawner starting
``jupyterhub-singleuser`` from ``.venv-lab`` with ``hub_config/singleuser``): the hub hands the portal's
address to the server, which writes it into JupyterLab's settings (academy_lab_settings.py). The tests
look at what the learner sees: a top-bar button and a File-menu entry that open the portal's dashboard
in a new tab, and one sign-out in the File menu, the hub's, which ends at the portal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.labs.labstack import PASSWORD, LabStack, lab_stack, missing_parts
from tests.support import ROOT, skip_or_fail

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BACK = "아카데미로 돌아가기"
EMAIL = "lab-portal-link@example.kr"


@dataclass
class Lab:
    stack: LabStack
    page: Any  # Playwright page showing the learner's JupyterLab

    @property
    def dashboard(self) -> str:
        return f"{self.stack.portal_url}/dashboard"


def _open_lab(stack: LabStack, page: Any) -> str:
    """Sign in to the portal in the browser, open the learner's lab there, return JupyterLab's address."""
    page.goto(f"{stack.portal_url}/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.locator("main form button[type=submit]").click()
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(f"{stack.portal_url}/labs/open/{stack.course_ids['python-data']}",
                                 form={"csrf_token": token}, max_redirects=0)
    assert response.status == 303, response.text()[:500]
    status_url = stack.portal_url + response.headers["location"] + "/status"
    deadline = time.monotonic() + 180
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = page.request.get(status_url).json()
        if body.get("url") or body["state"] in ("failed", "stopped", "cancelled"):
            break
        time.sleep(0.3)
    assert body.get("url"), f"the lab did not become ready: {body}"
    return str(body["url"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One learner's real JupyterLab, open in Korean Chromium."""
    reason = missing_parts() or (None if CHROMIUM.exists() else f"{CHROMIUM} is not installed")
    if reason:
        skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    with lab_stack(tmp_path_factory.mktemp("lab-link"), gpu_course=None) as stack, sync_playwright() as p:
        stack.make_learner(EMAIL)
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="ko-KR", timezone_id="Asia/Seoul",
                                          viewport={"width": 1280, "height": 900})
            context.set_default_timeout(60_000)
            page = context.new_page()
            page.goto(_open_lab(stack, page))
            page.wait_for_url(re.compile(r".*/user/u\d+/lab.*"))
            page.locator(".lm-MenuBar-itemLabel", has_text="파일").wait_for()
            yield Lab(stack=stack, page=page)
            context.close()
        finally:
            browser.close()


def _opens_the_dashboard(lab: Lab, control: Any) -> None:
    """Clicking ``control`` opens the portal's dashboard in a new tab (signed in) and leaves the lab open."""
    with lab.page.context.expect_page() as opened:
        control.click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url == lab.dashboard
    assert tab.locator("form[action='/logout']").count() == 1  # the portal, signed in: no second sign-in
    tab.close()
    assert "/lab" in lab.page.url


def test_top_bar_button_opens_the_portal_dashboard(lab: Lab) -> None:
    from playwright.sync_api import expect

    button = lab.page.locator("#jp-top-bar [data-jp-item-name='academy-portal'] jp-button")
    expect(button).to_be_visible()
    expect(button).to_contain_text(BACK)
    expect(button).to_have_attribute("title", re.compile("아카데미 포털"))  # the tooltip says where it goes
    _opens_the_dashboard(lab, button)


def test_file_menu_has_the_way_back_and_one_sign_out(lab: Lab) -> None:
    from playwright.sync_api import expect

    page = lab.page
    page.locator(".lm-MenuBar-itemLabel", has_text="파일").click()
    menu = page.locator(".lm-Menu").first
    expect(menu).to_be_visible()
    back = menu.locator(".lm-Menu-item[data-command='help:open']", has_text=BACK)
    expect(back).to_have_count(1)
    sign_outs = menu.locator(".lm-Menu-item", has_text="로그아웃")
    expect(sign_outs).to_have_count(1)
    assert sign_outs.get_attribute("data-command") == "hub:logout"
    for hidden in ("filemenu:logout", "hub:control-panel"):
        expect(menu.locator(f".lm-Menu-item[data-command='{hidden}']")).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.fonts.ready.then(() => true)")
    page.screenshot(path=str(ARTIFACTS / "lab-03-back-to-academy.png"))
    _opens_the_dashboard(lab, back)


def test_the_one_sign_out_goes_through_the_hub_to_the_portal(lab: Lab) -> None:
    """Last in this file: it ends the learner's hub session."""
    page = lab.page
    page.keyboard.press("Escape")
    page.locator(".lm-MenuBar-itemLabel", has_text="파일").click()
    page.locator(".lm-Menu-item[data-command='hub:logout']").click()
    page.wait_for_url(f"{lab.stack.portal_url}/")
