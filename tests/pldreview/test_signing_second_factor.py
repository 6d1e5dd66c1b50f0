"""Part 11 §11.200(a)(1) with MFA: a session's first signing checks every component, later ones the password."""
from __future__ import annotations

import re

import pyotp
import pytest
from django.test import Client, TestCase

from pldreview.models import Signature
from rules.models import Rule
from tests.support.factories import teacher_rule

pytestmark = pytest.mark.django_db


def _enrol_totp(client: Client) -> str:
    """Enrol a TOTP authenticator through allauth's pages, as a person does; return its secret."""
    page = client.get("/accounts/2fa/totp/activate/").content.decode()
    field = re.search(r'<input[^>]*id="authenticator_secret"[^>]*>', page).group(0)
    secret = re.search(r'value="([A-Z2-7]+)"', field).group(1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/accounts/2fa/totp/activate/", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302
    return secret


def _approve(client: Client, rule: Rule, **credentials: str):  # noqa: ANN202
    rule.refresh_from_db()
    data = {"lock_version": rule.lock_version, "reason": "Clear", "password": "pw-rita"} | credentials
    return client.post(f"/rules/{rule.pk}/approve/", data)


def test_the_first_signing_of_a_session_needs_the_authenticator_code_and_later_ones_only_the_password(
    client, task, reviewer
) -> None:
    client.force_login(reviewer)
    secret = _enrol_totp(client)
    first, second = teacher_rule(task, text="If first, then Entailment"), teacher_rule(task, text="If second, then X")

    refused = _approve(client, first)
    assert refused.status_code == 400 and "Authenticator code" in refused.content.decode()
    assert not Signature.objects.exists()
    wrong = _approve(client, first, second_factor="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert wrong.status_code == 400 and not Signature.objects.exists()

    assert _approve(client, first, second_factor=pyotp.TOTP(secret).now()).status_code in (200, 302)
    signature = Signature.objects.get()
    assert signature.user_id == reviewer.pk and signature.second_factor_checked

    # Later in the same session the password alone signs.
    assert _approve(client, second).status_code in (200, 302)
    later = Signature.objects.latest("id")
    assert later.pk != signature.pk and not later.second_factor_checked
