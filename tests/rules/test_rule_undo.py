from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from rules.models import Decision, Rule
from rules.review.services import decision_undo, rule_approve, rule_edit, rule_reject
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval, sign_edit, sign_rejection

pytestmark = pytest.mark.django_db


def test_undo_restores_the_status_as_a_recorded_decision(task, reviewer) -> None:
    rule = teacher_rule(task)
    approval = rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    undo = decision_undo(decision=approval, user=reviewer)
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING
    assert (undo.action, undo.undoes, undo.reviewer) == ("undo", approval, reviewer)
    assert (undo.status_before, undo.status_after) == ("approved", "pending")
    assert Decision.objects.filter(rule=rule).count() == 2


def test_undo_of_an_edit_restores_the_previous_revision(task, reviewer) -> None:
    rule = teacher_rule(task)
    first = rule.current_revision
    edit = rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Sharper", text="If staff, then Entailment",
                     label="Entailment",
                         signature=sign_edit(reviewer, text="If staff, then Entailment", label="Entailment"))
    decision_undo(decision=edit, user=reviewer)
    rule.refresh_from_db()
    assert rule.current_revision == first
    assert rule.text == first.text
    assert rule.revisions.count() == 2


def test_an_undone_approval_no_longer_counts(task, reviewer, second_reviewer, settings) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    rule = teacher_rule(task)
    approval = rule_approve(rule=rule, user=reviewer, lock_version=1, signature=sign_approval(reviewer, rule))
    decision_undo(decision=approval, user=reviewer)
    rule.refresh_from_db()
    rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version,
        signature=sign_approval(second_reviewer, rule))
    rule.refresh_from_db()
    assert rule.status == Rule.Status.PENDING


def test_only_the_same_reviewer_can_undo(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    rejection = rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Vague",
        signature=sign_rejection(reviewer, rule))
    with pytest.raises(ValidationError, match="Only the reviewer"):
        decision_undo(decision=rejection, user=second_reviewer)


def test_only_within_the_window(task, reviewer, settings) -> None:
    rule = teacher_rule(task)
    rejection = rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Vague",
        signature=sign_rejection(reviewer, rule))
    # A decision cannot be dated back (the database refuses updates), so the window is shrunk instead.
    settings.PLD_UNDO_WINDOW_SECONDS = 0
    with pytest.raises(ValidationError, match="seconds"):
        decision_undo(decision=rejection, user=reviewer)


def test_only_the_last_decision_and_only_once(task, reviewer) -> None:
    first, second = teacher_rule(task), teacher_rule(task, text="If X, then Contradiction", label="Contradiction")
    earlier = rule_reject(rule=first, user=reviewer, lock_version=1, reason="Vague",
        signature=sign_rejection(reviewer, first))
    later = rule_reject(rule=second, user=reviewer, lock_version=1, reason="Vague too",
        signature=sign_rejection(reviewer, second))
    with pytest.raises(ValidationError, match="last decision"):
        decision_undo(decision=earlier, user=reviewer)
    decision_undo(decision=later, user=reviewer)
    with pytest.raises(ValidationError):
        decision_undo(decision=later, user=reviewer)


def test_undo_is_refused_once_someone_else_acted(task, reviewer, second_reviewer) -> None:
    rule = teacher_rule(task)
    edit = rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Sharper", text="If staff, then Entailment",
                     label="Entailment",
                         signature=sign_edit(reviewer, text="If staff, then Entailment", label="Entailment"))
    rule.refresh_from_db()
    rule_approve(rule=rule, user=second_reviewer, lock_version=rule.lock_version,
        signature=sign_approval(second_reviewer, rule))
    with pytest.raises(ValidationError, match="after you"):
        decision_undo(decision=edit, user=reviewer)
