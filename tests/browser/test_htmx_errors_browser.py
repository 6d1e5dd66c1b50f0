"""htmx forms show the server's refusal in place, and any other failed request says so (JavaScript on)."""
from __future__ import annotations

from rules.models import Rule, RuleComment
from tests.support.browser import BROWSER_MARKS, log_in
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval

pytestmark = BROWSER_MARKS


def test_a_whitespace_comment_shows_the_servers_refusal_in_place(browser, live_server, task, reviewer) -> None:
    rule = teacher_rule(task, text="If the clause lets staff see the information, then Entailment")
    context, page = log_in(browser, live_server, "rita", f"/rules/{rule.pk}/")
    page.evaluate("window.stillTheSamePage = true")

    # The textarea's `required` lets spaces through; the server refuses them with 400 and the fragment.
    page.fill("#comment-text", "   ")
    page.click("#comment-form button[type=submit]")
    page.wait_for_selector("#comment-error")

    assert "Write something to say." in page.inner_text("#comment-error")
    assert page.evaluate("window.stillTheSamePage") is True
    assert not RuleComment.objects.filter(rule=rule).exists()
    context.close()


def test_a_refused_order_proposal_shows_its_error_in_place(
    browser, live_server, task, reviewer, second_reviewer
) -> None:
    from rules.review.services import rule_approve, ruleset_rules

    rules = [teacher_rule(task, text=f"If clause {i} applies, then Entailment") for i in range(2)]
    for rule in rules:
        rule_approve(rule=rule, user=second_reviewer, lock_version=1, signature=sign_approval(second_reviewer, rule))
    context, page = log_in(browser, live_server, "rita", f"/tasks/{task.name}/ruleset/")

    page.fill(f"#id_number_{rules[1].pk}", "1")
    page.fill("#proposal-reason", "The narrow rule first")
    page.fill("#proposal-password", "not-my-password")
    page.click("#ruleset-reorder-form button[type=submit]")
    page.wait_for_selector("text=Wrong password: nothing was signed")

    assert [r.pk for r in ruleset_rules(task)] == [r.pk for r in rules]
    context.close()


def test_a_forbidden_answer_is_announced_instead_of_ignored(browser, live_server, task, reviewer) -> None:
    rule = teacher_rule(task, text="If the clause lets staff see the information, then Entailment")
    context, page = log_in(browser, live_server, "rita", f"/rules/{rule.pk}/")
    assert page.locator("#htmx-error").is_hidden()

    # Her role is taken away while the page is open: the comment is answered 403, which has no fragment.
    reviewer.groups.clear()
    page.fill("#comment-text", "Is clause 4 about employees?")
    page.click("#comment-form button[type=submit]")
    page.wait_for_selector("#htmx-error:not([hidden])")

    assert "Not done (HTTP 403)" in page.inner_text("#htmx-error")
    assert page.locator("#comment-form").count() == 1
    assert Rule.objects.get(pk=rule.pk).comments.count() == 0
    context.close()
