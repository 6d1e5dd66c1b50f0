"""Lifting a wait after failed attempts: an Admin's unlock or ``manage.py unlock_account``, each on the ledger;
django-axes' own reset commands are refused with a pointer to them."""
from __future__ import annotations

import getpass
import json
from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from pldreview.accounts.lockout import lockout_reset
from pldreview.accounts.models import AccountChangeKind as Kind
from pldreview.accounts.models import AccountChangeRequest, FailureCounter
from pldreview.accounts.services import lockout_clear
from pldreview.models import LedgerEntry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # allauth counts login posts per address in the cache (30 a minute); earlier tests' posts must not count.
    cache.clear()


@pytest.fixture(autouse=True)
def long_delays(settings) -> None:
    # The first wait is one second by default; a minute keeps the tests' timing out of the verdicts.
    settings.PLD_LOGIN_DELAY_SECONDS = 60


def _login(client: Client, username: str, password: str, address: str = "10.0.0.1"):  # noqa: ANN202
    return client.post("/login/", {"login": username, "password": password}, REMOTE_ADDR=address)


def _fail_ten_times(username: str = "rita", address: str = "10.0.0.1") -> None:
    for n in range(10):
        _login(Client(), username, f"wrong-{n}", address=address)


def test_ten_wrong_passwords_make_the_account_wait_at_that_address_until_an_admin_unlocks(
    client, reviewer, admin_user
) -> None:
    _fail_ten_times()
    assert _login(client, "rita", "pw-rita").status_code == 429
    lockout_clear(actor=admin_user, user=reviewer, reason="Rita called from her desk phone")
    unlock = LedgerEntry.objects.get(event="security.unlock")
    assert unlock.actor == admin_user and '"reason":"Rita called from her desk phone"' in unlock.payload
    assert json.loads(unlock.payload)["facts"]["failures_cleared"] == 2  # the account's and the account-at-address
    response = _login(client, "rita", "pw-rita")
    assert response.status_code == 302 and response.wsgi_request.user.is_authenticated


def test_two_admins_unlock_from_the_user_page_with_a_reason(client, reviewer, admin_user, second_admin) -> None:
    _fail_ten_times()
    client.force_login(second_admin)
    page = client.get(f"/users/{reviewer.pk}/").content.decode()
    assert "Failed logins in the window" in page and "waits until" in page
    refused = client.post(f"/users/{reviewer.pk}/change/", {"action": "unlock", "reason": "", "password": "pw-alex"})
    assert "give a reason" in refused.content.decode().lower()
    client.post(f"/users/{reviewer.pk}/change/",
                {"action": "unlock", "reason": "identity checked in person", "password": "pw-alex"})
    # Requested, not done: Rita still waits until a second Admin confirms.
    assert not LedgerEntry.objects.filter(event="security.unlock").exists()
    assert _login(Client(), "rita", "pw-rita").status_code == 429
    change = AccountChangeRequest.objects.get(kind=Kind.UNLOCK)
    client.force_login(admin_user)
    assert client.post(f"/users/changes/{change.pk}/confirm/", {"password": "pw-adam"}).status_code == 302
    assert LedgerEntry.objects.get(event="security.unlock").actor == admin_user
    assert _login(Client(), "rita", "pw-rita").status_code == 302


def test_the_unlock_command_lifts_the_wait_and_records_who_ran_it_and_why(reviewer) -> None:
    _fail_ten_times()
    _fail_ten_times("nobody-here", address="10.0.0.2")
    out = StringIO()
    call_command("unlock_account", "rita", "--ip", "10.0.0.2", "--reason", "ticket 4711: locked out", stdout=out)
    assert "Cleared 3 records" in out.getvalue()
    entry = LedgerEntry.objects.get(event="security.unlock")
    facts = json.loads(entry.payload)["facts"]
    assert entry.actor is None and entry.object_id == str(reviewer.pk)
    assert facts["os_user"] == getpass.getuser() and facts["by"] == "manage.py unlock_account"
    assert '"reason":"ticket 4711: locked out"' in entry.payload
    assert not FailureCounter.objects.exists()
    assert _login(Client(), "rita", "pw-rita").status_code == 302


