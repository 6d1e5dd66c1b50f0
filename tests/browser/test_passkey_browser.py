"""Passkeys in a real browser: Chromium's virtual authenticator (DevTools' WebAuthn domain) plays the device."""
from __future__ import annotations

from pldreview.models import LedgerEntry, Signature
from rules.models import Rule
from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in, submit_login
from tests.support.factories import teacher_rule

pytestmark = BROWSER_MARKS


def _virtual_authenticator(context, page) -> None:  # noqa: ANN001 (Playwright objects)
    """Give the page a platform authenticator that holds passkeys and verifies its user (as a PIN would)."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True,
    }})


def test_enrols_a_passkey_and_signs_with_it(browser, live_server, task, reviewer) -> None:
    rule = teacher_rule(task, text="If the clause lets staff see the information, then Entailment")
    context, page = log_in(browser, live_server, reviewer.username, "/accounts/2fa/webauthn/add/")
    _virtual_authenticator(context, page)

    page.fill("input[name=name]", "Laptop passkey")
    page.click("#mfa_webauthn_add")
    # The add page's own URL matches "**/accounts/2fa/**" too: wait until the browser has left it.
    page.wait_for_url(lambda url: "/accounts/2fa/" in url and not url.rstrip("/").endswith("/add"))
    assert LedgerEntry.objects.filter(event="security.mfa_enrolled", payload__contains="webauthn").exists()

    page.goto(f"{live_server.url}/rules/{rule.pk}/")
    page.keyboard.press("a")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'approve-reason'")
    page.keyboard.type("Matches clause 4.2")
    page.click("#approve-passkey-sign")
    page.wait_for_selector("text=Nothing left to review")
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED
    signature = Signature.objects.get()
    assert (signature.username, signature.auth_method, signature.password_checked) == (
        reviewer.username, "passkey", False)

    # The passkey is now the account's second factor: the next login asks for it after the password.
    page.wait_for_load_state("networkidle")
    context.clear_cookies()
    submit_login(page, live_server.url, reviewer.username, "/review/")
    page.wait_for_url("**/accounts/2fa/authenticate/**")
    page.click("#mfa_webauthn_authenticate")
    page.wait_for_url(f"{live_server.url}/review/*")
    assert LedgerEntry.objects.filter(event="security.login").count() == 2
    close_when_idle(context, page)
