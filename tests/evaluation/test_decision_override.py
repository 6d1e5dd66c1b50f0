"""Overriding a logged decision: a Reviewer's or Admin's signing, append-only, on the ledger; an Auditor cannot."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import Client

from evaluation.models import DecisionFeedback, DecisionOverride
from evaluation.production.decision_log import decision_override
from pldreview.db_triggers import delete_permit
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry, Signature
from rules.models import Split
from tests.support.decisions import logged_call
from tests.support.prompt_versions import approve_all, compiled
from tests.support.signatures import persona_password, sign_decision_override


@pytest.fixture
def version(task, admin_user, second_reviewer):
    approve_all(task, second_reviewer)
    return compiled(task, admin_user)


@pytest.fixture
def call(version):
    return logged_call(version)


def _override(call, user, label="Contradiction", reason="Keeping a copy contradicts destroying all copies."):
    return decision_override(call=call, overridden_label=label, reason=reason, user=user,
                             signature=sign_decision_override(user, call, label))


def test_a_reviewer_overrides_a_decision_with_a_signature_and_its_input_becomes_a_feedback_example(
    client: Client, call, reviewer
) -> None:
    client.force_login(reviewer)
    response = client.post(f"/calls/{call.pk}/override/", {
        "overridden_label": "Contradiction", "reason": "Keeping a copy contradicts destroying all copies.",
        "password": persona_password(reviewer),
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    override = DecisionOverride.objects.get()
    assert (override.request_id, override.logged_label, override.overridden_label) == (
        call.request_id, "Entailment", "Contradiction")
    assert override.signature.meaning == Signature.Meaning.DECISION_OVERRIDDEN
    assert override.signature.user == reviewer and override.signature.password_checked
    # The feedback example follows from it, naming the signature.
    feedback = override.feedback
    assert feedback.example.split == Split.FEEDBACK and feedback.example.gold_label == "Contradiction"
    assert feedback.signature_ref == f"pldreview.signature:{override.signature.pk}"
    assert LedgerEntry.objects.filter(event="decision_override.created", object_id=str(override.pk)).exists()
    page = client.get(f"/calls/{call.pk}/").content.decode()
    assert "Overridden" in page and override.signature.manifestation in page
    assert "overridden → Contradiction" in client.get("/tasks/nda-demo/calls/").content.decode()
    assert ledger_verify().ok


def test_an_admin_overrides_too_and_an_earlier_feedback_is_named_not_repeated(call, admin_user, reviewer) -> None:
    from evaluation.production.decision_log import decision_feedback_give

    feedback = decision_feedback_give(call=call, correct_label="NotMentioned", reason="Silent on copies",
                                      user=reviewer)
    override = _override(call, admin_user, label="Contradiction")
    assert override.overridden_by == admin_user and override.feedback == feedback
    assert DecisionFeedback.objects.count() == 1


def test_an_auditor_cannot_override_and_the_page_says_why(client: Client, call, auditor) -> None:
    client.force_login(auditor)
    page = client.get(f"/calls/{call.pk}/").content.decode()
    assert "Reviewers and Admins may override a decision" in page
    assert "separation of duties" in page and "Sign and override" not in page
    assert client.post(f"/calls/{call.pk}/override/", {
        "overridden_label": "Contradiction", "reason": "x", "password": persona_password(auditor),
    }).status_code == 403
    with pytest.raises(PermissionDenied):
        decision_override(call=call, overridden_label="Contradiction", reason="x", user=auditor, signature=None)
    assert not DecisionOverride.objects.exists()


def test_an_override_without_the_password_is_refused_and_changes_nothing(client: Client, call, reviewer) -> None:
    client.force_login(reviewer)
    response = client.post(f"/calls/{call.pk}/override/", {
        "overridden_label": "Contradiction", "reason": "Wrong", "password": "not-it",
    })
    assert response.status_code == 400
    assert "Wrong password" in response.content.decode()
    assert not DecisionOverride.objects.exists() and not DecisionFeedback.objects.exists()
    assert not Signature.objects.filter(meaning="decision_overridden").exists()
    # The refused attempt is on the ledger (Part 11 §11.300(d)).
    assert LedgerEntry.objects.filter(event="security.signature_failed").exists()


def test_a_decision_is_overridden_once_and_a_signature_for_another_label_is_refused(call, reviewer, admin_user) -> None:
    with pytest.raises(ValidationError, match="other content"), transaction.atomic():
        decision_override(call=call, overridden_label="NotMentioned", reason="x", user=reviewer,
                          signature=sign_decision_override(reviewer, call, "Contradiction"))
    _override(call, reviewer)
    with pytest.raises(ValidationError, match="already overridden"):
        _override(call, admin_user, label="NotMentioned")
    assert DecisionOverride.objects.count() == 1


def test_the_database_refuses_to_change_or_delete_an_override_and_verify_ledger_finds_a_permitted_delete(
    call, reviewer
) -> None:
    override = _override(call, reviewer)
    table = DecisionOverride._meta.db_table
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET overridden_label = 'NotMentioned' WHERE id = %s", [override.pk])
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [override.pk])
    assert DecisionOverride.objects.get().overridden_label == "Contradiction"
    # A writer who opens a delete permit gets the row out, and the ledger says so.
    with delete_permit("side door"), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [override.pk])
    problems = {(p.kind, p.object_type) for p in ledger_verify().problems}
    assert ("missing", "evaluation.decisionoverride") in problems
    assert any(p.kind == "permit" for p in ledger_verify().problems)
