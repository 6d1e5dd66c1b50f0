"""Helpers for the Playwright tests: Debian's Chromium, the marks every browser module carries, logging in."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a thread with a
# running loop unless told that this (test-only) use is safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)"),
    # Keep the roles created by the data migration for the tests that run after each module's (SQLite only:
    # on PostgreSQL the flush skips post_migrate, and the browser tests are not in that pass).
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def submit_login(page, base_url: str, username: str, next_path: str) -> None:  # noqa: ANN001 (Playwright page)
    """Open the login page for ``next_path`` and submit a persona's username and password ("pw-<username>")."""
    page.goto(f"{base_url}/login/?next={next_path}")
    page.fill("#id_login", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("main button[type=submit]")


def log_in(browser, live_server, username: str, next_path: str, *, bypass_csp: bool = False):  # noqa: ANN001, ANN201
    """Log a persona in a new browser context and wait for ``next_path``; return (context, page)."""
    # bypass_csp only for test tooling injected into the page (axe-core); the app's pages run under their CSP.
    context = browser.new_context(bypass_csp=bypass_csp)
    context.set_default_timeout(15_000)
    page = context.new_page()
    submit_login(page, live_server.url, username, next_path)
    page.wait_for_url(f"**{next_path}*")
    return context, page


def wait_for_swapped_rule(page, rule) -> None:  # noqa: ANN001 (Playwright page, a Rule)
    """Wait until htmx has swapped ``rule`` in and settled, which is when the workspace moves focus to its title."""
    page.wait_for_selector(f"article[data-rule-id='{rule.pk}']")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'rule-title'")


def close_when_idle(context, page) -> None:  # noqa: ANN001 (Playwright objects)
    """Close the browser context once no request is in flight.

    A request still running in the live server's thread (an htmx swap, the nav badge's poll) would hold a table
    lock while the test database is flushed, and the flush would fail.
    """
    page.wait_for_load_state("networkidle")
    # htmx marks the element of a request in flight with .htmx-request until its answer is swapped in.
    page.wait_for_function("() => !document.querySelector('.htmx-request')")
    context.close()
