"""Need-to-know per task: a Reviewer (or a scoped Auditor) who is no member of a task finds no trace of it through
any side door — search, the queue's htmx partial, a rule id typed into a URL, the badge, exports, comparisons,
the API with a token they own — and Admins manage membership on the task's Members page, on the ledger."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from evaluation.production.api_tokens import api_token_create
from pldreview.models import LedgerEntry
from rules.membership import task_member_remove
from rules.models import Decision, TaskMembership
from tests.support.factories import TaskFactory, teacher_rule
from tests.support.signatures import member_add_signed

pytestmark = pytest.mark.django_db

SECRET_WORDS = "undisclosed merger clause"


@pytest.fixture
def tasks(task, admin_user, non_member_reviewer):  # noqa: ANN001, ANN201 - fixtures
    """nda-demo (``task``), which nemo may not see, and her own task, each with a pending teacher rule."""
    mine = TaskFactory(name="nemos-task")
    member_add_signed(task=mine, user=non_member_reviewer, by=admin_user, reason="her team's task")
    hidden = teacher_rule(task, text=f"An {SECRET_WORDS} entails the hypothesis.")
    visible = teacher_rule(mine, text="A visible clause about the merger entails the hypothesis.")
    return {"hidden_task": task, "mine": mine, "hidden_rule": hidden, "visible_rule": visible}


def _as(user) -> Client:  # noqa: ANN001 - a User
    client = Client()
    client.force_login(user)
    return client


def test_a_non_member_finds_nothing_of_the_task_through_search_lists_or_the_badge(tasks, non_member_reviewer):
    nemo = _as(non_member_reviewer)
    hidden, mine = tasks["hidden_task"], tasks["mine"]
    for url in ("/", "/tasks/", "/review/?status=all", "/review/?q=merger&status=all", "/prompts/", "/evaluations/",
                "/review/waiting/", "/rules/new/"):
        page = nemo.get(url).content.decode()
        assert hidden.name not in page and SECRET_WORDS not in page, url
    # Naming the task in the filter finds nothing (the page only repeats the name she typed).
    assert SECRET_WORDS not in nemo.get(f"/review/?task={hidden.name}&status=all").content.decode()
    queue = nemo.get("/review/?q=merger&status=all", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="queue-results")
    assert "A visible clause" in queue.content.decode() and SECRET_WORDS not in queue.content.decode()
    # The badge counts the visible pending rule only.
    assert ">1<" in nemo.get("/review/waiting/badge/?poll=1", HTTP_HX_REQUEST="true").content.decode()
    assert nemo.get(f"/tasks/{mine.name}/").status_code == 200


def test_a_rule_id_of_another_task_in_a_url_answers_404_and_decides_nothing(tasks, non_member_reviewer):
    nemo = _as(non_member_reviewer)
    rule = tasks["hidden_rule"]
    for url in (f"/rules/{rule.pk}/", f"/rules/{rule.pk}/history/", f"/tasks/{rule.task.name}/decisions/",
                f"/tasks/{rule.task.name}/ruleset/?q=merger", f"/examples/{rule.task.examples.first().pk}/"
                if rule.task.examples.exists() else f"/rules/{rule.pk}/"):
        assert nemo.get(url).status_code == 404, url
    partial = nemo.get(f"/rules/{rule.pk}/history/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="revision-diff")
    assert partial.status_code == 404
    for action in ("approve", "reject", "edit", "comments"):
        answer = nemo.post(f"/rules/{rule.pk}/{action}/", {"reason": "x", "password": "pw-nemo", "text": "x"})
        assert answer.status_code == 404, action
    assert not Decision.objects.filter(rule=rule).exists() and not rule.comments.exists()


def test_a_reviewer_gets_the_same_refusal_of_a_csv_export_whether_or_not_she_is_a_member(
    tasks, non_member_reviewer, reviewer
):
    # Reviewers hold no export permission (Auditors and Admins do: the scoped Auditor's test below), so the 403
    # must be the same for a member and a stranger, or it would tell the stranger that the task exists.
    hidden = tasks["hidden_task"]
    for url in (f"/tasks/{hidden.name}/decision-log.csv", f"/tasks/{hidden.name}/production/export.csv",
                "/tasks/no-such-task/decision-log.csv"):
        assert _as(non_member_reviewer).get(url).status_code == _as(reviewer).get(url).status_code == 403, url


def test_a_scoped_auditor_cannot_export_a_task_she_is_no_member_of(settings, tasks, non_member_auditor, auditor):
    settings.PLD_AUDITORS_SCOPED = True
    hidden = tasks["hidden_task"]
    nils = _as(non_member_auditor)
    for url in (f"/tasks/{hidden.name}/review-log.csv", f"/tasks/{hidden.name}/review-log.json",
                f"/tasks/{hidden.name}/production/export.csv", f"/tasks/{hidden.name}/production/"):
        assert nils.get(url).status_code == 404, url
    assert hidden.name not in nils.get("/reports/").content.decode()
    # A member auditor exports it; with the setting off, every auditor does.
    assert _as(auditor).get(f"/tasks/{hidden.name}/review-log.csv").status_code == 200
    settings.PLD_AUDITORS_SCOPED = False
    assert nils.get(f"/tasks/{hidden.name}/review-log.csv").status_code == 200


def test_the_api_answers_a_token_of_a_non_member_owner_as_for_a_task_that_does_not_exist(
    tasks, non_member_reviewer, admin_user
):
    _token, raw = api_token_create(user=non_member_reviewer, name="nemo's script", created_by=admin_user)

    def classify(task_name: str):  # noqa: ANN202 - the test client's response
        return Client().post(f"/api/v1/tasks/{task_name}/classify", {"premise": "a", "hypothesis": "b"},
                             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}")

    hidden = classify(tasks["hidden_task"].name)
    assert hidden.status_code == 404 and hidden.json()["code"] == "unknown_task"
    assert classify("no-such-task").json() == {**hidden.json(), "error": "There is no task named 'no-such-task'."}
    assert classify(tasks["mine"].name).json().get("code") != "unknown_task"
    spec = Client().get("/api/v1/openapi.json", HTTP_AUTHORIZATION=f"Bearer {raw}").content.decode()
    assert tasks["mine"].name in spec and tasks["hidden_task"].name not in spec


def test_admins_add_and_remove_members_on_the_task_page_signed_with_a_reason_on_the_ledger(
    client, tasks, admin_user, non_member_reviewer
):
    hidden = tasks["hidden_task"]
    client.force_login(admin_user)
    empty = TaskFactory(name="nobodys-task")
    assert "No members yet" in client.get(f"/tasks/{empty.name}/members/").content.decode()
    refused = client.post(f"/tasks/{hidden.name}/members/",
                          {"action": "add", "user": "nemo", "reason": "", "password": "pw-adam"})
    assert refused.status_code == 400 and not TaskMembership.objects.filter(task=hidden, user__username="nemo")
    added = client.post(f"/tasks/{hidden.name}/members/",
                        {"action": "add", "user": "nemo", "reason": "joins the NDA review", "password": "pw-adam"})
    assert added.status_code == 302
    assert _as(non_member_reviewer).get(f"/rules/{tasks['hidden_rule'].pk}/").status_code == 200
    membership = TaskMembership.objects.get(task=hidden, user=non_member_reviewer)
    assert membership.signature.meaning == "task_member_added" and membership.signature.user == admin_user
    change = membership.signature.task_membership_change
    entry = LedgerEntry.objects.get(event="task.member_added", object_id=str(change.pk))
    facts = json.loads(entry.payload)["facts"]
    assert entry.actor == admin_user and facts["user_id"] == non_member_reviewer.pk
    assert facts["signature_id"] == membership.signature_id
    client.post(f"/tasks/{hidden.name}/members/",
                {"action": "remove", "user": "nemo", "reason": "left the team", "password": "pw-adam"})
    assert _as(non_member_reviewer).get(f"/rules/{tasks['hidden_rule'].pk}/").status_code == 404
    assert LedgerEntry.objects.filter(event="task.member_removed", actor=admin_user).count() == 1
    page = client.get(f"/tasks/{hidden.name}/members/").content.decode()
    assert "Task member removed by" in page and "Task member added by" in page and "left the team" in page


def test_only_admins_manage_members(tasks, reviewer, non_member_reviewer):
    from django.core.exceptions import PermissionDenied

    hidden = tasks["hidden_task"]
    answer = _as(reviewer).post(f"/tasks/{hidden.name}/members/",
                                {"action": "add", "user": "nemo", "reason": "x", "password": "pw-rita"})
    assert answer.status_code == 403
    assert not TaskMembership.objects.filter(task=hidden, user__username="nemo").exists()
    with pytest.raises(PermissionDenied):
        task_member_remove(task=hidden, user=reviewer, by=reviewer, reason="x")


def test_the_services_refuse_a_non_members_decision_whatever_door_calls_them(tasks, non_member_reviewer):
    from django.core.exceptions import PermissionDenied

    from rules.review.discussion import rule_comment_add
    from rules.review.services import rule_approve, rule_reject

    rule = tasks["hidden_rule"]
    with pytest.raises(PermissionDenied, match="not a member"):
        rule_approve(rule=rule, user=non_member_reviewer, lock_version=rule.lock_version)
    with pytest.raises(PermissionDenied, match="not a member"):
        rule_reject(rule=rule, user=non_member_reviewer, lock_version=rule.lock_version, reason="no")
    with pytest.raises(PermissionDenied, match="not a member"):
        rule_comment_add(rule=rule, user=non_member_reviewer, text="I should not be here")
    assert not Decision.objects.filter(rule=rule).exists()


def test_the_users_page_says_which_tasks_a_person_sees(client, tasks, admin_user, non_member_reviewer, auditor):
    client.force_login(admin_user)
    nemo = client.get(f"/users/{non_member_reviewer.pk}/").content.decode()
    assert "/tasks/nemos-task/members/" in nemo and "/tasks/nda-demo/members/" not in nemo
    assert "every task" in client.get(f"/users/{auditor.pk}/").content.decode()


def test_the_compare_pages_answer_404_for_a_version_or_run_of_another_task(
    tasks, non_member_reviewer, reviewer, admin_user
):
    from tests.support.prompt_versions import RULES, approve, compiled, finished_run

    hidden = tasks["hidden_task"]
    approve(hidden, reviewer, *RULES[0])
    old = compiled(hidden, admin_user)
    approve(hidden, reviewer, *RULES[1])
    new = compiled(hidden, admin_user)
    run_a, run_b = finished_run(old, 0.61, split="dev"), finished_run(new, 0.72, split="dev")
    # The same pages answer a member: the ids are real, so a 404 is the scope, not a typo.
    rita = _as(reviewer)
    assert rita.get(f"/prompts/compare/?a={old.pk}&b={new.pk}").status_code == 200
    assert rita.get(f"/evaluations/compare/?a={run_a.pk}&b={run_b.pk}").status_code == 200
    nemo = _as(non_member_reviewer)
    for url in (f"/prompts/compare/?a={old.pk}&b={new.pk}", f"/evaluations/compare/?a={run_a.pk}&b={run_b.pk}"):
        answer = nemo.get(url)
        assert answer.status_code == 404, url
        assert SECRET_WORDS not in answer.content.decode() and hidden.name not in answer.content.decode(), url
    # Without ids the pages list only her own task's versions and runs.
    for url in ("/prompts/compare/", "/evaluations/compare/"):
        assert hidden.name not in nemo.get(url).content.decode(), url


def test_a_scoped_auditor_cannot_order_a_report_on_a_version_of_a_task_she_is_no_member_of(
    settings, tasks, non_member_auditor, auditor, reviewer, admin_user
):
    from evaluation.models import Report
    from tests.support.prompt_versions import RULES, approve, compiled

    settings.PLD_AUDITORS_SCOPED = True
    hidden = tasks["hidden_task"]
    approve(hidden, reviewer, *RULES[0])
    version = compiled(hidden, admin_user)
    # The version's id in the POST body is the side door: the form's choices are her tasks' versions only.
    answer = _as(non_member_auditor).post("/reports/generate/", {"prompt_version": version.pk}, follow=True)
    assert "Choose a prompt version" in answer.content.decode() and hidden.name not in answer.content.decode()
    assert not Report.objects.filter(prompt_version=version).exists()
    # The service refuses whichever door calls it.
    from django.core.exceptions import PermissionDenied

    from evaluation.release.reports import report_request

    with pytest.raises(PermissionDenied, match="not a member"):
        report_request(prompt_version=version, user=non_member_auditor)
    # A member Auditor orders it (the id is real).
    assert _as(auditor).post("/reports/generate/", {"prompt_version": version.pk}).status_code == 302
    assert Report.objects.filter(prompt_version=version, generated_by=auditor).exists()


def test_a_non_member_can_neither_mark_wrong_nor_override_another_tasks_logged_decision_whatever_door(
    tasks, non_member_reviewer, reviewer, second_reviewer, admin_user
):
    from django.core.exceptions import PermissionDenied

    from evaluation.models import DecisionFeedback, DecisionOverride
    from evaluation.production.decision_log import decision_feedback_give, decision_override
    from tests.support.decisions import logged_call
    from tests.support.prompt_versions import approve_all, compiled
    from tests.support.signatures import sign_decision_override

    hidden = tasks["hidden_task"]
    approve_all(hidden, second_reviewer)
    call = logged_call(compiled(hidden, admin_user))
    nemo = _as(non_member_reviewer)
    assert nemo.post(f"/calls/{call.pk}/override/", {"overridden_label": "Contradiction", "reason": "x",
                                                      "password": "pw-nemo"}).status_code == 404
    with pytest.raises(PermissionDenied, match="not a member"):
        decision_feedback_give(call=call, correct_label="Contradiction", reason="x", user=non_member_reviewer)
    with pytest.raises(PermissionDenied, match="not a member"):
        decision_override(call=call, overridden_label="Contradiction", reason="x", user=non_member_reviewer,
                          signature=sign_decision_override(non_member_reviewer, call, "Contradiction"))
    assert not DecisionFeedback.objects.exists() and not DecisionOverride.objects.exists()
    # A member's feedback goes through the same service.
    decision_feedback_give(call=call, correct_label="Contradiction", reason="Keeps a copy", user=reviewer)
