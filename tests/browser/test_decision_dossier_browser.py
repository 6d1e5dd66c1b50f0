"""In a real browser: a Reviewer overrides a production decision with her password; an Auditor opens its dossier,
which names the approving reviewers of each rule and the override, and is told she cannot override it herself."""
from __future__ import annotations

from evaluation.models import DecisionOverride
from rules.models import Rule
from tests.support.browser import BROWSER_MARKS, log_in
from tests.support.decisions import logged_call
from tests.support.prompt_versions import approve_all, compiled

pytestmark = BROWSER_MARKS


def test_a_reviewer_overrides_a_decision_and_an_auditor_reads_who_is_responsible_in_its_dossier(
    browser, live_server, task, reviewer, second_reviewer, auditor, admin_user
) -> None:
    approve_all(task, second_reviewer)
    call = logged_call(compiled(task, admin_user))

    # aude, an Auditor, is told why she cannot override it.
    auditor_context, auditor_page = log_in(browser, live_server, "aude", f"/calls/{call.pk}/")
    assert "separation of duties" in auditor_page.locator("#override-not-permitted").inner_text()

    context, page = log_in(browser, live_server, "rita", f"/calls/{call.pk}/")
    page.select_option("#override_overridden_label", "Contradiction")
    page.fill("#override_reason", "Keeping a copy contradicts destroying all copies.")
    page.fill("#override-password", "pw-rita")
    page.click("text=Sign and override this decision")
    page.wait_for_selector("text=Decision overridden by rita")
    assert DecisionOverride.objects.get().overridden_label == "Contradiction"
    context.close()

    context, page = auditor_context, auditor_page
    page.reload()
    page.click("text=Dossier of this decision")
    page.wait_for_url(f"**/decisions/{call.request_id}/")
    assert "Contradiction, overridden by rita" in page.locator("#dossier-outcome").inner_text()
    assert "classify_call.logged" in page.locator("#dossier-ledger").inner_text()
    for rule in Rule.objects.filter(task=task):
        item = page.locator(f"#rule-{rule.pk}").inner_text()
        assert rule.text in item and "Approved by ravi" in item, item
    context.close()
