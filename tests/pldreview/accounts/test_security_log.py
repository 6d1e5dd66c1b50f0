"""The ledger cannot be flooded by failing to log in: anonymous failures are counted per account (or unknown
account) and address per window, with an entry when a window opens and one with the counts when it closes."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from pldreview.accounts.models import SecurityEventWindow
from pldreview.models import LedgerEntry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # allauth counts login posts per address in the cache (30 a minute); earlier tests' posts must not count.
    cache.clear()


def _login(username: str, password: str, address: str = "10.0.0.1"):  # noqa: ANN202
    return Client().post("/login/", {"login": username, "password": password}, REMOTE_ADDR=address)


def _facts(entry: LedgerEntry) -> dict:
    return json.loads(entry.payload)["facts"]


def test_a_hundred_anonymous_failed_posts_add_a_bounded_number_of_entries(reviewer) -> None:
    before = LedgerEntry.objects.count()
    for n in range(100):
        _login("rita" if n % 2 else f"invented-{n}", f"wrong-{n}")
        if n % 25 == 24:
            cache.clear()  # allauth's 30-a-minute limit per address would answer 429 itself; spread over minutes
    added = LedgerEntry.objects.filter(sequence__gt=before)
    # One window for rita at the address, one for the unknown names: each wrote its opening entry; the delays
    # and refusals that followed are counts in those windows.
    assert sorted(added.values_list("event", flat=True)) == ["security.login_failed", "security.login_failed"]
    assert SecurityEventWindow.objects.count() == 2
    unknown = SecurityEventWindow.objects.get(username="")
    assert len(unknown.unknown_usernames) == 5
    assert unknown.counts["password"] + unknown.counts["refused"] == 50 and unknown.counts["delayed"] >= 1


def test_a_closed_window_is_written_with_its_counts_by_the_flush_command(settings, reviewer) -> None:
    settings.PLD_LOGIN_DELAY_SECONDS = 60  # no wait ends during the test
    for n in range(12):
        _login("rita", f"wrong-{n}")
    SecurityEventWindow.objects.update(closes_at=timezone.now() - timedelta(seconds=1))
    call_command("flush_security_events", stdout=None)
    closing = LedgerEntry.objects.get(event="security.failure_window")
    facts = _facts(closing)
    assert facts["username"] == "rita" and facts["ip_address"] == "10.0.0.1"
    assert facts["counts"] == {"password": 10, "delayed": 1, "refused": 2} and facts["total"] == 13
    assert closing.object_id == str(reviewer.pk)
    assert not SecurityEventWindow.objects.exists()


def test_the_next_event_after_a_window_closed_writes_its_counts_and_opens_a_new_one(reviewer) -> None:
    _login("rita", "wrong-1")
    _login("rita", "wrong-2")
    SecurityEventWindow.objects.update(closes_at=timezone.now() - timedelta(seconds=1))
    _login("rita", "wrong-3")
    events = list(LedgerEntry.objects.filter(event__startswith="security.").order_by("sequence")
                  .values_list("event", flat=True))
    assert events == ["security.login_failed", "security.failure_window", "security.login_failed"]
    assert SecurityEventWindow.objects.get().counts == {"password": 1}


def test_the_security_events_page_writes_closed_windows_first(client, auditor, reviewer) -> None:
    _login("rita", "wrong-1")
    _login("rita", "wrong-2")
    SecurityEventWindow.objects.update(closes_at=timezone.now() - timedelta(seconds=1))
    client.force_login(auditor)
    assert "security.failure_window" in client.get("/security-events/").content.decode()


def test_a_logged_in_users_failed_reauthentication_is_one_entry_each(client, reviewer) -> None:
    client.force_login(reviewer)
    for n in range(3):
        client.post("/accounts/reauthenticate/", {"password": f"wrong-{n}"})
    entries = LedgerEntry.objects.filter(event="security.login_failed", actor=reviewer)
    assert entries.count() == 3


def test_failed_logins_reach_the_ledger_with_the_delays_turned_off(settings, reviewer) -> None:
    settings.AXES_ENABLED = False  # PLD_LOCKOUT_ENABLED=0
    _login("rita", "wrong-1")
    _login("rita", "wrong-2")
    assert LedgerEntry.objects.filter(event="security.login_failed").count() == 1
    assert SecurityEventWindow.objects.get().counts == {"password": 2}
