from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from rules.models import Decision, Rule
from rules.review.services import rule_approve, rule_reject
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval, sign_rejection

pytestmark = pytest.mark.django_db


def test_it_requires_a_reason_to_reject(task, reviewer) -> None:
    rule = teacher_rule(task)
    with pytest.raises(ValidationError, match="why"):
        rule_reject(rule=rule, user=reviewer, lock_version=1, reason="", signature=sign_rejection(reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING


def test_a_rejected_rule_stays_with_its_decision(task, reviewer) -> None:
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Restates the hypothesis",
        signature=sign_rejection(reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.REJECTED
    decision = Decision.objects.get(rule=rule, action="reject")
    assert (decision.reviewer, decision.status_before) == (reviewer, "pending")
    assert decision.reason == "Restates the hypothesis"


def test_rejecting_an_approved_rule_takes_it_out_of_the_rule_set(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    rule_reject(rule=rule, user=second_reviewer, lock_version=rule.lock_version, reason="Causes false positives",
        signature=sign_rejection(second_reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.REJECTED


def test_it_refuses_to_reject_twice(task, reviewer) -> None:
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Vague", signature=sign_rejection(reviewer, rule))
    rule.refresh_from_db()
    with pytest.raises(ValidationError, match="already rejected"):
        rule_reject(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="Vague",
            signature=sign_rejection(reviewer, rule))
