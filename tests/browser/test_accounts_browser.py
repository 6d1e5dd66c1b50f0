"""Accounts in a real browser: TOTP enrolment from the shown secret, login with the code, review under the CSP."""
from __future__ import annotations

import re
import time

import pyotp
from allauth.mfa.totp.internal import auth as allauth_totp

from rules.models import Rule
from tests.support.browser import BROWSER_MARKS, submit_login
from tests.support.factories import teacher_rule

pytestmark = BROWSER_MARKS


def _watch_csp(page) -> list[str]:
    """Collect what Chromium reports about the Content-Security-Policy: refusals and page errors."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


class _TotpClock:
    """allauth's TOTP clock for this test: the real time, moved on by whole 30-second windows when the test needs
    a code it has not spent yet, where a person would wait for the next one (up to a minute of sleeping here).

    Only the clock is the test's: every code is still checked by allauth against the enrolled secret and spent
    (a spent code is refused within its window) as in production.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


def _fresh_code(secret: str, used: set[str], clock: _TotpClock) -> str:
    """Return the code of the clock's window, moving the clock to the next window if this one's was spent."""
    totp = pyotp.TOTP(secret)
    while (code := totp.at(clock.time())) in used:
        clock.offset += totp.interval
    used.add(code)
    return code


def test_a_reviewer_enrols_totp_logs_in_with_a_code_and_reviews_under_the_csp(
    browser, live_server, settings, task, reviewer, monkeypatch
) -> None:
    settings.PLD_MFA_REQUIRED = True
    clock = _TotpClock()
    monkeypatch.setattr(allauth_totp, "time", clock)  # the live server runs in this process: it reads this clock
    reviewer.first_name, reviewer.last_name = "Rita", "Reyes"
    reviewer.save(update_fields=["first_name", "last_name"])
    first = teacher_rule(task, text="If the clause lets staff see the information, then Entailment", support=9)
    second = teacher_rule(task, text="If the clause is long, then NotMentioned", label="NotMentioned", support=5)
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems = _watch_csp(page)

    submit_login(page, live_server.url, "rita", "/review/")
    # Nothing but enrolment: the review queue sends her to the authenticator page.
    page.wait_for_url("**/accounts/2fa/totp/activate/*")
    assert page.locator("img[src^='data:image/svg+xml']").count() == 1
    page.goto(f"{live_server.url}/review/")
    page.wait_for_url("**/accounts/2fa/totp/activate/*")
    secret = page.locator("#authenticator_secret").input_value()
    used: set[str] = set()
    page.fill("#id_code", _fresh_code(secret, used, clock))
    page.click("main form button[type=submit]")
    page.wait_for_url("**/accounts/2fa/recovery-codes/*")
    assert page.locator("main").inner_text().count("\n") > 5

    page.click("header button:has-text('Log out')")
    page.wait_for_url("**/login/*")
    submit_login(page, live_server.url, "rita", "/review/")
    page.wait_for_url("**/accounts/2fa/authenticate/*")
    page.fill("#id_code", _fresh_code(secret, used, clock))
    page.click("main form button[type=submit]:not([form])")
    page.wait_for_url("**/review/*")
    # The completed login left this browser's device cookie, out of the page's scripts' reach.
    device = [c for c in context.cookies() if c["name"] == "pld_device"]
    assert len(device) == 1 and device[0]["httpOnly"]

    # The review flow with htmx, under the policy: approve with the keyboard, reject with a reason.
    page.click(f"a[href^='/rules/{first.pk}/']")
    page.wait_for_selector(f"article[data-rule-id='{first.pk}']")
    page.keyboard.press("a")  # a signing: the reason, Tab, the password (and this session's first code), Ctrl+Enter
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'approve-reason'")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-rita")
    if page.locator("#approve-second-factor").count():
        page.fill("#approve-second-factor", _fresh_code(secret, used, clock))
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(f"article[data-rule-id='{second.pk}']")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'rule-title'")
    page.keyboard.press("r")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'reject-reason'")
    page.keyboard.type("Length says nothing about the hypothesis")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-rita")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Nothing left to review")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Rule.Status.APPROVED, Rule.Status.REJECTED)
    # The rule page shows the signature manifestation (Part 11 §11.50): printed name, date and time, meaning.
    page.goto(f"{live_server.url}/rules/{first.pk}/")
    shown = page.locator("main").inner_text()
    manifestation = r"Approved by Rita Reyes on \d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})? UTC — meaning: Approved"
    assert re.search(manifestation, shown), shown

    response = page.request.get(f"{live_server.url}/review/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert not problems, problems
    # The watcher works and the policy is enforced: an injected inline script is refused and reported.
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
                  " document.body.appendChild(s); }")
    page.wait_for_timeout(200)
    assert page.evaluate("window.ran") is None
    assert any("Content Security Policy" in problem for problem in problems)
    context.close()
