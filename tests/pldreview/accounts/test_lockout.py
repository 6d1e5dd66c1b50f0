"""Failed logins lock the username and the address (django-axes); an Admin unlocks, and the ledger says who and why."""
from __future__ import annotations

import pytest
from django.test import Client

from pldreview.accounts.lockout import LOCKED_MESSAGE
from pldreview.accounts.models import AccountChangeKind as Kind
from pldreview.accounts.models import AccountChangeRequest
from pldreview.models import LedgerEntry
from tests.support.account_changes import account_change_made

pytestmark = pytest.mark.django_db


def _login(client: Client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post("/login/", {"login": username, "password": password}, REMOTE_ADDR=address)


def test_the_eleventh_wrong_password_locks_the_account_and_the_right_one_is_then_refused(
    client, reviewer, admin_user, second_admin
) -> None:
    for n in range(10):
        response = _login(client, "rita", f"wrong-{n}")
        assert response.status_code == 200, n
        assert "not correct" in response.content.decode()
    response = _login(client, "rita", "wrong-10")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    # Right password, other address: the username itself is locked.
    response = _login(client, "rita", "pw-rita", address="10.0.0.2")
    assert response.status_code == 429 and not response.wsgi_request.user.is_authenticated
    lock = LedgerEntry.objects.filter(event="security.lockout").first()
    assert lock is not None and '"username":"rita"' in lock.payload
    assert LedgerEntry.objects.filter(event="security.login_failed").count() >= 11

    # Alex asks, Adam confirms: the unlock is Adam's act.
    account_change_made(second_admin, admin_user, Kind.UNLOCK, target=reviewer,
                        reason="Rita called from her desk phone")
    unlock = LedgerEntry.objects.get(event="security.unlock")
    assert unlock.actor == admin_user and '"reason":"Rita called from her desk phone"' in unlock.payload
    response = _login(client, "rita", "pw-rita", address="10.0.0.2")
    assert response.status_code == 302 and response.wsgi_request.user.is_authenticated


def test_the_lockout_message_is_the_same_for_an_unknown_username(client, reviewer) -> None:
    answers = {}
    for username, address in (("rita", "10.0.0.3"), ("nobody-here", "10.0.0.4")):
        for n in range(11):
            response = _login(Client(), username, f"wrong-{n}", address=address)
        body = response.content.decode()
        answers[username] = (response.status_code, body[body.index("<main"):])
    assert answers["rita"] == answers["nobody-here"]
    assert answers["rita"][0] == 429 and LOCKED_MESSAGE in answers["rita"][1]


def test_one_address_trying_many_usernames_is_locked_too(client, reviewer, second_reviewer) -> None:
    for n in range(11):
        _login(client, f"guess-{n}", "wrong", address="10.0.0.9")
    response = _login(client, "ravi", "pw-ravi", address="10.0.0.9")
    assert response.status_code == 429
    assert _login(client, "ravi", "pw-ravi", address="10.0.0.10").status_code == 302


def test_two_admins_unlock_from_the_user_page_with_a_reason(client, reviewer, admin_user, second_admin) -> None:
    for n in range(11):
        _login(Client(), "rita", f"wrong-{n}")
    client.force_login(second_admin)
    page = client.get(f"/users/{reviewer.pk}/").content.decode()
    assert "Failed logins in the window" in page
    refused = client.post(f"/users/{reviewer.pk}/change/", {"action": "unlock", "reason": "", "password": "pw-alex"})
    assert "give a reason" in refused.content.decode().lower()
    client.post(f"/users/{reviewer.pk}/change/",
                {"action": "unlock", "reason": "identity checked in person", "password": "pw-alex"})
    # Requested, not done: Rita is still locked out until a second Admin confirms.
    assert not LedgerEntry.objects.filter(event="security.unlock").exists()
    assert _login(Client(), "rita", "pw-rita").status_code == 429
    change = AccountChangeRequest.objects.get(kind=Kind.UNLOCK)
    client.force_login(admin_user)
    assert client.post(f"/users/changes/{change.pk}/confirm/", {"password": "pw-adam"}).status_code == 302
    assert LedgerEntry.objects.get(event="security.unlock").actor == admin_user
    assert _login(Client(), "rita", "pw-rita").status_code == 302
