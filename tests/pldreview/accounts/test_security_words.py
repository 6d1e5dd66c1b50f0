"""Security events read as sentences on the Auditor's pages, never as raw JSON in a column."""
from __future__ import annotations

import pytest
from django.test import Client

from pldreview.accounts.security_words import security_event_sentence
from pldreview.ledger import ledger_append
from tests.support.account_changes import account_change_made

pytestmark = pytest.mark.django_db


def test_each_kind_of_event_reads_as_a_sentence(outsider, admin_user, second_admin) -> None:
    account_change_made(admin_user, second_admin, "grant_role", target=outsider, role="Auditor",
                        reason="Moves to the audit team")
    failed = ledger_append(event="security.login_failed", actor=None,
                           facts={"username": "nobody-here", "known_account": False, "ip_address": "10.0.0.9"})
    window = ledger_append(event="security.failure_window", actor=None, facts={
        "username": "rita", "known_account": True, "ip_address": "10.0.0.9", "opened_at": "2026-12-07T03:00:00+00:00",
        "closed_at": "2026-12-07T03:15:00+00:00", "counts": {"password": 54, "refused": 46}, "total": 100})
    unknown = ledger_append(event="security.something_new", actor=admin_user, facts={"count": 3, "where": "here"})

    from pldreview.models import LedgerEntry

    requested = LedgerEntry.objects.get(event="security.account_change_requested")
    assert security_event_sentence(requested) == (
        "adam asked to grant a role (Auditor) for olga. Reason: Moves to the audit team")
    granted = LedgerEntry.objects.get(event="security.role_granted")
    assert security_event_sentence(granted).startswith("alex gave olga the role Auditor.")
    assert security_event_sentence(failed) == "A failed login for “nobody-here” (no such account) from 10.0.0.9."
    assert security_event_sentence(window) == (
        "Between 2026-12-07 03:00 and 2026-12-07 03:15 UTC, 100 anonymous events for rita from 10.0.0.9: "
        "54 password, 46 refused.")
    # An event nobody worded yet still reads as words: its name and facts.
    assert security_event_sentence(unknown) == "Something new — count: 3; where: here."


def test_the_security_events_page_shows_sentences_and_keeps_the_payload_folded(auditor, admin_user) -> None:
    ledger_append(event="security.login_failed", actor=None,
                  facts={"username": "rita", "known_account": True, "ip_address": "10.0.0.9"})
    client = Client()
    client.force_login(auditor)
    page = client.get("/security-events/").content.decode()
    assert "A failed login for rita from 10.0.0.9." in page
    assert "<details><summary>The ledger entry as recorded</summary>" in page
    assert "<th scope=\"col\">Details</th>" not in page


def test_filtering_by_a_username_finds_the_account_changes_that_concern_it(auditor, outsider, admin_user,
                                                                           second_admin) -> None:
    account_change_made(admin_user, second_admin, "grant_role", target=outsider, role="Auditor", reason="Audit team")
    client = Client()
    client.force_login(auditor)
    page = client.get("/security-events/", {"user": "olga"}).content.decode()
    assert "adam asked to grant a role (Auditor) for olga." in page
    assert "alex confirmed: grant a role (Auditor) for olga." in page
    other = client.get("/security-events/", {"user": "rita"}).content.decode()
    assert "for olga" not in other
