"""The browser the browser tests share: Debian's Chromium, headless, launched once for the package."""
from __future__ import annotations

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS


# Once for the package, not once a module: each test opens its own browser context (cookies, storage and pages
# of its own), so sharing the browser process keeps tests apart while saving a Chromium start per module. The
# package scope also closes Playwright, and the event loop its sync API runs, before the tests outside
# tests/browser start.
@pytest.fixture(scope="package")
def browser():  # noqa: ANN201 (a Playwright Browser)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Start each browser test with allauth's rate limits empty.

    allauth counts login posts per address (30 a minute) in Django's cache, which outlives the database flush
    between tests: the whole browser suite logs in from 127.0.0.1 more often than that, and a later test's login
    would get allauth's 429 instead of the page it waits for.
    """
    from django.core.cache import cache

    cache.clear()
