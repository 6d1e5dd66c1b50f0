"""The browser fixture of the review walk, shared by every browser test module (closing: tests/support/browser.py)."""
from tests.browser.test_review_browser import browser  # noqa: F401
