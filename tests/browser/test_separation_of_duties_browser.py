"""The puppet Admin in a real browser (issue 22, attack 1): adam asks for an Admin account; it stays inactive until
alex confirms; adam cannot confirm it; the new account cannot confirm adam's gate override during the cooldown."""
from __future__ import annotations

from django.contrib.auth.models import User

from evaluation.release.promotion import promotion_override_request
from pldreview.accounts.models import AccountChangeRequest
from rules.models import PromptVersion
from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in
from tests.support.prompt_versions import approve_all, compiled
from tests.support.signatures import sign_override_request

pytestmark = BROWSER_MARKS

NEW_PASSWORD = "a-long-enough-passphrase-2026"


def test_a_puppet_admin_needs_a_second_admin_and_then_waits_out_the_cooldown(
    browser, live_server, task, admin_user, second_admin, second_reviewer
) -> None:
    # adam asks for an Admin account on the users page, signing with his password.
    context, page = log_in(browser, live_server, "adam", "/users/new/")
    page.fill("#id_username", "adam2")
    page.fill("#id_first_name", "Adam")
    page.fill("#id_last_name", "Two")
    page.check("input[name=roles][value=Admin]")
    page.fill("#id_reason", "A second Admin for the weekend")
    page.fill("#create-password", "pw-adam")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/users/")
    shown = page.locator("main").inner_text()
    assert "stays inactive" in shown and "temporary-password" not in page.content()
    change = AccountChangeRequest.objects.get()
    assert not User.objects.get(username="adam2").is_active

    # adam is not offered the confirmation: the page says why, and there is no form for it.
    assert "different Admin must confirm" in page.locator(f"#change-{change.pk}-refusal").inner_text()
    assert page.locator(f"form[action='/users/changes/{change.pk}/confirm/']").count() == 0
    close_when_idle(context, page)

    # alex confirms with his signature and is shown the temporary password, once.
    context, page = log_in(browser, live_server, "alex", "/users/")
    page.fill(f"#confirm-{change.pk}-password", "pw-alex")
    page.click(f"form[action='/users/changes/{change.pk}/confirm/'] button[type=submit]")
    page.wait_for_selector("#temporary-password")
    temporary = page.locator("#temporary-password").inner_text().strip()
    adam2 = User.objects.get(username="adam2")
    assert adam2.is_active and adam2.groups.filter(name="Admin").exists()
    close_when_idle(context, page)

    # adam asks for an override of a failing gate (the version was never evaluated).
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    promotion_override_request(prompt_version=version, user=admin_user, reason="Ship it",
                               justification="Legal needs it today",
                               signature=sign_override_request(admin_user, version))

    # adam2 logs in, must choose a password, and then may not confirm adam's override for 24 hours.
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/login/?next=/prompts/{version.pk}/promote/")
    page.fill("#id_login", "adam2")
    page.fill("#id_password", temporary)
    page.click("main button[type=submit]")
    page.wait_for_url("**/accounts/password/change/*")
    page.fill("#id_oldpassword", temporary)
    page.fill("#id_password1", NEW_PASSWORD)
    page.fill("#id_password2", NEW_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.goto(f"{live_server.url}/prompts/{version.pk}/promote/")
    refusal = page.locator("#override-confirm-refusal").inner_text()
    assert "PLD_PRIVILEGE_COOLDOWN_HOURS" in refusal and "second person of a two-person control" in refusal
    assert page.locator("button:has-text('Confirm the override')").count() == 0
    version.refresh_from_db()
    assert version.status == PromptVersion.Status.DRAFT
    close_when_idle(context, page)
