"""Four eyes without side doors: every way a person could approve their own work, tried and refused.

Each side door from issue 10 is tried through the service, through the view URL a browser would post
to, and (where a constraint can say it) through raw SQL.
"""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import Client

from rules.models import ClusteringRun, Decision, MicroRule, Rule, RuleSetReorderProposal
from rules.review.services import (
    decision_undo,
    rule_approve,
    rule_authors,
    rule_create,
    rule_edit,
    rule_reject,
    rule_required_approvals,
    ruleset_reorder_propose,
    ruleset_rules,
)
from rules.teacher.clustering import micro_rule_promote
from tests.support.factories import make_examples, make_micro_rule, teacher_rule
from tests.support.signatures import (
    sign_approval,
    sign_edit,
    sign_order_approval,
    sign_order_proposal,
    sign_rejection,
    sign_writing,
)

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _noise(task) -> MicroRule:
    run = ClusteringRun.objects.create(task=task, eps=0.4, min_samples=2, embedding="tfidf-svd", n_rules=1, n_noise=1)
    micro = make_micro_rule(make_examples(task, 1)[0], "the clause names a governing law")
    micro.clustering_run, micro.cluster = run, -1
    micro.save()
    return micro


def _fresh(rule: Rule) -> Rule:
    return Rule.objects.get(pk=rule.pk)


# --- a teacher revision promoted by a person ---------------------------------------------------------


def test_whoever_promotes_a_noise_micro_rule_cannot_approve_it(task, reviewer, second_reviewer) -> None:
    rule = micro_rule_promote(micro_rule=_noise(task), user=reviewer, reason="Edge case worth keeping")
    assert rule_authors(rule) == {reviewer.pk}
    with pytest.raises(ValidationError, match="You wrote, edited or promoted a revision of this rule"):
        rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version,
            signature=sign_approval(reviewer, rule))
    assert _fresh(rule).status == Rule.Status.PENDING
    rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version,
        signature=sign_approval(second_reviewer, rule))
    assert _fresh(rule).status == Rule.Status.APPROVED


def test_promoting_then_approving_through_the_urls_is_refused(task, reviewer) -> None:
    client = _client(reviewer)
    micro = _noise(task)
    client.post(f"/micro-rules/{micro.pk}/promote/", {"reason": "keep it"})
    rule = Rule.objects.get()
    page = client.get(f"/rules/{rule.pk}/").content.decode()
    assert "You wrote, edited or promoted a revision of this rule, so you never count toward its approval" in page
    assert 'disabled aria-describedby="approve-why-not"' in page
    response = client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version, "password": "pw-rita"})
    assert response.status_code == 400
    assert "another reviewer must approve it (four eyes)" in response.content.decode()
    assert _fresh(rule).status == Rule.Status.PENDING
    assert not Decision.objects.filter(action="approve").exists()


# --- an author since the last approval, even after someone else's edit -------------------------------


def test_a_writer_cannot_approve_after_another_reviewer_edits(task, reviewer, second_reviewer, third_reviewer) -> None:
    rule = rule_create(task=task, user=reviewer, text="If the clause allows oral disclosure, then Entailment",
                       label="Entailment",
        signature=sign_writing(reviewer, text="If the clause allows oral disclosure, then Entailment",
            label="Entailment"))
    rule_edit(rule=rule, user=second_reviewer, lock_version=_fresh(rule).lock_version, reason="Typo",
              text="If the clause allows oral disclosures, then Entailment", label="Entailment",
        signature=sign_edit(second_reviewer, text="If the clause allows oral disclosures, then Entailment",
            label="Entailment"))
    assert rule_authors(rule) == {reviewer.pk, second_reviewer.pk}
    for author in (reviewer, second_reviewer):
        with pytest.raises(ValidationError, match="four eyes"):
            rule_approve(rule=rule, user=author, lock_version=_fresh(rule).lock_version,
                signature=sign_approval(author, rule))
    assert _fresh(rule).status == Rule.Status.PENDING
    rule_approve(rule=rule, user=third_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(third_reviewer, rule))
    assert _fresh(rule).status == Rule.Status.APPROVED


