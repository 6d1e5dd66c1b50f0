from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from rules.models import Decision
from rules.services import rule_approve, ruleset_reorder, ruleset_rules
from tests.rules.reviewkit import teacher_rule
from tests.support.signatures import sign_approval, sign_move

pytestmark = pytest.mark.django_db


def _approved(task, user, n: int) -> list:
    rules = []
    for i in range(n):
        rule = teacher_rule(task, text=f"If clause {i}, then Entailment")
        rule_approve(rule=rule, user=user, lock_version=1, signature=sign_approval(user, rule))
        rule.refresh_from_db()
        rules.append(rule)
    return rules


def test_it_moves_a_rule_up_as_a_recorded_decision(task, reviewer) -> None:
    a, b, c = _approved(task, reviewer, 3)
    decision = ruleset_reorder(rule=c, user=reviewer, direction="up", lock_version=c.lock_version,
        signature=sign_move(reviewer, c, "up"))
    assert [r.pk for r in ruleset_rules(task)] == [a.pk, c.pk, b.pk]
    assert (decision.action, decision.rule, decision.reviewer) == ("reorder", c, reviewer)
    assert f"before rule {b.pk}" in decision.reason
    positions = [h.position for h in c.history.order_by("history_date")]
    assert positions[-2:] == [3, 2]


def test_it_refuses_to_move_past_the_ends(task, reviewer) -> None:
    a, _ = _approved(task, reviewer, 2)
    with pytest.raises(ValidationError, match="top"):
        ruleset_reorder(rule=a, user=reviewer, direction="up", lock_version=a.lock_version,
            signature=sign_move(reviewer, a, "up"))
    assert not Decision.objects.filter(action="reorder").exists()


def test_it_refuses_a_stale_reorder(task, reviewer) -> None:
    a, b = _approved(task, reviewer, 2)
    ruleset_reorder(rule=b, user=reviewer, direction="up", lock_version=b.lock_version,
        signature=sign_move(reviewer, b, "up"))
    with pytest.raises(ValidationError):
        ruleset_reorder(rule=a, user=reviewer, direction="up", lock_version=a.lock_version,
            signature=sign_move(reviewer, a, "up"))


def test_auditors_cannot_reorder(task, reviewer, auditor) -> None:
    _, b = _approved(task, reviewer, 2)
    with pytest.raises(PermissionDenied):
        ruleset_reorder(rule=b, user=auditor, direction="up", lock_version=b.lock_version,
            signature=sign_move(auditor, b, "up"))
