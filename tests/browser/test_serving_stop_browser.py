"""Human oversight in a real browser: an Admin stops the demo task's serving, the API answers 503, the Admin resumes
it and rolls back to the version that was in production before, each a signing on a page."""
from __future__ import annotations

import json

from evaluation.models import Promotion, ServingStop
from evaluation.production.api_tokens import api_token_create
from rules.models import PromptVersion
from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in
from tests.support.prompt_versions import approve, compiled, gate_passing_run, in_production
from tests.support.signatures import sign_promotion

pytestmark = BROWSER_MARKS

BODY = {"premise": "The Recipient may disclose it to employees.", "hypothesis": "It may share with employees."}


def _sign_with_password(page, prefix: str, password: str) -> None:  # noqa: ANN001 (Playwright page)
    # Within the signing window the page asks for no password again (PLD_SIGNING_REAUTH).
    field = page.locator(f"#{prefix}-password")
    if field.count():
        field.fill(password)


def test_an_admin_stops_the_demo_task_sees_the_api_answer_503_resumes_and_rolls_back_in_one_signed_step(
    browser, live_server, task, admin_user, reviewer, second_reviewer
) -> None:
    from evaluation.release.promotion import prompt_version_promote

    v1 = in_production(task, admin=admin_user, reviewer=second_reviewer)
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    v2 = compiled(task, admin_user)
    gate_passing_run(v2)
    prompt_version_promote(prompt_version=v2, user=admin_user, reason="Adds the court rule",
                           signature=sign_promotion(admin_user, v2))
    token = api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]

    context, page = log_in(browser, live_server, "adam", f"/tasks/{task.name}/production/")
    page.click("text=Stop or resume serving")
    page.fill("#id_reason", "Drift alert: wrong labels on governing-law clauses")
    _sign_with_password(page, "serving", "pw-adam")
    page.click("button:has-text('Stop serving nda-demo now')")
    banner = page.locator(".serving-stopped")
    banner.wait_for()
    assert "Serving of NDA clauses is stopped" in banner.inner_text()
    assert "Drift alert: wrong labels" in banner.inner_text()
    page.goto(f"{live_server.url}/")
    assert "Drift alert: wrong labels" in page.locator(".serving-stopped").inner_text()

    # The integrator's next call is refused, naming the stop and the call's request id.
    answer = page.request.post(f"{live_server.url}/api/v1/tasks/{task.name}/classify", data=json.dumps(BODY),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    body = answer.json()
    assert answer.status == 503 and body["code"] == "serving_stopped"
    assert body["request_id"] == answer.headers["x-request-id"] and body["stop"]["username"] == "adam"

    page.goto(f"{live_server.url}/tasks/{task.name}/serving/")
    page.fill("#id_reason", "Rolled back to v1 next; checked 20 calls by hand")
    _sign_with_password(page, "serving", "pw-adam")
    page.click("button:has-text('Resume serving')")
    page.wait_for_selector("text=Serving of nda-demo is resumed")
    assert page.locator(".serving-stopped").count() == 0
    assert [row.action for row in ServingStop.objects.order_by("id")] == ["stop", "resume"]

    # Roll back to v1, which was in production before: one signature, no gate override, no second Admin.
    page.goto(f"{live_server.url}/prompts/{v1.pk}/promote/")
    assert "was in production before" in page.locator("#earlier-promotions").inner_text()
    page.fill("#id_reason", "v2 misroutes governing-law clauses")
    _sign_with_password(page, "promote", "pw-adam")
    page.click("button:has-text('Roll back to v1')")
    page.wait_for_url(f"**/prompts/{v1.pk}/")
    v1.refresh_from_db()
    rollback = Promotion.objects.order_by("-id").first()
    assert v1.status == PromptVersion.Status.PRODUCTION
    assert rollback.is_rollback and rollback.override is None and rollback.signature.meaning == "rolled_back"
    close_when_idle(context, page)