def test_a_writer_cannot_approve_after_another_edit_through_the_urls(task, reviewer, second_reviewer) -> None:
    rule = rule_create(task=task, user=reviewer, text="If the clause allows oral disclosure, then Entailment",
                       label="Entailment",
        signature=sign_writing(reviewer, text="If the clause allows oral disclosure, then Entailment",
            label="Entailment"))
    _client(second_reviewer).post(f"/rules/{rule.pk}/edit/", {
        "lock_version": _fresh(rule).lock_version, "reason": "Typo", "label": "Entailment",
        "text": "If the clause allows oral disclosures, then Entailment", "password": "pw-ravi",
    })
    assert _fresh(rule).current_revision.number == 2
    response = _client(reviewer).post(f"/rules/{rule.pk}/approve/", {"lock_version": _fresh(rule).lock_version,
                                                                    "password": "pw-rita"})
    assert response.status_code == 400 and "four eyes" in response.content.decode()
    assert _fresh(rule).status == Rule.Status.PENDING


def test_an_undone_edit_still_makes_its_editor_an_author(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    edit = rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Try", label="Entailment",
                     text="If the clause names staff, then Entailment",
        signature=sign_edit(reviewer, text="If the clause names staff, then Entailment", label="Entailment"))
    decision_undo(decision=edit, user=reviewer)
    assert _fresh(rule).current_revision.number == 1
    with pytest.raises(ValidationError, match="four eyes"):
        rule_approve(rule=rule, user=reviewer, lock_version=_fresh(rule).lock_version,
            signature=sign_approval(reviewer, rule))


def test_authorship_never_expires_even_after_an_approval(task, reviewer, second_reviewer, third_reviewer) -> None:
    rule = rule_create(task=task, user=reviewer, text="If the clause allows oral disclosure, then Entailment",
                       label="Entailment",
        signature=sign_writing(reviewer, text="If the clause allows oral disclosure, then Entailment",
            label="Entailment"))
    rule_approve(rule=rule, user=second_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(second_reviewer, rule))
    rule_edit(rule=rule, user=second_reviewer, lock_version=_fresh(rule).lock_version, reason="Narrower",
              text="If the clause allows oral disclosure to staff, then Entailment", label="Entailment",
        signature=sign_edit(second_reviewer, text="If the clause allows oral disclosure to staff, then Entailment",
            label="Entailment"))
    # rita wrote revision 1: revision 2 grew out of her wording, so she is no second pair of eyes on it.
    assert rule_authors(rule) == {reviewer.pk, second_reviewer.pk}
    with pytest.raises(ValidationError, match="never count toward its approval"):
        rule_approve(rule=rule, user=reviewer, lock_version=_fresh(rule).lock_version,
            signature=sign_approval(reviewer, rule))
    assert _fresh(rule).status == Rule.Status.PENDING
    rule_approve(rule=rule, user=third_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(third_reviewer, rule))
    assert _fresh(rule).status == Rule.Status.APPROVED


def test_the_database_refuses_an_approval_by_an_author(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rule_edit(rule=rule, user=second_reviewer, lock_version=1, reason="Typo", label="Entailment",
              text="If the clause lets the recipient share with staff, then Entailment",
        signature=sign_edit(second_reviewer, text="If the clause lets the recipient share with staff, then Entailment",
            label="Entailment"))
    edited = _fresh(rule)
    rule_edit(rule=edited, user=reviewer, lock_version=edited.lock_version, reason="Say employees",
              label="Entailment", text="If the clause lets the recipient share with employees, then Entailment",
        signature=sign_edit(reviewer, text="If the clause lets the recipient share with employees, then Entailment",
            label="Entailment"))
    rule = _fresh(rule)
    for author in (reviewer, second_reviewer):  # wrote the current revision; wrote an earlier one
        with pytest.raises(DatabaseError, match="Four eyes"), transaction.atomic():
            _raw_signed_approval(rule, author)
    assert not Decision.objects.filter(action="approve").exists()


def test_the_database_refuses_an_approval_by_the_person_who_promoted(task, reviewer) -> None:
    rule = micro_rule_promote(micro_rule=_noise(task), user=reviewer)
    with pytest.raises(DatabaseError, match="Four eyes"), transaction.atomic():
        _raw_signed_approval(rule, reviewer)


# --- a rejection needs the full number of approvals to be overturned ----------------------------------


def test_one_approval_does_not_overturn_a_rejection(task, reviewer, second_reviewer, third_reviewer, settings) -> None:
    settings.PLD_REQUIRED_APPROVALS = 1
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Too broad",
        signature=sign_rejection(reviewer, rule))
    assert rule_required_approvals(_fresh(rule)) == 2
    rule_approve(rule=rule, user=second_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(second_reviewer, rule))
    assert _fresh(rule).status == Rule.Status.REJECTED
    rule_approve(rule=rule, user=third_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(third_reviewer, rule))
    assert _fresh(rule).status == Rule.Status.APPROVED
    # Once approved again the rejection is history: the next revision needs the usual number.
    assert rule_required_approvals(_fresh(rule)) == 1


