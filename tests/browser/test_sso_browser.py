"""Single sign-on in a real browser: Chromium goes to the test identity provider (its own process) and back."""
from __future__ import annotations

import copy
from urllib.parse import urlsplit

import pytest

from pldreview.models import Signature
from rules.models import Rule
from tests.support.browser import BROWSER_MARKS, close_when_idle
from tests.support.factories import teacher_rule
from tests.support.idp import PROVIDER_ID

pytestmark = BROWSER_MARKS


@pytest.fixture
def sso_live(sso, settings, live_server):  # noqa: ANN001, ANN201 (fixtures)
    """The provider, told about the live server's callback; the app's CSP lets forms go to the provider."""
    sso.allow_redirect(f"{live_server.url}/accounts/oidc/{PROVIDER_ID}/login/callback/")
    policy = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
    parts = urlsplit(sso.url)
    policy["DIRECTIVES"]["form-action"].append(f"{parts.scheme}://{parts.netloc}")
    settings.CONTENT_SECURITY_POLICY = policy
    # A role new from the mapping starts the cooldown like any other grant; this test is about the signing.
    settings.PLD_PRIVILEGE_COOLDOWN_HOURS = 0
    return sso


def _log_in_at_the_idp(page, username: str) -> None:  # noqa: ANN001 (Playwright page)
    page.wait_for_selector("text=Test identity provider")
    page.fill("#id_username", username)
    page.fill("#id_password", f"idp-{username}")
    page.click("text=Sign in at the IdP")


def test_signs_in_through_oidc_signs_an_approval_by_idp_re_authentication(
    browser, live_server, sso_live, task
) -> None:
    sso_live.user("sam", groups=["pld-reviewers"], first_name="Sam", last_name="Sung")
    rule = teacher_rule(task, text="If the clause lets staff see the information, then Entailment")
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()

    page.goto(f"{live_server.url}/login/?next=/rules/{rule.pk}/")
    page.click("text=Sign in with Test IdP")
    _log_in_at_the_idp(page, "sam")
    page.wait_for_url(f"{live_server.url}/rules/{rule.pk}/")

    # No password box: the signing asks for a new login at the identity provider.
    assert page.locator("#approve-password").count() == 0
    page.click("#approve-reauthenticate")
    page.click("text=Log in again at the identity provider")
    _log_in_at_the_idp(page, "sam")  # prompt=login: asked again although the provider's session is alive
    page.wait_for_url(f"{live_server.url}/rules/{rule.pk}/")
    page.wait_for_selector("text=Identity confirmed at the identity provider")

    page.keyboard.press("a")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'approve-reason'")
    page.keyboard.type("Matches clause 4.2")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Nothing left to review")
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED
    signature = Signature.objects.get()
    assert (signature.username, signature.full_name, signature.auth_method) == ("sam", "Sam Sung", "oidc")
    close_when_idle(context, page)
