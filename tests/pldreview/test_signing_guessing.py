"""Guessing at a signing stops too: wrong signing passwords and codes count toward the login's limits, and the
signing's rollback does not take the count with it (SQLite and PostgreSQL)."""
from __future__ import annotations

import pyotp
import pytest
from django.test import Client

from pldreview.accounts.models import FailureCounter
from pldreview.models import LedgerEntry, Signature
from rules.models import Rule
from tests.support.factories import teacher_rule
from tests.support.factors import log_in_with_factor, totp_enrol, wrong_code

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]



def _approve(client: Client, rule: Rule, **credentials: str):  # noqa: ANN202
    rule.refresh_from_db()
    data = {"lock_version": rule.lock_version, "reason": "Clear", "password": "pw-rita"} | credentials
    return client.post(f"/rules/{rule.pk}/approve/", data)


def test_eleven_wrong_signing_passwords_then_the_right_one_is_refused_and_the_count_outlives_the_rollback(
    long_delays, client, task, reviewer
) -> None:
    client.force_login(reviewer)
    rule = teacher_rule(task, text="If the clause names a term, then Entailment")
    answers = [_approve(client, rule, password=f"wrong-{n}") for n in range(11)]
    assert [a.status_code for a in answers[:10]] == [400] * 10
    assert "Wrong password" in answers[0].content.decode()
    assert answers[10].status_code == 429

    right = _approve(client, rule)
    assert right.status_code == 429 and "signing is refused until" in right.content.decode()
    assert int(right["Retry-After"]) > 0
    assert not Signature.objects.exists()
    rule.refresh_from_db()
    assert rule.status != Rule.Status.APPROVED
    # Each refused signing rolled its transaction back; the failures were written after it.
    counter = FailureCounter.objects.get(key="account@127.0.0.1:rita")
    assert counter.failures == 10 and counter.delayed_until is not None
    assert LedgerEntry.objects.filter(event="security.signature_failed", actor=reviewer).count() == 12
    assert LedgerEntry.objects.filter(event="security.signature_failed", payload__contains="delayed").count() == 2


def test_fifteen_wrong_codes_at_a_signing_then_the_right_one_is_refused(long_delays, task, reviewer) -> None:
    secret = totp_enrol(reviewer)
    client = Client()
    log_in_with_factor(client, "rita", secret)
    rule = teacher_rule(task, text="If the clause names a term, then Entailment")
    answers = [_approve(client, rule, second_factor=wrong_code(secret)).status_code for _n in range(15)]
    assert answers[:10] == [400] * 10 and set(answers[10:]) == {429}

    right = _approve(client, rule, second_factor=pyotp.TOTP(secret).now())
    assert right.status_code == 429 and not Signature.objects.exists()
    # Logged in from this browser: the failures counted against its device cookie.
    counter = FailureCounter.objects.get(scope=FailureCounter.Scope.DEVICE)
    assert counter.failures == 10 and counter.username == "rita"


def test_a_signing_after_the_wait_with_the_right_password_signs(long_delays, client, task, reviewer) -> None:
    client.force_login(reviewer)
    rule = teacher_rule(task, text="If the clause names a term, then Entailment")
    for n in range(10):
        _approve(client, rule, password=f"wrong-{n}")
    assert _approve(client, rule).status_code == 429
    FailureCounter.objects.update(delayed_until=None)  # the wait has passed
    assert _approve(client, rule).status_code in (200, 302)
    assert Signature.objects.get().user_id == reviewer.pk


def test_a_signing_that_asks_only_the_code_waits_too(long_delays, settings, client, task, reviewer) -> None:
    settings.PLD_SIGNING_REAUTH = "window:30"
    client.force_login(reviewer)
    first, second = teacher_rule(task, text="If first, then Entailment"), teacher_rule(task, text="If second, then X")
    assert _approve(client, first).status_code in (200, 302)  # the password, once in the window
    secret = totp_enrol(reviewer)  # enrolled in this session: its next signing asks the code, not the password
    for _n in range(10):
        assert _approve(client, second, password="", second_factor=wrong_code(secret)).status_code == 400
    right = _approve(client, second, password="", second_factor=pyotp.TOTP(secret).now())
    assert right.status_code == 429 and Signature.objects.count() == 1