def test_the_rejecter_does_not_count_towards_overturning(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Too broad",
        signature=sign_rejection(reviewer, rule))
    with pytest.raises(ValidationError, match="You rejected this rule"):
        rule_approve(rule=rule, user=reviewer, lock_version=_fresh(rule).lock_version,
            signature=sign_approval(reviewer, rule))
    assert _fresh(rule).status == Rule.Status.REJECTED


def test_editing_a_rejected_rule_does_not_lower_the_bar(task, reviewer, second_reviewer, third_reviewer) -> None:
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Too broad",
        signature=sign_rejection(reviewer, rule))
    rule_edit(rule=rule, user=second_reviewer, lock_version=_fresh(rule).lock_version, reason="Narrower",
              label="Entailment", text="If the clause lets the recipient share with named staff, then Entailment",
        signature=sign_edit(second_reviewer, label="Entailment",
                            text="If the clause lets the recipient share with named staff, then Entailment"))
    assert _fresh(rule).status == Rule.Status.PENDING
    rule_approve(rule=rule, user=third_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(third_reviewer, rule))
    assert _fresh(rule).status == Rule.Status.PENDING  # 1 of 2: the rejection still stands against it


def test_a_rejection_is_overturned_only_with_enough_approvals_through_the_urls(
    task, reviewer, second_reviewer, third_reviewer
) -> None:
    rule = teacher_rule(task)
    _client(reviewer).post(f"/rules/{rule.pk}/reject/", {"lock_version": 1, "reason": "Too broad",
                                                             "password": "pw-rita"})
    page = _client(second_reviewer).get(f"/rules/{rule.pk}/").content.decode()
    assert "0 of 2" in page and "comes back only when 2 reviewers" in page
    response = _client(second_reviewer).post(f"/rules/{rule.pk}/approve/", {"lock_version": _fresh(rule).lock_version,
                                                                          "password": "pw-ravi"})
    assert response.status_code == 302
    assert _fresh(rule).status == Rule.Status.REJECTED
    response = _client(reviewer).post(f"/rules/{rule.pk}/approve/", {"lock_version": _fresh(rule).lock_version,
                                                                   "password": "pw-rita"})
    assert response.status_code == 400 and "You rejected this rule" in response.content.decode()
    _client(third_reviewer).post(f"/rules/{rule.pk}/approve/", {"lock_version": _fresh(rule).lock_version,
                                                                "password": "pw-rhea"})
    assert _fresh(rule).status == Rule.Status.APPROVED


def test_overturning_takes_the_configured_number_when_it_is_higher(
    task, reviewer, second_reviewer, third_reviewer, settings
) -> None:
    settings.PLD_REQUIRED_APPROVALS = 3
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Too broad",
        signature=sign_rejection(reviewer, rule))
    assert rule_required_approvals(_fresh(rule)) == 3


# --- a reorder is a proposal another reviewer approves ------------------------------------------------


def test_reordering_through_the_urls_needs_a_second_reviewer(task, reviewer, second_reviewer) -> None:
    first, second = (teacher_rule(task, text=f"If clause {i}, then Entailment") for i in range(2))
    for rule in (first, second):
        rule_approve(rule=rule, user=second_reviewer, lock_version=1, signature=sign_approval(second_reviewer, rule))
    client = _client(reviewer)
    response = client.post(f"/tasks/{task.name}/ruleset/reorder/",
                           {f"number_{first.pk}": 2, f"number_{second.pk}": 1, "reason": "Narrow first",
                            "password": "pw-rita"})
    assert response.status_code == 302
    proposal = RuleSetReorderProposal.objects.get()
    assert [r.pk for r in ruleset_rules(task)] == [first.pk, second.pk]
    page = client.get(f"/tasks/{task.name}/ruleset/").content.decode()
    assert "You proposed this order, so another reviewer must approve it" in page
    response = client.post(f"/ruleset-proposals/{proposal.pk}/approve/", {"password": "pw-rita"})
    assert response.status_code == 400 and "another reviewer must approve it" in response.content.decode()
    assert [r.pk for r in ruleset_rules(task)] == [first.pk, second.pk]

    response = _client(second_reviewer).post(f"/ruleset-proposals/{proposal.pk}/approve/",
                                             {"reason": "Yes", "password": "pw-ravi"})
    assert response.status_code == 302
    assert [r.pk for r in ruleset_rules(task)] == [second.pk, first.pk]


