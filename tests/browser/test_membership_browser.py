"""Need-to-know in a real browser: an Admin adds a Reviewer to a task from the Reviewer's user page, by signing."""
from __future__ import annotations

from rules.models import TaskMembership
from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in
from tests.support.factories import TaskFactory

pytestmark = BROWSER_MARKS


def test_an_admin_adds_a_reviewer_to_a_task_on_the_users_page_and_a_wrong_password_changes_nothing(
    browser, live_server, admin_user, non_member_reviewer
) -> None:
    team = TaskFactory(name="team-task")
    context, page = log_in(browser, live_server, "adam", f"/users/{non_member_reviewer.pk}/")
    assert "none: a member of no task" in page.inner_text("main")
    page.click("text=Add to a task or remove from one")
    page.select_option("#user-tasks-task", "team-task")
    page.fill("#user-tasks-reason", "Joins the team's review")
    page.fill("#user-tasks-password", "not-adams-password")
    page.click("#user-tasks-change button[type=submit]")
    page.wait_for_url(f"**/users/{non_member_reviewer.pk}/tasks/")
    assert "Wrong password" in page.inner_text("main")
    assert page.input_value("#user-tasks-reason") == "Joins the team's review"
    assert not TaskMembership.objects.filter(task=team, user=non_member_reviewer).exists()
    page.fill("#user-tasks-password", "pw-adam")
    page.click("button:has-text('Sign and save the change')")
    page.wait_for_url(f"**/users/{non_member_reviewer.pk}/")
    assert "team-task" in page.inner_text("main")
    membership = TaskMembership.objects.get(task=team, user=non_member_reviewer)
    assert (membership.signature.user, membership.signature.meaning) == (admin_user, "task_member_added")
    close_when_idle(context, page)