def test_the_unlock_command_needs_a_reason_and_a_target(reviewer) -> None:
    with pytest.raises(CommandError, match="reason"):
        call_command("unlock_account", "rita", "--reason", "  ")
    with pytest.raises(CommandError, match="username"):
        call_command("unlock_account", "--reason", "why not")
    assert not LedgerEntry.objects.filter(event="security.unlock").exists()


@pytest.mark.parametrize("command, args", [
    ("axes_reset", []), ("axes_reset_username", ["rita"]), ("axes_reset_ip", ["10.0.0.1"]),
    ("axes_reset_ip_username", ["10.0.0.1", "rita"]),
])
def test_axes_own_reset_commands_are_refused_with_a_pointer_to_unlock_account(reviewer, command, args) -> None:
    _fail_ten_times()
    with pytest.raises(CommandError, match="unlock_account"):
        call_command(command, *args, stdout=StringIO())
    assert _login(Client(), "rita", "pw-rita").status_code == 429


def test_lockout_reset_clears_the_counters_and_axes_records_of_a_username_or_an_address(reviewer) -> None:
    _fail_ten_times()
    _fail_ten_times("nobody-here", address="10.0.0.2")
    AccessAttempt.objects.create(
        username="rita", ip_address="10.0.0.3", user_agent="x", http_accept="x", path_info="/login/",
        failures_since_start=3, attempt_time=timezone.now(), get_data="", post_data="",
    )
    assert lockout_reset(username="RITA") == 3
    assert list(FailureCounter.objects.values_list("key", flat=True)) == ["unknown@10.0.0.2"]
    assert lockout_reset(ip_address="10.0.0.2") == 1
    assert not FailureCounter.objects.exists() and not AccessAttempt.objects.exists()


def test_forgotten_counters_are_deleted_so_invented_addresses_do_not_pile_up(reviewer) -> None:
    for n in range(5):
        _login(Client(), "rita", "wrong", address=f"10.1.0.{n}")
    FailureCounter.objects.update(last_failure_at=timezone.now() - timezone.timedelta(minutes=16))
    call_command("flush_security_events", stdout=StringIO())
    assert not FailureCounter.objects.exists()


def test_eleven_wrong_passwords_for_one_user_do_not_refuse_another_user_behind_the_same_address(
    reviewer, second_reviewer
) -> None:
    # An office NAT: everyone comes from 10.0.0.1, and nobody has a device cookie yet.
    for n in range(11):
        _login(Client(), "rita", f"wrong-{n}")
    assert _login(Client(), "rita", "pw-rita").status_code == 429
    ravi = _login(Client(), "ravi", "pw-ravi")
    assert ravi.status_code == 302 and ravi.wsgi_request.user == second_reviewer


def test_the_person_is_told_until_when_and_how_long_and_the_users_list_says_locked_with_the_reason(
    client, reviewer, second_reviewer, admin_user
) -> None:
    _fail_ten_times()
    refused = _login(Client(), "rita", "pw-rita").content.decode()
    until = FailureCounter.objects.get(key="account@10.0.0.1:rita").delayed_until
    assert f"locked until {until:%H:%M} UTC (in " in refused and "seconds)" in refused
    client.force_login(admin_user)
    page = client.get("/users/").content.decode()
    cells = page.split('<a href="/users/')[1:]
    rows = {row.split("</a>")[0].rsplit(">", 1)[-1]: row.split("</tr>")[0] for row in cells}
    assert f"locked until {until:%H:%M} UTC" in rows["rita"] and "at 10.0.0.1: 10 failed attempts" in rows["rita"]
    assert "locked" not in rows["ravi"]
