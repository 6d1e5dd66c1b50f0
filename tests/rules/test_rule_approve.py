from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from rules.models import Decision, Rule
from rules.review.services import StaleRuleError, rule_approve, rule_create, rule_edit, rule_reject
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval, sign_edit, sign_rejection, sign_writing

pytestmark = pytest.mark.django_db


def test_it_approves_a_teacher_rule_and_puts_it_in_the_rule_set(task, reviewer) -> None:
    rule = teacher_rule(task)
    decision = rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="Clear and general",
        signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED
    assert rule.position == 1
    assert rule.lock_version == 2
    assert (decision.action, decision.reviewer, decision.reason) == ("approve", reviewer, "Clear and general")
    assert (decision.status_before, decision.status_after) == ("pending", "approved")
    assert decision.revision == rule.current_revision


def test_it_refuses_the_author_of_a_hand_written_rule(task, reviewer, second_reviewer) -> None:
    rule = rule_create(task=task, user=reviewer, text="If the clause allows oral disclosure, then Entailment",
                       label="Entailment",
                           signature=sign_writing(reviewer,
                               text="If the clause allows oral disclosure, then Entailment",
                               label="Entailment"))
    with pytest.raises(ValidationError, match="another reviewer"):
        rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING
    assert not Decision.objects.filter(rule=rule, action="approve").exists()
    rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version,
        signature=sign_approval(second_reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED


def test_it_refuses_the_editor_of_the_current_revision(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Name the wording", text="If the clause lets "
              "the recipient disclose to staff on a need-to-know basis, then Entailment", label="Entailment",
                  signature=sign_edit(reviewer, text="If the clause lets "
              "the recipient disclose to staff on a need-to-know basis, then Entailment", label="Entailment"))
    rule.refresh_from_db()
    with pytest.raises(ValidationError, match="four eyes"):
        rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, signature=sign_approval(reviewer, rule))
    rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version,
        signature=sign_approval(second_reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED


def test_it_needs_n_distinct_approvals_when_configured(task, reviewer, second_reviewer, settings) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    rule = teacher_rule(task)
    first = rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING
    assert (first.status_before, first.status_after) == ("pending", "pending")
    with pytest.raises(ValidationError, match="already approved"):
        rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, signature=sign_approval(reviewer, rule))
    rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version,
        signature=sign_approval(second_reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.APPROVED


def test_an_edit_resets_the_approvals(task, reviewer, second_reviewer, admin_user, settings) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    rule = teacher_rule(task)
    rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    rule_edit(rule=rule, user=second_reviewer, lock_version=rule.lock_version, reason="Tighter",
              text="If the clause names employees, then Entailment", label="Entailment",
                  signature=sign_edit(second_reviewer, text="If the clause names employees, then Entailment",
                      label="Entailment"))
    rule.refresh_from_db()
    # rita's approval was for revision 1; revision 2 needs two approvals from people other than ravi.
    rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING


def test_it_refuses_a_stale_approval_and_says_what_changed(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    seen = rule.lock_version
    rule_edit(rule=rule, user=second_reviewer, lock_version=seen, reason="Say which people",
              text="If the clause lets the recipient tell its employees, then Entailment", label="Entailment",
                  signature=sign_edit(second_reviewer,
                      text="If the clause lets the recipient tell its employees, then Entailment",
                      label="Entailment"))
    with pytest.raises(StaleRuleError) as caught:
        rule_approve(rule=rule, user=reviewer, lock_version=seen, signature=sign_approval(reviewer, rule))
    assert [c["user"] for c in caught.value.changes] == ["ravi"]
    assert "Say which people" in caught.value.changes[0]["reason"]
    assert caught.value.seen["text"].startswith("If the clause lets the recipient share")
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING
    assert not Decision.objects.filter(rule=rule, action="approve").exists()


def test_it_refuses_a_user_without_the_review_permission(task, auditor) -> None:
    rule = teacher_rule(task)
    with pytest.raises(PermissionDenied):
        rule_approve(rule=rule, user=auditor, lock_version=1, signature=sign_approval(auditor, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING


def test_approvals_given_before_a_rejection_no_longer_count(
    task, reviewer, second_reviewer, admin_user, settings
) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    rule = teacher_rule(task)
    rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    rule_reject(rule=rule, user=second_reviewer, lock_version=rule.lock_version, reason="Misses a case",
        signature=sign_rejection(second_reviewer, rule))
    rule.refresh_from_db()
    # The reviewer who rejected it does not count towards overturning it (he may undo instead).
    with pytest.raises(ValidationError, match="You rejected this rule"):
        rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version,
            signature=sign_approval(second_reviewer, rule))
    # rita approved before the rejection; that approval no longer counts, so hers now is one of two.
    rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.REJECTED
