"""Fixtures of the browser tests (tests/web/test_browser*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import skip_or_fail
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A Korean-locale page in headless Debian Chromium."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="ko-KR", timezone_id="Asia/Seoul",
                                          viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
            context.close()
        finally:
            browser.close()
