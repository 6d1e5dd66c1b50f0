"""The signing service: credentials, what a signature records, and that nobody can rewrite one."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.utils import timezone

from pldreview.models import LedgerEntry, Signature
from pldreview.settings import _signing_reauth
from pldreview.signatures import (
    Meaning,
    SignatureRefused,
    content_sha256,
    e_signing,
    printed_name,
    rule_content_sha256,
    signature_check,
    signature_sign,
    signing_password_required,
)
from rules.models import Decision
from rules.review.services import rule_signed_content
from tests.support.factories import teacher_rule
from tests.support.signatures import sign

SHA = content_sha256({"what": "a test document"})


def _request(user: User):
    """Return a request with a real (database) session, as the views get it."""
    from django.contrib.sessions.backends.db import SessionStore

    request = RequestFactory().post("/")
    request.user = user
    request.session = SessionStore()
    return request


def test_the_right_password_stores_a_signature_with_name_meaning_time_and_hash(reviewer) -> None:
    reviewer.first_name, reviewer.last_name = "Rita", "Reyes"
    reviewer.save()
    before = timezone.now()
    signature = signature_sign(user=reviewer, password="pw-rita", meaning=Meaning.APPROVED, reason=" Checked ",
                               content_sha256=SHA)
    signature.refresh_from_db()
    assert (signature.user, signature.username, signature.full_name) == (reviewer, "rita", "Rita Reyes")
    assert (signature.meaning, signature.reason, signature.content_sha256) == ("approved", "Checked", SHA)
    assert signature.reauth_policy == "each" and signature.password_checked and not signature.second_factor_checked
    assert before <= signature.signed_at <= timezone.now()
    when = signature.signed_at.astimezone(dt.UTC)
    assert signature.manifestation == (
        f"Approved by Rita Reyes on {when:%Y-%m-%d %H:%M:%S} UTC — meaning: Approved"
    )
    entry = LedgerEntry.objects.get(event="signature.created")
    assert (entry.object_type, entry.object_id, entry.actor) == ("pldreview.signature", str(signature.pk), reviewer)
    assert SHA in entry.payload


def test_a_user_without_a_name_signs_with_the_username(reviewer) -> None:
    assert printed_name(reviewer) == "rita"
    assert sign(reviewer, Meaning.REJECTED, SHA).full_name == "rita"


def test_a_wrong_password_signs_nothing_and_is_recorded_as_a_failed_signature(reviewer) -> None:
    with pytest.raises(SignatureRefused) as caught:
        signature_sign(user=reviewer, password="pw-ravi", meaning=Meaning.APPROVED, reason="", content_sha256=SHA)
    assert "Wrong password" in caught.value.message_dict["password"][0]
    assert not Signature.objects.exists()
    failed = LedgerEntry.objects.get(event="security.signature_failed")
    assert failed.actor == reviewer and "wrong password" in failed.payload and SHA in failed.payload
    assert "pw-ravi" not in failed.payload


def test_a_refused_signing_inside_a_transaction_still_reaches_the_ledger(reviewer) -> None:
    with pytest.raises(SignatureRefused), e_signing():
        signature_sign(user=reviewer, password="guess", meaning=Meaning.APPROVED, reason="", content_sha256=SHA)
    assert LedgerEntry.objects.filter(event="security.signature_failed").count() == 1
    assert not Signature.objects.exists()


def test_an_action_refused_after_signing_leaves_no_signature(reviewer) -> None:
    with pytest.raises(ValidationError, match="refused"), e_signing():
        signature_sign(user=reviewer, password="pw-rita", meaning=Meaning.APPROVED, reason="", content_sha256=SHA)
        raise ValidationError("The action was refused")
    assert not Signature.objects.exists()
    assert not LedgerEntry.objects.filter(event="signature.created").exists()


def test_without_a_password_nothing_is_signed(reviewer) -> None:
    with pytest.raises(SignatureRefused, match="Enter your password"):
        signature_sign(user=reviewer, password="", meaning=Meaning.APPROVED, reason="", content_sha256=SHA,
                       request=_request(reviewer))
    assert not Signature.objects.exists()


def test_an_inactive_user_cannot_sign(reviewer) -> None:
    reviewer.is_active = False
    reviewer.save()
    with pytest.raises(PermissionDenied):
        signature_sign(user=reviewer, password="pw-rita", meaning=Meaning.APPROVED, reason="", content_sha256=SHA)


def test_a_signing_window_asks_the_password_once_per_window_and_records_the_policy(settings, reviewer) -> None:
    settings.PLD_SIGNING_REAUTH = "window:5"
    request = _request(reviewer)
    assert signing_password_required(request)
    first = signature_sign(user=reviewer, password="pw-rita", meaning=Meaning.APPROVED, reason="",
                           content_sha256=SHA, request=request)
    assert not signing_password_required(request)
    second = signature_sign(user=reviewer, password="", meaning=Meaning.REJECTED, reason="",
                            content_sha256=SHA, request=request)
    assert (first.password_checked, second.password_checked) == (True, False)
    assert first.reauth_policy == second.reauth_policy == "window:5"
    # Six minutes later the window is over.
    stale = (timezone.now() - dt.timedelta(minutes=6)).isoformat()
    request.session["pld_signing_password_at"] = {"user": reviewer.pk, "at": stale}
    with pytest.raises(SignatureRefused, match="Enter your password"):
        signature_sign(user=reviewer, password="", meaning=Meaning.REJECTED, reason="", content_sha256=SHA,
                       request=request)
    # Under "each" the same session must type it again at once.
    settings.PLD_SIGNING_REAUTH = "each"
    request.session["pld_signing_password_at"] = {"user": reviewer.pk, "at": timezone.now().isoformat()}
    assert signing_password_required(request)


@pytest.mark.parametrize("raw", ["window", "window:0", "window:x", "always", "each:5"])
def test_a_malformed_reauth_setting_stops_the_start(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("PLD_SIGNING_REAUTH", raw)
    with pytest.raises(ImproperlyConfigured):
        _signing_reauth()


def test_the_reauth_setting_accepts_each_and_a_window(monkeypatch) -> None:
    monkeypatch.setenv("PLD_SIGNING_REAUTH", "Window:15")
    assert _signing_reauth() == "window:15"
    monkeypatch.delenv("PLD_SIGNING_REAUTH")
    assert _signing_reauth() == "each"


def test_the_name_at_signing_stays_when_the_user_is_renamed(reviewer) -> None:
    reviewer.first_name, reviewer.last_name = "Rita", "Reyes"
    reviewer.save()
    signature = sign(reviewer, Meaning.APPROVED, SHA)
    reviewer.first_name, reviewer.last_name = "Rita", "Married-Name"
    reviewer.save()
    signature = Signature.objects.get(pk=signature.pk)
    assert signature.full_name == "Rita Reyes" and "Rita Reyes" in signature.manifestation


def test_the_database_refuses_to_change_a_signature(reviewer) -> None:
    signature = sign(reviewer, Meaning.APPROVED, SHA)
    with pytest.raises(DatabaseError, match="permanent"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE pldreview_signature SET full_name = 'Someone Else' WHERE id = %s", [signature.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        signature.meaning = Meaning.REJECTED
        signature.save()
    assert Signature.objects.get(pk=signature.pk).full_name == "rita"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps no DELETE trigger (flushes use DELETE)")
def test_the_database_refuses_to_delete_a_signature(reviewer) -> None:
    signature = sign(reviewer, Meaning.APPROVED, SHA)
    with pytest.raises(DatabaseError, match="permanent"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM pldreview_signature WHERE id = %s", [signature.pk])
    assert Signature.objects.filter(pk=signature.pk).exists()


def test_the_database_refuses_a_signed_action_without_a_signature(task, reviewer) -> None:
    rule = teacher_rule(task)
    for action in Decision.SIGNED_ACTIONS:
        with pytest.raises(DatabaseError), transaction.atomic():
            Decision.objects.create(rule=rule, action=action, reviewer=reviewer, status_after="pending")
    # Undo is not a signing: its own decision carries no signature.
    noise = Decision.objects.create(rule=rule, action="promote_noise", reviewer=reviewer, status_after="pending")
    assert Decision.objects.create(rule=rule, action="undo", reviewer=reviewer, undoes=noise).signature is None


def test_a_decision_keeps_its_signature_and_a_signature_signs_one_decision(task, reviewer) -> None:
    from rules.review.services import rule_approve

    rule = teacher_rule(task)
    signature = sign(reviewer, Meaning.APPROVED, rule_signed_content(rule))
    decision = rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, signature=signature)
    other = sign(reviewer, Meaning.APPROVED, rule_signed_content(rule))
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE rules_decision SET signature_id = %s WHERE id = %s", [other.pk, decision.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        Decision.objects.create(rule=rule, action="approve", reviewer=reviewer, signature=signature)


def test_a_signature_is_refused_for_another_user_meaning_or_content(reviewer, second_reviewer) -> None:
    signature = sign(reviewer, Meaning.APPROVED, SHA)
    with pytest.raises(PermissionDenied):
        signature_check(signature, user=second_reviewer, meanings=Meaning.APPROVED, content_sha256=SHA)
    with pytest.raises(ValidationError, match="not “Rejected”"):
        signature_check(signature, user=reviewer, meanings=Meaning.REJECTED, content_sha256=SHA)
    other = rule_content_sha256(text="If x, then y", label="Entailment", topic="", precedence_note="")
    with pytest.raises(ValidationError, match="other content"):
        signature_check(signature, user=reviewer, meanings=Meaning.APPROVED, content_sha256=other)
    with pytest.raises(ValidationError, match="enter your password"):
        signature_check(None, user=reviewer, meanings=Meaning.APPROVED, content_sha256=SHA)
    assert signature_check(signature, user=reviewer, meanings=(Meaning.APPROVED,), content_sha256=SHA) == signature
