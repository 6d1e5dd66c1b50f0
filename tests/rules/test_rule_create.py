from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from rules.models import Decision, Rule
from rules.review.services import rule_create
from tests.support.signatures import sign_writing

pytestmark = pytest.mark.django_db


def test_it_writes_a_pending_manual_rule_with_a_create_decision(task, reviewer) -> None:
    rule = rule_create(task=task, user=reviewer, text="If the clause excludes oral disclosures, then Contradiction",
                       label="Contradiction", topic="Oral disclosures", reason="Covers a gap the teacher missed",
                           signature=sign_writing(reviewer,
                               text="If the clause excludes oral disclosures, then Contradiction",
                               label="Contradiction", topic="Oral disclosures"))
    assert (rule.origin, rule.status, rule.proposed_by) == (Rule.Origin.MANUAL, Rule.Status.PENDING, reviewer)
    assert rule.current_revision.author == reviewer
    decision = Decision.objects.get(rule=rule)
    assert (decision.action, decision.reviewer) == ("create", reviewer)
    assert decision.reason == "Covers a gap the teacher missed"


def test_it_refuses_an_unknown_label(task, reviewer) -> None:
    with pytest.raises(ValidationError):
        rule_create(task=task, user=reviewer, text="If anything, then Maybe", label="Maybe",
            signature=sign_writing(reviewer, text="If anything, then Maybe", label="Maybe"))
    assert not Rule.objects.exists()


def test_it_refuses_someone_who_may_not_add_rules(task, auditor) -> None:
    with pytest.raises(PermissionDenied):
        rule_create(task=task, user=auditor, text="If anything, then Entailment", label="Entailment",
            signature=sign_writing(auditor, text="If anything, then Entailment", label="Entailment"))
