"""Every page fits a 1280 px laptop screen: no horizontal scroll, measured in Chromium on the whole URL walk."""
from __future__ import annotations

from typing import Any

from pldreview.ledger import ledger_append
from tests.support.browser import BROWSER_MARKS, log_in
from tests.support.factories import teacher_rule
from tests.support.url_walk import endpoints_of, one_of_each_model

pytestmark = BROWSER_MARKS

WIDTH = 1280
# Files and data, not pages: nothing to lay out.
NOT_PAGES = ("download", "export", "decision-log", "openapi", "pdf", "badge", "checkpoint-make")
# Names the innermost elements that stick out, so a failure says where to look.
OUTSIDERS_JS = """(width) => Array.from(document.querySelectorAll('body *'))
  .filter(el => el.children.length === 0 && el.getBoundingClientRect().right > width)
  .slice(0, 3)
  .map(el => `<${el.tagName.toLowerCase()} class="${el.className}"> ${(el.textContent || '').trim().slice(0, 50)}`)"""


def _long_records(task: Any, admin: Any) -> None:
    """Add the long, unbroken values real records carry (hashes, URLs, JSON), which is what widens a page."""
    teacher_rule(task, text="If the clause cites https://example.org/a/very/long/path/" + "segment-" * 30
                 + " then Entailment", support=3)
    ledger_append(event="security.login_failed", actor=None, facts={
        "username": "someone-who-typed-a-very-long-name-" + "x" * 120, "known_account": False,
        "ip_address": "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    })
    ledger_append(event="security.role_granted", actor=admin, facts={"username": "olga", "role": "Auditor"},
                  reason="Because " + "a long justification without breaks " * 20)


def test_no_page_scrolls_sideways_at_1280_px(browser, live_server, task, reviewer, auditor, admin_user) -> None:
    _long_records(task, admin_user)
    pages = [e for e in endpoints_of(one_of_each_model())
             if not e.is_api and not any(word in (e.name + e.url) for word in NOT_PAGES)]
    sessions = []
    for username in ("adam", "aude", "rita"):  # the Admin sees most pages, then the Auditor, then the Reviewer
        context, page = log_in(browser, live_server, username, "/")
        page.set_viewport_size({"width": WIDTH, "height": 800})
        sessions.append(page)

    measured, too_wide, failed = 0, [], []
    for endpoint in pages:
        for page in sessions:
            url = f"{live_server.url}{endpoint.url}"
            # Asked first with the session's cookies: Chromium will not render an empty 405 (a POST-only URL).
            answer = page.request.get(url, max_redirects=0)
            if answer.status in (302, 403, 404, 405):
                continue
            if answer.status != 200 or "text/html" not in (answer.headers.get("content-type") or ""):
                failed.append(f"{endpoint.url} ({endpoint.name}) → {answer.status}")
                break
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            measured += 1
            if width > WIDTH:
                sticking_out = page.evaluate(OUTSIDERS_JS, WIDTH)
                too_wide.append(f"{endpoint.url} ({endpoint.name}): {width} px, e.g. {sticking_out}")
            break
    # The walk reached the app's pages, not only refusals: 39 to 45 of its pages answer these personas 200
    # (the placeholder objects leave a few pages without a record to show).
    assert measured >= 30, measured
    assert not too_wide, "\n".join(too_wide)
    assert not failed, "\n".join(failed)
