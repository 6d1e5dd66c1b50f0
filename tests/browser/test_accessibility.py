"""axe-core on the main pages, in headless Chromium: zero serious or critical violations.

axe-core is vendored under tests/browser/vendor/axe-core (npm registry, MPL-2.0) and injected by the test only.
"""
from __future__ import annotations

from pathlib import Path

from pldreview.accounts.models import AccountChangeKind
from rules.review.discussion import rule_comment_add
from tests.support.account_changes import account_change_requested
from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in
from tests.support.factories import teacher_rule
from tests.support.prompt_versions import approve_all, compiled, finished_run

pytestmark = BROWSER_MARKS
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}


def _violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert result["testEngine"]["name"] == "axe-core" and result["passes"], "axe did not run"
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"] if v["impact"] in BLOCKING
    ]


def test_the_main_pages_have_no_serious_accessibility_violations(
    browser, live_server, task, reviewer, second_reviewer, admin_user, second_admin
) -> None:
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    run = finished_run(version, 0.62)
    pending = teacher_rule(task, text="If the clause mentions sharing, then Entailment", support=7)
    rule_comment_add(rule=pending, user=second_reviewer, text="Does sharing include advisers?")
    # An account change for adam to confirm: the users pages show its signing form.
    account_change_requested(second_admin, AccountChangeKind.UNLOCK, target=reviewer, reason="Locked out")
    pages = [
        "/", "/review/", f"/rules/{pending.pk}/", f"/rules/{pending.pk}/history/", f"/tasks/{task.name}/",
        f"/tasks/{task.name}/ruleset/", f"/tasks/{task.name}/ruleset/?q=sharing", f"/tasks/{task.name}/review-log/",
        "/review/waiting/", "/rules/new/", "/glossary/", "/prompts/", f"/prompts/{version.pk}/",
        "/evaluations/", f"/evaluations/{run.pk}/", "/reports/", "/jobs/", "/api-tokens/",
        f"/prompts/{version.pk}/promote/", "/ledger/", "/users/", f"/users/{reviewer.pk}/",
        "/users/new/", "/security-events/",
        f"/tasks/{task.name}/production/", f"/tasks/{task.name}/members/", f"/users/{reviewer.pk}/tasks/",
    ]
    failures = {}
    context, page = log_in(browser, live_server, admin_user.username, "/", bypass_csp=True)
    context.set_default_timeout(60_000)
    # The check can fail: an image without a text alternative is a critical violation.
    page.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/x.png\">')")
    assert any(v.startswith("image-alt (critical)") for v in _violations(page))
    for path in pages:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status in {200, 403}, path
        found = _violations(page)
        if found:
            failures[path] = found
    close_when_idle(context, page)
    # The refusal page as a reviewer sees it.
    context, page = log_in(browser, live_server, "rita", "/", bypass_csp=True)
    page.goto(f"{live_server.url}/api-tokens/")
    if found := _violations(page):
        failures["403"] = found
    close_when_idle(context, page)
    assert not failures, failures
