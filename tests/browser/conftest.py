"""The browser fixture of the review walk, shared by every browser test module, and a clean way to close."""
from tests.browser.test_review_browser import browser  # noqa: F401


def _close(context, page) -> None:
    """Close the browser context once no request is in flight.

    A request still running in the live server's thread (an htmx swap, the nav badge's poll) would hold a table
    lock while the test database is flushed, and the flush would fail.
    """
    page.wait_for_load_state("networkidle")
    # htmx marks the element of a request in flight with .htmx-request until its answer is swapped in.
    page.wait_for_function("() => !document.querySelector('.htmx-request')")
    context.close()
