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


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Start each browser test with allauth's rate limits empty.

    allauth counts login posts per address (30 a minute) in Django's cache, which outlives the database flush
    between tests: the whole browser suite logs in from 127.0.0.1 more often than that, and a later test's login
    would get allauth's 429 instead of the page it waits for.
    """
    from django.core.cache import cache

    cache.clear()