def test_rejecting_an_order_proposal_through_the_url(task, reviewer, second_reviewer) -> None:
    first, second = (teacher_rule(task, text=f"If clause {i}, then Entailment") for i in range(2))
    for rule in (first, second):
        rule_approve(rule=rule, user=second_reviewer, lock_version=1, signature=sign_approval(second_reviewer, rule))
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[second.pk, first.pk], reason="x",
        signature=sign_order_proposal(reviewer, task, [second.pk, first.pk]))
    client = _client(second_reviewer)
    response = client.post(f"/ruleset-proposals/{proposal.pk}/reject/", {"reason": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "Say why" in response.content.decode()
    response = client.post(f"/ruleset-proposals/{proposal.pk}/reject/",
                           {"reason": "General rule wins", "password": "pw-ravi"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "<html" not in response.content.decode()
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == ("rejected", second_reviewer)
    assert [r.pk for r in ruleset_rules(task)] == [first.pk, second.pk]


def test_the_queue_counts_against_the_overturning_number(task, reviewer, second_reviewer, third_reviewer) -> None:
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Too broad",
        signature=sign_rejection(reviewer, rule))
    rule_edit(rule=rule, user=second_reviewer, lock_version=_fresh(rule).lock_version, reason="Narrower",
              label="Entailment", text="If the clause lets the recipient share with named staff, then Entailment",
        signature=sign_edit(second_reviewer, label="Entailment",
                            text="If the clause lets the recipient share with named staff, then Entailment"))
    rule_approve(rule=rule, user=third_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(third_reviewer, rule))
    body = _client(reviewer).get(f"/review/?task={task.name}&status=pending").content.decode()
    assert "1/2" in body


def test_the_review_log_names_who_proposed_and_who_approved_an_order(task, reviewer, second_reviewer,
                                                                        auditor) -> None:
    from rules.review.services import ruleset_reorder_approve

    first, second = (teacher_rule(task, text=f"If clause {i}, then Entailment") for i in range(2))
    for rule in (first, second):
        rule_approve(rule=rule, user=second_reviewer, lock_version=1, signature=sign_approval(second_reviewer, rule))
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[second.pk, first.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [second.pk, first.pk]))
    ruleset_reorder_approve(proposal=proposal, user=second_reviewer, reason="Agreed",
        signature=sign_order_approval(second_reviewer, proposal))
    log = _client(auditor).get(f"/tasks/{task.name}/review-log.json").json()["decisions"]
    order_rows = [(row["action"], row["reviewer"], row["reason"]) for row in log if row["order_proposal"]]
    assert order_rows == [("propose_order", "rita", "Narrow first"), ("approve_order", "ravi", "Agreed")]
    assert [row["action"] for row in log][-2:] == ["reorder", "reorder"]


def test_the_database_refuses_turning_an_approval_into_one_by_an_author(task, reviewer, second_reviewer,
                                                                          third_reviewer, settings) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    rule = rule_create(task=task, user=reviewer, text="If the clause allows oral disclosure, then Entailment",
                       label="Entailment",
        signature=sign_writing(reviewer, text="If the clause allows oral disclosure, then Entailment",
            label="Entailment"))
    approval = rule_approve(rule=rule, user=second_reviewer, lock_version=_fresh(rule).lock_version,
        signature=sign_approval(second_reviewer, rule))
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE rules_decision SET reviewer_id = %s WHERE id = %s", [reviewer.pk, approval.pk])
    approval.refresh_from_db()
    assert approval.reviewer == second_reviewer


# --- issue 22, attack 1: the writer of a rule approved, then rejected, does not help overturn it ----------


def _ravi_writes_rita_approves_then_rejects(task, rita, ravi) -> Rule:
    text = "If the clause allows oral disclosure, then Entailment"
    rule = rule_create(task=task, user=ravi, text=text, label="Entailment",
                       signature=sign_writing(ravi, text=text, label="Entailment"))
    rule_approve(rule=rule, user=rita, lock_version=_fresh(rule).lock_version, signature=sign_approval(rita, rule))
    assert _fresh(rule).status == Rule.Status.APPROVED
    rule_reject(rule=rule, user=rita, lock_version=_fresh(rule).lock_version, reason="Too broad after all",
                signature=sign_rejection(rita, rule))
    assert _fresh(rule).status == Rule.Status.REJECTED
    return _fresh(rule)


def test_the_writer_of_an_approved_then_rejected_rule_cannot_help_overturn_the_rejection(
    task, reviewer, second_reviewer, third_reviewer
) -> None:
    rita, ravi, rhea = reviewer, second_reviewer, third_reviewer
    rule = _ravi_writes_rita_approves_then_rejects(task, rita, ravi)
    assert rule_authors(rule) == {ravi.pk}
    assert rule_required_approvals(rule) == 2
    with pytest.raises(ValidationError, match="You wrote, edited or promoted a revision of this rule"):
        rule_approve(rule=rule, user=ravi, lock_version=rule.lock_version, signature=sign_approval(ravi, rule))
    rule_approve(rule=rule, user=rhea, lock_version=_fresh(rule).lock_version, signature=sign_approval(rhea, rule))
    # rhea is one of the two; ravi's approval was refused, so the rejection still stands.
    assert _fresh(rule).status == Rule.Status.REJECTED
    assert not Decision.objects.filter(rule=rule, action="approve", reviewer=ravi).exists()


def test_the_writer_is_refused_through_the_url_and_the_page_says_why(task, reviewer, second_reviewer) -> None:
    rule = _ravi_writes_rita_approves_then_rejects(task, reviewer, second_reviewer)
    client = _client(second_reviewer)
    page = client.get(f"/rules/{rule.pk}/").content.decode()
    assert "so you never count toward its approval, whatever happened to it since" in page
    response = client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version, "password": "pw-ravi"})
    assert response.status_code == 400 and "four eyes" in response.content.decode()
    assert _fresh(rule).status == Rule.Status.REJECTED


