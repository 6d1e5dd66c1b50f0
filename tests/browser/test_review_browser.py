"""The review workspace in a real browser: headless Debian Chromium driven by Playwright, JavaScript on."""
from __future__ import annotations

import json

from rules.models import Decision, Rule
from tests.support.browser import BROWSER_MARKS, log_in, wait_for_swapped_rule
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval

pytestmark = BROWSER_MARKS


def test_reviewers_decide_with_four_eyes_and_an_auditor_only_reads(
    browser, live_server, task, reviewer, second_reviewer, auditor
) -> None:
    first = teacher_rule(task, text="If the clause lets staff see the information, then Entailment", support=9)
    second = teacher_rule(task, text="If the clause mentions sharing, then Entailment", support=7)
    third = teacher_rule(task, text="If the clause is long, then NotMentioned", label="NotMentioned", support=5)

    # rita works through the queue: approve with the keyboard, edit and reject with reasons.
    context, page = log_in(browser, live_server, "rita", "/review/")
    assert page.locator(".queue-counts").inner_text().count("3 pending") == 1
    page.click(f"a[href^='/rules/{first.pk}/']")
    page.wait_for_selector(f"article[data-rule-id='{first.pk}']")
    # A marker on window survives only if htmx swaps the next rule in place instead of loading a page.
    page.evaluate("window.stillTheSamePage = true")
    # Approving is a signing: a goes to the reason, Tab to the password, Ctrl+Enter signs.
    page.keyboard.press("a")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'approve-reason'")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-rita")
    page.keyboard.press("Control+Enter")
    wait_for_swapped_rule(page, second)
    assert f"Approved rule {first.pk}" in page.locator(".review-flash").inner_text()
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.url.endswith(f"/rules/{second.pk}/")

    page.keyboard.press("e")
    page.fill("#edit-text", "If the clause lets the recipient share it with its employees, then Entailment")
    page.fill("#edit-reason", "Say with whom: sharing with advisers is a different hypothesis")
    page.fill("#edit-password", "pw-rita")
    page.click("#edit-form button[type=submit]")
    wait_for_swapped_rule(page, third)

    page.keyboard.press("r")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'reject-reason'")
    page.keyboard.type("Length says nothing about the hypothesis")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-rita")
    page.click("#reject-form button[type=submit]")
    page.wait_for_selector("text=Nothing left for you to decide")

    for rule, action, reason in (
        (first, "Approved", None),
        (second, "Edited", "Say with whom: sharing with advisers is a different hypothesis"),
        (third, "Rejected", "Length says nothing about the hypothesis"),
    ):
        page.goto(f"{live_server.url}/rules/{rule.pk}/history/")
        row = page.locator("#decisions tbody tr").last
        text = row.inner_text()
        assert action in text and "rita" in text
        if reason:
            assert reason in text

    # rita may not approve her own edit; the server refuses it.
    page.goto(f"{live_server.url}/rules/{second.pk}/")
    page.keyboard.press("a")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-rita")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=another reviewer must approve it")
    second.refresh_from_db()
    assert second.status == Rule.Status.PENDING
    context.close()

    # ravi approves it.
    context, page = log_in(browser, live_server, "ravi", f"/rules/{second.pk}/")
    page.fill("#approve-password", "pw-ravi")
    page.click("#approve-form button[type=submit]")
    page.wait_for_selector(".review-flash")
    second.refresh_from_db()
    assert second.status == Rule.Status.APPROVED
    context.close()

    # The auditor sees everything and has no action that changes anything.
    context, page = log_in(browser, live_server, "aude", f"/rules/{second.pk}/history/")
    assert "ravi" in page.locator("#decisions").inner_text()
    page.goto(f"{live_server.url}/rules/{third.pk}/")
    assert page.locator("#approve-form, #reject-form, #edit-form, [data-undo]").count() == 0
    assert page.locator("main form[method=post]").count() == 0
    token = json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRFToken"]
    forged = context.request.post(
        f"{live_server.url}/rules/{third.pk}/approve/",
        form={"lock_version": str(third.lock_version + 1), "reason": "forged", "password": "pw-aude"},
        headers={"X-CSRFToken": token},
    )
    assert forged.status == 403
    assert "Access denied" in forged.text() and "CSRF verification failed" not in forged.text()
    context.close()
    third.refresh_from_db()
    assert third.status == Rule.Status.REJECTED
    assert not Decision.objects.filter(reviewer=auditor).exists()


def test_a_rule_set_order_waits_for_a_second_reviewer(browser, live_server, task, reviewer, second_reviewer) -> None:
    from rules.review.services import rule_approve, ruleset_rules

    rules = [teacher_rule(task, text=f"If clause {i} applies, then Entailment") for i in range(3)]
    for rule in rules:
        rule_approve(rule=rule, user=second_reviewer, lock_version=1, signature=sign_approval(second_reviewer, rule))
    path = f"/tasks/{task.name}/ruleset/"

    # rita types a new number for the last rule and proposes the order; nothing moves yet.
    context, page = log_in(browser, live_server, "rita", path)
    page.fill(f"#id_number_{rules[2].pk}", "1")
    page.fill("#proposal-reason", "The narrow rule first")
    page.fill("#proposal-password", "pw-rita")
    page.click("#ruleset-reorder-form button[type=submit]")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'ruleset-message'")
    assert "takes effect once another reviewer approves it" in page.inner_text("#ruleset-message")
    assert page.locator(".proposal-approve-form button[disabled]").count() == 1
    assert [r.pk for r in ruleset_rules(task)] == [r.pk for r in rules]
    context.close()

    # ravi approves it in place; the order changes.
    context, page = log_in(browser, live_server, "ravi", path)
    page.fill(".proposal-approve-form input[type=password]", "pw-ravi")
    page.click(".proposal-approve-form button[type=submit]")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'ruleset-message'")
    assert "the rule set now follows it" in page.inner_text("#ruleset-message")
    assert [r.pk for r in ruleset_rules(task)] == [rules[2].pk, rules[0].pk, rules[1].pk]
    assert page.locator(".proposal-approve-form").count() == 0
    context.close()


def test_a_reviewer_signs_an_approval_with_the_password_and_the_rule_page_shows_the_signature(
    browser, live_server, task, reviewer
) -> None:
    import re

    reviewer.first_name, reviewer.last_name = "Rita", "Reyes"
    reviewer.save()
    rule = teacher_rule(task, text="If the clause lets staff see the information, then Entailment")
    context, page = log_in(browser, live_server, "rita", f"/rules/{rule.pk}/")

    # A wrong password: the rule stays pending, the reason is still typed, the page says why.
    page.keyboard.press("a")
    page.keyboard.type("Matches clause 4.2")
    page.keyboard.press("Tab")
    page.keyboard.type("not-my-password")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Wrong password: nothing was signed")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'approve-password'")
    assert page.input_value("#approve-reason") == "Matches clause 4.2"
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING and not Decision.objects.exists()

    # The right one signs: focus is back in the password box, so typing it and Ctrl+Enter is enough.
    page.keyboard.type("pw-rita")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Nothing left to review")
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED

    page.goto(f"{live_server.url}/rules/{rule.pk}/")
    shown = page.locator(".signature-manifest").first.inner_text()
    assert re.fullmatch(r"Approved by Rita Reyes on \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC — meaning: Approved", shown)
    signature = Decision.objects.get().signature
    assert signature.full_name == "Rita Reyes" and f"{signature.signed_at:%Y-%m-%d %H:%M:%S}" in shown
    context.close()
