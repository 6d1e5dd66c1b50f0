"""Helpers for the Playwright tests."""
from __future__ import annotations


def close_when_idle(context, page) -> None:  # noqa: ANN001 (Playwright objects)
    """Close the browser context once no request is in flight.

    A request still running in the live server's thread (an htmx swap, the nav badge's poll) would hold a table
    lock while the test database is flushed, and the flush would fail.
    """
    page.wait_for_load_state("networkidle")
    # htmx marks the element of a request in flight with .htmx-request until its answer is swapped in.
    page.wait_for_function("() => !document.querySelector('.htmx-request')")
    context.close()