def _raw_signed_approval(rule: Rule, user) -> None:
    # Signed, so that only the four-eyes trigger can refuse it (an unsigned approval is refused for that alone).
    signature = sign_approval(user, rule)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rules_decision (rule_id, revision_id, action, reviewer_id, reason, status_before, "
            "status_after, created_at, signature_id) VALUES (%s, %s, 'approve', %s, 'raw', %s, %s, "
            "CURRENT_TIMESTAMP, %s)", [rule.pk, rule.current_revision_id, user.pk, rule.status, rule.status,
                                       signature.pk],
        )


def test_the_database_refuses_the_writers_approval_after_an_approval_and_a_rejection(
    task, reviewer, second_reviewer, third_reviewer
) -> None:
    rule = _ravi_writes_rita_approves_then_rejects(task, reviewer, second_reviewer)
    with pytest.raises(DatabaseError, match="Four eyes: an author of a rule never approves it"), \
            transaction.atomic():
        _raw_signed_approval(rule, second_reviewer)
    assert not Decision.objects.filter(rule=rule, action="approve", reviewer=second_reviewer).exists()
    # The same signed raw insert by someone who never wrote the rule goes through: the trigger is what refused.
    _raw_signed_approval(rule, third_reviewer)
    assert Decision.objects.filter(rule=rule, action="approve", reviewer=third_reviewer).exists()


def test_a_rule_someone_ever_wrote_is_never_waiting_for_them(task, reviewer, second_reviewer) -> None:
    from rules.review.queries import waiting_for

    text = "If the clause allows oral disclosure, then Entailment"
    rule = rule_create(task=task, user=second_reviewer, text=text, label="Entailment",
                       signature=sign_writing(second_reviewer, text=text, label="Entailment"))
    rule_approve(rule=rule, user=reviewer, lock_version=_fresh(rule).lock_version,
                 signature=sign_approval(reviewer, rule))
    edited = "If the clause allows oral disclosure to staff, then Entailment"
    rule_edit(rule=rule, user=reviewer, lock_version=_fresh(rule).lock_version, reason="Narrower", text=edited,
              label="Entailment", signature=sign_edit(reviewer, text=edited, label="Entailment"))
    # ravi wrote revision 1, rita revision 2: the pending revision waits for neither.
    assert rule not in waiting_for(second_reviewer)
    assert rule not in waiting_for(reviewer)
