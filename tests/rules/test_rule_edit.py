from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from rules.models import Rule
from rules.review.services import StaleRuleError, rule_approve, rule_edit, rule_reject
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval, sign_edit, sign_rejection

pytestmark = pytest.mark.django_db

NEW_TEXT = "If the clause lets the recipient disclose to staff who need to know, then Entailment"


def test_it_makes_a_new_revision_and_keeps_the_old_one(task, reviewer) -> None:
    rule = teacher_rule(task)
    old = rule.current_revision
    decision = rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Names the wording to look for",
                         text=NEW_TEXT, label="Entailment", topic="Sharing", precedence_note="Before rule 3",
                             signature=sign_edit(reviewer, text=NEW_TEXT, label="Entailment", topic="Sharing",
                                                 precedence_note="Before rule 3"))
    rule.refresh_from_db()
    assert rule.revisions.count() == 2
    assert rule.current_revision.number == 2
    assert (rule.text, rule.topic, rule.precedence_note) == (NEW_TEXT, "Sharing", "Before rule 3")
    assert rule.current_revision.author == reviewer
    assert decision.revision == rule.current_revision
    old.refresh_from_db()
    assert old.text.startswith("If the clause lets the recipient share")


def test_an_edit_of_an_approved_rule_sends_it_back_to_review(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    decision = rule_edit(rule=rule, user=second_reviewer, lock_version=rule.lock_version, reason="Wrong label",
                         text=rule.text, label="Contradiction",
                             signature=sign_edit(second_reviewer, text=rule.text, label="Contradiction"))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING
    assert (decision.status_before, decision.status_after) == ("approved", "pending")


def test_it_requires_a_reason_to_edit(task, reviewer) -> None:
    rule = teacher_rule(task)
    with pytest.raises(ValidationError, match="why"):
        rule_edit(rule=rule, user=reviewer, lock_version=1, reason="  ", text=NEW_TEXT, label="Entailment",
            signature=sign_edit(reviewer, text=NEW_TEXT, label="Entailment"))
    assert rule.revisions.count() == 1


def test_it_refuses_an_edit_that_changes_nothing(task, reviewer) -> None:
    rule = teacher_rule(task)
    with pytest.raises(ValidationError, match="Nothing changed"):
        rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Because", text=rule.text, label=rule.label,
            signature=sign_edit(reviewer, text=rule.text, label=rule.label))


def test_it_refuses_a_label_the_task_does_not_have(task, reviewer) -> None:
    rule = teacher_rule(task)
    with pytest.raises(ValidationError):
        rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Because", text=NEW_TEXT, label="Maybe",
            signature=sign_edit(reviewer, text=NEW_TEXT, label="Maybe"))


def test_it_refuses_a_stale_edit(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rule_reject(rule=rule, user=second_reviewer, lock_version=1, reason="Too vague to apply",
        signature=sign_rejection(second_reviewer, rule))
    with pytest.raises(StaleRuleError) as caught:
        rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Sharper", text=NEW_TEXT, label="Entailment",
            signature=sign_edit(reviewer, text=NEW_TEXT, label="Entailment"))
    assert caught.value.changes[-1]["status"] == "rejected"
    assert caught.value.changes[-1]["user"] == "ravi"
    rule.refresh_from_db()
    assert rule.revisions.count() == 1
    assert rule.status == Rule.Status.REJECTED
