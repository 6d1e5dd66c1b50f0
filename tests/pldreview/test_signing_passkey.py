"""Signing with a passkey: what the server refuses (the browser test enrols one and signs with it)."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from pldreview.models import LedgerEntry, Signature
from rules.models import Rule
from tests.support.factories import teacher_rule

pytestmark = pytest.mark.django_db


def _client(user) -> Client:  # noqa: ANN001
    client = Client()
    client.force_login(user)
    return client


def test_a_forged_passkey_answer_signs_nothing_and_is_recorded(task, reviewer) -> None:
    rule = teacher_rule(task)
    forged = json.dumps({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {
        "clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}})
    response = _client(reviewer).post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version,
                                                                     "passkey": forged})
    assert response.status_code == 400
    assert "Your passkey did not confirm who you are" in response.content.decode()
    assert Rule.objects.get(pk=rule.pk).status == Rule.Status.PENDING
    assert not Signature.objects.exists()
    failure = json.loads(LedgerEntry.objects.get(event="security.signature_failed").payload)["facts"]
    assert failure["problem"] == "passkey not verified" and failure["method"] == "passkey"


def test_a_failed_passkey_is_not_overridden_by_a_right_password_in_the_same_post(task, reviewer) -> None:
    # A passkey field filled in beside a wrong password: the passkey is checked (and fails), the password is not
    # a way around it, and nothing is signed.
    rule = teacher_rule(task)
    response = _client(reviewer).post(f"/rules/{rule.pk}/approve/", {
        "lock_version": rule.lock_version, "password": "pw-rita", "passkey": "not json"})
    assert response.status_code == 400
    assert not Signature.objects.exists()


def test_only_a_user_with_a_passkey_gets_a_signing_challenge(reviewer) -> None:
    assert _client(reviewer).post("/accounts/passkey/sign/").status_code == 404


def test_with_a_passkey_as_the_only_second_factor_the_first_signing_of_a_session_needs_it(task, reviewer) -> None:
    from allauth.mfa.models import Authenticator

    rule = teacher_rule(task)
    client = _client(reviewer)
    # Only its presence matters here (the browser test makes a real one). Enrolled after this login, as in a
    # session that just added it, so the login gate lets the session through.
    Authenticator.objects.create(user=reviewer, type=Authenticator.Type.WEBAUTHN, data={"name": "Laptop"})
    assert "Sign with a passkey" in client.get(f"/rules/{rule.pk}/").content.decode()
    response = client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version, "password": "pw-rita"})
    assert response.status_code == 400
    assert "the first signing of a session needs your second factor too" in response.content.decode()
    assert not Signature.objects.exists()
