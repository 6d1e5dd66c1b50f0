"""The browser every browser test module shares: Debian's Chromium, headless, launched once a module."""
from __future__ import annotations

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 (a Playwright Browser)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
