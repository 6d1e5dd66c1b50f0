from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rules.models import Decision, Example, Rule, RuleSetReorderProposal
from rules.review.services import rule_approve, rule_create, rule_edit, rule_propose
from tests.support.factories import example, teacher_rule
from tests.support.signatures import sign_approval, sign_edit, sign_writing

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _bulk_rules(task, n: int, start: int = 0) -> None:
    Rule.objects.bulk_create(
        Rule(task=task, origin="teacher", label="Entailment", text=f"If clause {i}, then Entailment", support=i % 50,
             proposed_by_model="teacher-x")
        for i in range(start, start + n)
    )


def _bulk_examples(task, rule, n: int, start: int = 0) -> None:
    examples = []
    for i in range(start, start + n):
        inputs = {"premise": f"Clause {i} lets staff see it.", "hypothesis": "Staff may see it."}
        examples.append(Example(task=task, inputs=inputs, gold_label="Entailment", split="train",
                                content_hash=Example.hash_content(inputs, "Entailment"),
                                evidence=[{"start": 0, "end": 6}]))
    rule.examples.add(*Example.objects.bulk_create(examples))


def _count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


# --- queue ----------------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client) -> None:
    response = client.get("/review/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_people_without_a_role_get_403(client, outsider) -> None:
    client.force_login(outsider)
    assert client.get("/review/").status_code == 403


def test_the_queue_lists_pending_rules_by_support_with_counts(client, task, reviewer) -> None:
    low = teacher_rule(task, text="If low support, then Entailment", support=2)
    high = teacher_rule(task, text="If high support, then Entailment", support=9)
    done = teacher_rule(task, text="If already decided, then Entailment", support=20)
    rule_approve(rule=done, user=reviewer, lock_version=1, signature=sign_approval(reviewer, done))
    client.force_login(reviewer)
    body = client.get("/review/").content.decode()
    assert body.index(high.text) < body.index(low.text)
    assert done.text not in body
    assert "2 pending" in body and "1 approved" in body and "0 rejected" in body


def test_the_queue_filters_by_label_origin_and_topic(client, task, reviewer) -> None:
    teacher_rule(task, text="If E, then Entailment", topic="Sharing")
    teacher_rule(task, text="If C, then Contradiction", label="Contradiction", topic="Sharing")
    rule_create(task=task, user=reviewer, text="If hand, then Entailment", label="Entailment", topic="Oral",
        signature=sign_writing(reviewer, text="If hand, then Entailment", label="Entailment", topic="Oral"))
    client.force_login(reviewer)
    body = client.get("/review/?label=Contradiction").content.decode()
    assert "If C, then" in body and "If E, then" not in body
    body = client.get("/review/?origin=manual").content.decode()
    assert "If hand" in body and "If E, then" not in body
    body = client.get(f"/review/?task={task.name}&topic=Oral").content.decode()
    assert "If hand" in body and "If C, then" not in body


def test_an_empty_queue_says_nothing_left_to_review(client, task, reviewer) -> None:
    client.force_login(reviewer)
    assert "Nothing left to review" in client.get("/review/").content.decode()


def test_the_queue_filter_answers_htmx_with_a_fragment(client, task, reviewer) -> None:
    teacher_rule(task)
    client.force_login(reviewer)
    response = client.get("/review/?status=pending", HTTP_HX_TARGET="queue-results", **HTMX)
    body = response.content.decode()
    assert "<html" not in body and "site-header" not in body
    assert "1 pending" in body


def test_the_queue_runs_the_same_number_of_queries_for_10_and_1000_rules(client, task, reviewer) -> None:
    _bulk_rules(task, 10)
    client.force_login(reviewer)
    client.get("/review/")  # warm the session and permission caches
    small = _count_queries(client, "/review/")
    _bulk_rules(task, 990, start=10)
    large = _count_queries(client, "/review/")
    assert small == large
    assert large <= 12


# --- rule page ------------------------------------------------------------------------------------


def test_the_rule_page_shows_the_rule_its_proposer_and_highlighted_evidence(client, task, reviewer) -> None:
    premise = "The Recipient may disclose Confidential Information to its employees who need to know it."
    ex = example(task, 1, premise=premise, evidence=[{"start": 14, "end": 68}])
    rule = teacher_rule(task, examples=[ex], support=7, label_balance={"Entailment": 6, "NotMentioned": 1})
    client.force_login(reviewer)
    body = client.get(f"/rules/{rule.pk}/").content.decode()
    assert rule.text in body
    assert "gemma-3-270m-q4_k_m (teacher model)" in body
    assert "<mark>may disclose Confidential Information to its employees</mark>" in body
    assert "Entailment 6" in body
    assert 'id="approve-form"' in body


def test_the_rule_page_of_a_refine_proposal_shows_its_failures_and_dev_figures(client, task, reviewer) -> None:
    failure = example(task, 2, premise="Only the signatory may see it.", gold="Contradiction")
    proposal = {
        "failure_example_ids": [failure.pk],
        "dev_before": {"macro_f1": 0.61},
        "dev_after": {"macro_f1": 0.66},
        "flips": {"wrong_to_right": [1, 2], "right_to_wrong": [3]},
    }
    rule = rule_propose(task=task, text="If only a named person may see it, then Contradiction", label="Contradiction",
                        origin=Rule.Origin.REFINE, proposed_by_model="teacher-x", diagnosis="MISSING",
                        proposal=proposal)
    client.force_login(reviewer)
    body = client.get(f"/rules/{rule.pk}/").content.decode()
    assert "Missing: no rule covers these cases" in body
    assert "Only the signatory may see it." in body
    assert "0.61" in body and "0.66" in body
    assert "<strong>2</strong> wrong → right" in body


def test_the_rule_page_runs_the_same_number_of_queries_for_10_and_1000_rules_and_examples(
    client, task, reviewer
) -> None:
    rule = teacher_rule(task)
    _bulk_rules(task, 10)
    _bulk_examples(task, rule, 10)
    client.force_login(reviewer)
    client.get(f"/rules/{rule.pk}/")
    small = _count_queries(client, f"/rules/{rule.pk}/")
    _bulk_rules(task, 990, start=10)
    _bulk_examples(task, rule, 990, start=10)
    large = _count_queries(client, f"/rules/{rule.pk}/")
    assert small == large
    # 16, plus one for the similar rules and one for the reviewers who may still approve (issue 27), plus the
    # signing fields' two questions: does the signer sign through an identity provider, hold a passkey (issue 25).
    assert large <= 20


# --- decisions ------------------------------------------------------------------------------------


def test_approving_without_js_redirects_to_the_next_rule_with_an_undo(client, task, reviewer) -> None:
    first = teacher_rule(task, text="If first, then Entailment", support=9)
    second = teacher_rule(task, text="If second, then Entailment", support=5)
    client.force_login(reviewer)
    response = client.post(f"/rules/{first.pk}/approve/", {"password": "pw-rita", "lock_version": 1, "reason": ""})
    assert response.status_code == 302 and response["Location"] == f"/rules/{second.pk}/"
    body = client.get(response["Location"]).content.decode()
    assert f"Approved rule {first.pk}" in body and "Undo" in body
    first.refresh_from_db()
    assert first.status == Rule.Status.APPROVED


def test_the_queue_filters_travel_with_a_decision(client, task, reviewer) -> None:
    first = teacher_rule(task, text="If first, then Contradiction", label="Contradiction", support=9)
    teacher_rule(task, text="If middle, then Entailment", support=7)
    third = teacher_rule(task, text="If third, then Contradiction", label="Contradiction", support=5)
    client.force_login(reviewer)
    response = client.post(f"/rules/{first.pk}/reject/",
                           {"password": "pw-rita", "lock_version": 1, "reason": "Vague", "q_label": "Contradiction"})
    assert response["Location"] == f"/rules/{third.pk}/?label=Contradiction"


def test_an_htmx_decision_answers_with_the_next_rule_fragment(client, task, reviewer) -> None:
    first = teacher_rule(task, text="If first, then Entailment", support=9)
    second = teacher_rule(task, text="If second, then Entailment", support=5)
    client.force_login(reviewer)
    response = client.post(f"/rules/{first.pk}/reject/", {"password": "pw-rita",
                                                          "lock_version": 1, "reason": "Too vague"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert second.text in body and f"Rejected rule {first.pk}" in body
    assert f"/decisions/{Decision.objects.get(action='reject').pk}/undo/" in body
    assert response["HX-Push-Url"] == f"/rules/{second.pk}/"


def test_the_last_decision_shows_nothing_left_to_review(client, task, reviewer) -> None:
    rule = teacher_rule(task)
    client.force_login(reviewer)
    body = client.post(f"/rules/{rule.pk}/approve/", {"password": "pw-rita",
                                                      "lock_version": 1}, **HTMX).content.decode()
    assert "Nothing left to review" in body and "Undo" in body


def test_a_reject_without_a_reason_comes_back_with_the_error(client, task, reviewer) -> None:
    rule = teacher_rule(task)
    client.force_login(reviewer)
    response = client.post(f"/rules/{rule.pk}/reject/", {"password": "pw-rita",
                                                         "lock_version": 1, "reason": ""}, **HTMX)
    assert "Say why you reject this rule." in response.content.decode()
    response = client.post(f"/rules/{rule.pk}/reject/", {"password": "pw-rita", "lock_version": 1, "reason": ""})
    assert response.status_code == 400
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING


def test_an_edit_makes_a_revision_and_the_editor_is_refused_approval(client, task, reviewer) -> None:
    rule = teacher_rule(task)
    client.force_login(reviewer)
    client.post(f"/rules/{rule.pk}/edit/", {"password": "pw-rita", "lock_version": 1, "reason": "Names the people",
                                            "label": "Entailment", "text": "If staff may see it, then Entailment",
                                            "topic": "Sharing",
                                            "precedence_note": ""})
    rule.refresh_from_db()
    assert rule.current_revision.number == 2 and rule.topic == "Sharing"
    response = client.post(f"/rules/{rule.pk}/approve/", {"password": "pw-rita", "lock_version": rule.lock_version})
    assert response.status_code == 400
    assert "another reviewer must approve it" in response.content.decode()
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING


def test_a_stale_decision_is_refused_and_shows_what_changed(client, task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rule_edit(rule=rule, user=second_reviewer, lock_version=1, reason="Narrower wording",
              text="If the clause names employees, then Entailment", label="Entailment",
                  signature=sign_edit(second_reviewer, text="If the clause names employees, then Entailment",
                      label="Entailment"))
    client.force_login(reviewer)
    response = client.post(f"/rules/{rule.pk}/reject/", {"password": "pw-rita", "lock_version": 1, "reason": "Vague"})
    body = response.content.decode()
    assert response.status_code == 409
    assert "changed while you were reading it" in body
    assert "ravi" in body and "Narrower wording" in body
    assert '<ins class="diff-add">names employees, then' in body or "diff-add" in body
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING
    assert not Decision.objects.filter(action="reject").exists()


def test_undo_restores_the_rule(client, task, reviewer) -> None:
    rule = teacher_rule(task)
    client.force_login(reviewer)
    client.post(f"/rules/{rule.pk}/approve/", {"password": "pw-rita", "lock_version": 1})
    decision = Decision.objects.get(action="approve")
    response = client.post(f"/decisions/{decision.pk}/undo/", {}, **HTMX)
    assert "pending again" in response.content.decode()
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING
    assert Decision.objects.get(action="undo").undoes == decision


def test_nobody_else_can_undo_a_decision(client, task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    decision = rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    client.force_login(second_reviewer)
    assert client.post(f"/decisions/{decision.pk}/undo/").status_code == 403
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED


# --- auditors -------------------------------------------------------------------------------------


def test_an_auditor_sees_the_rule_but_no_action(client, task, auditor) -> None:
    rule = teacher_rule(task)
    client.force_login(auditor)
    for url in (f"/rules/{rule.pk}/", "/review/", f"/rules/{rule.pk}/history/", f"/tasks/{task.name}/ruleset/"):
        body = client.get(url).content.decode()
        for marker in ("approve-form", "reject-form", "edit-form", "Write a rule", "ruleset-reorder", "/undo/"):
            assert marker not in body, (url, marker)


@pytest.mark.parametrize("path", ["approve", "reject", "edit"])
def test_a_forged_post_from_an_auditor_gets_403(client, task, auditor, path) -> None:
    rule = teacher_rule(task)
    client.force_login(auditor)
    data = {"lock_version": 1, "reason": "forged", "text": "x", "label": "Entailment"}
    assert client.post(f"/rules/{rule.pk}/{path}/", data).status_code == 403
    assert client.post(f"/tasks/{task.name}/ruleset/reorder/", {f"number_{rule.pk}": 1,
                                                                  "reason": "forged"}).status_code == 403
    assert client.post("/rules/new/", {"task": task.name, "text": "x", "label": "Entailment"}).status_code == 403
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING and not Decision.objects.exists()


# --- history, rule set, hand-written rules ---------------------------------------------------------


def test_the_history_shows_every_decision_and_a_word_diff(client, task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task, text="If the clause lets the recipient share, then Entailment")
    rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Say who", label="Entailment",
              text="If the clause lets the recipient share with employees, then Entailment",
                  signature=sign_edit(reviewer,
                      text="If the clause lets the recipient share with employees, then Entailment",
                      label="Entailment"))
    rule.refresh_from_db()
    rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version, reason="Now precise",
        signature=sign_approval(second_reviewer, rule))
    client.force_login(reviewer)
    body = client.get(f"/rules/{rule.pk}/history/").content.decode()
    assert "Say who" in body and "Now precise" in body and "ravi" in body and "rita" in body
    assert "share<ins class=\"diff-add\"> with employees</ins>, then" in body
    fragment = client.get(f"/rules/{rule.pk}/history/?a=2&b=1", HTTP_HX_TARGET="revision-diff", **HTMX)
    assert "<html" not in fragment.content.decode()
    assert "share<del class=\"diff-del\"> with employees</del>, then" in fragment.content.decode()


def test_the_rule_set_lists_approved_rules_in_order_and_reorders_them(client, task, reviewer) -> None:
    first = teacher_rule(task, text="If first, then Entailment", topic="Sharing", precedence_note="Check first")
    second = teacher_rule(task, text="If second, then Contradiction", label="Contradiction", topic="Survival")
    rejected = teacher_rule(task, text="If rejected, then Entailment")
    for rule in (first, second):
        rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    client.force_login(reviewer)
    client.post(f"/rules/{rejected.pk}/reject/", {"password": "pw-rita", "lock_version": 1, "reason": "Vague"})
    body = client.get(f"/tasks/{task.name}/ruleset/").content.decode()
    assert body.index("If first") < body.index("If second") and "If rejected" not in body
    assert "Check first" in body
    response = client.post(f"/tasks/{task.name}/ruleset/reorder/",
                           {f"number_{first.pk}": 1, f"number_{second.pk}": 1, "reason": "Survival first",
                            "password": "pw-rita"})
    assert response.status_code == 302
    body = client.get(f"/tasks/{task.name}/ruleset/").content.decode()
    assert "Order proposals waiting for review" in body and "Survival first" in body
    listed = body[body.index('id="ruleset-reorder-form"'):]
    assert listed.index("If first") < listed.index("If second")  # nothing moves before a second reviewer agrees
    assert not Decision.objects.filter(action="reorder").exists()
    assert RuleSetReorderProposal.objects.get().signature.meaning == "reorder_proposed"


def test_writing_a_rule_by_hand(client, task, reviewer) -> None:
    client.force_login(reviewer)
    assert client.get(f"/rules/new/?task={task.name}").status_code == 200
    response = client.post("/rules/new/", {"password": "pw-rita", "task": task.name,
                                           "text": "If oral disclosures are excluded, then Contradiction",
                                           "label": "Contradiction", "topic": "Oral",
                                           "precedence_note": "", "reason": "Gap"})
    rule = Rule.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/rules/{rule.pk}/"
    assert (rule.origin, rule.proposed_by) == ("manual", reviewer)
    assert "Another reviewer must approve it" in client.get(response["Location"]).content.decode()


def test_a_hand_written_rule_with_a_wrong_label_shows_the_error(client, task, reviewer) -> None:
    client.force_login(reviewer)
    response = client.post("/rules/new/", {"password": "pw-rita", "task": task.name, "text": "If x, then y",
                                           "label": "Nope"})
    assert response.status_code == 400 and "errorlist" in response.content.decode()
    assert not Rule.objects.exists()


def test_the_queue_shows_approvals_so_far(client, task, reviewer, settings) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    rule = teacher_rule(task)
    rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    client.force_login(reviewer)
    assert '<span class="muted">1/2</span>' in client.get("/review/").content.decode()
