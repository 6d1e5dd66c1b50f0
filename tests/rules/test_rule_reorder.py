"""Reordering the rule set is a proposal that another reviewer approves before the order changes or compiles."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction

from rules.models import Decision, RuleSetReorderApproval, RuleSetReorderProposal
from rules.review.services import (
    rule_approve,
    rule_reject,
    ruleset_order_from_numbers,
    ruleset_reorder_approve,
    ruleset_reorder_propose,
    ruleset_reorder_reject,
    ruleset_rules,
)
from tests.support.factories import teacher_rule
from tests.support.signatures import (
    sign_approval,
    sign_order_approval,
    sign_order_proposal,
    sign_order_rejection,
    sign_rejection,
)

pytestmark = pytest.mark.django_db


def _approved(task, user, n: int) -> list:
    rules = []
    for i in range(n):
        rule = teacher_rule(task, text=f"If clause {i}, then Entailment")
        rule_approve(rule=rule, user=user, lock_version=1, signature=sign_approval(user, rule))
        rule.refresh_from_db()
        rules.append(rule)
    return rules


def _order(task) -> list[int]:
    return [r.pk for r in ruleset_rules(task)]


def test_a_proposal_changes_nothing_until_another_reviewer_approves_it(task, reviewer, second_reviewer) -> None:
    a, b, c = _approved(task, reviewer, 3)
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[a.pk, c.pk, b.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [a.pk, c.pk, b.pk]))
    assert _order(task) == [a.pk, b.pk, c.pk]
    assert not Decision.objects.filter(action="reorder").exists()

    ruleset_reorder_approve(proposal=proposal, user=second_reviewer, reason="Agreed",
        signature=sign_order_approval(second_reviewer, proposal))
    proposal.refresh_from_db()
    assert _order(task) == [a.pk, c.pk, b.pk]
    assert (proposal.status, proposal.decided_by, proposal.decision_reason) == ("approved", second_reviewer, "Agreed")
    moved = Decision.objects.filter(action="reorder").order_by("rule_id")
    assert [(d.rule_id, d.reviewer) for d in moved] == [(b.pk, second_reviewer), (c.pk, second_reviewer)]
    assert f"Order proposal {proposal.pk} by rita: Narrow first" in moved[0].reason
    # Both steps were signed over the proposed order; every decision the approval applied carries its signature.
    approval = proposal.approvals.get()
    assert proposal.signature.meaning == "reorder_proposed" and proposal.signature.user == reviewer
    assert approval.signature.meaning == "reordered" and approval.signature.user == second_reviewer
    assert {d.signature_id for d in moved} == {approval.signature_id}
    positions = [h.position for h in c.history.order_by("history_date")]
    assert positions[-2:] == [3, 2]


def test_the_proposer_cannot_approve_their_own_order(task, reviewer) -> None:
    a, b = _approved(task, reviewer, 2)
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[b.pk, a.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [b.pk, a.pk]))
    with pytest.raises(ValidationError, match="You proposed this order, so another reviewer must approve it"):
        ruleset_reorder_approve(proposal=proposal, user=reviewer, signature=sign_order_approval(reviewer, proposal))
    proposal.refresh_from_db()
    assert proposal.status == "pending" and not proposal.approvals.exists()
    assert _order(task) == [a.pk, b.pk]


def test_the_database_refuses_an_approval_by_the_proposer(task, reviewer) -> None:
    a, b = _approved(task, reviewer, 2)
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[b.pk, a.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [b.pk, a.pk]))
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rules_rulesetreorderapproval (proposal_id, reviewer_id, reason, created_at) "
            "VALUES (%s, %s, '', CURRENT_TIMESTAMP)", [proposal.pk, reviewer.pk],
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        RuleSetReorderProposal.objects.filter(pk=proposal.pk).update(status="approved", decided_by=reviewer)
    assert not RuleSetReorderApproval.objects.exists()


def test_required_approvals_applies_to_orders(task, reviewer, second_reviewer, third_reviewer, settings) -> None:
    third = third_reviewer
    a, b = _approved(task, second_reviewer, 2)
    settings.PLD_REQUIRED_APPROVALS = 2
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[b.pk, a.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [b.pk, a.pk]))
    ruleset_reorder_approve(proposal=proposal, user=second_reviewer,
        signature=sign_order_approval(second_reviewer, proposal))
    proposal.refresh_from_db()
    assert proposal.status == "pending" and _order(task) == [a.pk, b.pk]
    with pytest.raises(ValidationError, match="already approved this proposal"):
        ruleset_reorder_approve(proposal=proposal, user=second_reviewer,
            signature=sign_order_approval(second_reviewer, proposal))
    ruleset_reorder_approve(proposal=proposal, user=third, signature=sign_order_approval(third, proposal))
    proposal.refresh_from_db()
    assert proposal.status == "approved" and _order(task) == [b.pk, a.pk]


def test_a_proposal_made_stale_by_a_change_of_the_rule_set_is_refused(task, reviewer, second_reviewer) -> None:
    a, b, c = _approved(task, second_reviewer, 3)
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[c.pk, a.pk, b.pk], reason="c first",
        signature=sign_order_proposal(reviewer, task, [c.pk, a.pk, b.pk]))
    rule_reject(rule=a, user=second_reviewer, lock_version=a.lock_version, reason="Too broad",
        signature=sign_rejection(second_reviewer, a))
    with pytest.raises(ValidationError, match="changed since this order was proposed"):
        ruleset_reorder_approve(proposal=proposal, user=second_reviewer,
            signature=sign_order_approval(second_reviewer, proposal))
    assert _order(task) == [b.pk, c.pk]


def test_a_rejected_proposal_leaves_the_order_and_cannot_be_approved(task, reviewer, second_reviewer) -> None:
    a, b = _approved(task, second_reviewer, 2)
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[b.pk, a.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [b.pk, a.pk]))
    with pytest.raises(ValidationError, match="Say why"):
        ruleset_reorder_reject(proposal=proposal, user=second_reviewer, reason=" ",
            signature=sign_order_rejection(second_reviewer, proposal))
    ruleset_reorder_reject(proposal=proposal, user=second_reviewer, reason="The general rule is meant to win",
        signature=sign_order_rejection(second_reviewer, proposal))
    with pytest.raises(ValidationError, match="already rejected"):
        ruleset_reorder_approve(proposal=proposal, user=second_reviewer,
            signature=sign_order_approval(second_reviewer, proposal))
    assert _order(task) == [a.pk, b.pk]


def test_a_proposal_must_list_every_rule_once_and_change_something(task, reviewer) -> None:
    a, b = _approved(task, reviewer, 2)
    for order in ([a.pk], [a.pk, a.pk], [a.pk, b.pk, 999]):
        with pytest.raises(ValidationError, match="every rule of the rule set exactly once"):
            ruleset_reorder_propose(task=task, user=reviewer, order=order, reason="x",
                signature=sign_order_proposal(reviewer, task, order))
    with pytest.raises(ValidationError, match="Nothing changed"):
        ruleset_reorder_propose(task=task, user=reviewer, order=[a.pk, b.pk], reason="x",
            signature=sign_order_proposal(reviewer, task, [a.pk, b.pk]))
    with pytest.raises(ValidationError):
        ruleset_reorder_propose(task=task, user=reviewer, order=[b.pk, a.pk], reason="",
            signature=sign_order_proposal(reviewer, task, [b.pk, a.pk]))
    assert not RuleSetReorderProposal.objects.exists()


def test_typed_numbers_move_a_rule_and_shift_the_others(task, reviewer) -> None:
    a, b, c, d = _approved(task, reviewer, 4)
    assert ruleset_order_from_numbers(task, {d.pk: 2}) == [a.pk, d.pk, b.pk, c.pk]
    assert ruleset_order_from_numbers(task, {a.pk: 4, b.pk: 2}) == [b.pk, c.pk, d.pk, a.pk]
    assert ruleset_order_from_numbers(task, {a.pk: 2, b.pk: 1}) == [b.pk, a.pk, c.pk, d.pk]


def test_auditors_cannot_propose_or_approve_orders(task, reviewer, auditor) -> None:
    a, b = _approved(task, reviewer, 2)
    with pytest.raises(PermissionDenied):
        ruleset_reorder_propose(task=task, user=auditor, order=[b.pk, a.pk], reason="x",
            signature=sign_order_proposal(auditor, task, [b.pk, a.pk]))
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[b.pk, a.pk], reason="x",
        signature=sign_order_proposal(reviewer, task, [b.pk, a.pk]))
    with pytest.raises(PermissionDenied):
        ruleset_reorder_approve(proposal=proposal, user=auditor, signature=sign_order_approval(auditor, proposal))
