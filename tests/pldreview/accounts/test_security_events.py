"""The Auditor's security events page: ledger entries whose event starts with ``security.``, filtered and paged."""
from __future__ import annotations

import pytest

from pldreview.accounts.models import AccountChangeKind as Kind
from pldreview.ledger import ledger_append
from tests.support.account_changes import account_change_made

pytestmark = pytest.mark.django_db


def test_an_auditor_sees_logins_failures_and_role_changes_and_filters_them(
    client, auditor, reviewer, admin_user, second_admin
) -> None:
    client.post("/login/", {"login": "rita", "password": "wrong"})
    # Reviewer and Auditor are incompatible in one account: Rita leaves review to cover the audit in March.
    account_change_made(admin_user, second_admin, Kind.REVOKE_ROLE, target=reviewer, role="Reviewer",
                        reason="covers March")
    account_change_made(admin_user, second_admin, Kind.GRANT_ROLE, target=reviewer, role="Auditor",
                        reason="covers March")
    ledger_append(event="decision.created", actor=reviewer)  # not a security event
    client.force_login(auditor)
    body = client.get("/security-events/").content.decode()
    assert "security.login_failed" in body and "security.role_granted" in body and "security.login" in body
    assert "decision.created" not in body
    only_roles = client.get("/security-events/", {"event": "security.role"}).content.decode()
    assert "security.role_granted" in only_roles and "security.login_failed" not in only_roles
    by_rita = client.get("/security-events/", {"user": "rita"}).content.decode()
    assert "security.role_granted" in by_rita and "security.login_failed" in by_rita
    future = client.get("/security-events/", {"since": "2999-01-01"}).content.decode()
    assert "No security events." in future


def test_the_page_is_paginated_with_a_fixed_number_of_queries(client, auditor, django_assert_max_num_queries) -> None:
    client.force_login(auditor)
    for n in range(120):
        ledger_append(event="security.login_failed", actor=None, facts={"n": n})
    with django_assert_max_num_queries(12):
        body = client.get("/security-events/", {"page": 2}).content.decode()
    assert "Page 2 of 3" in body


def test_a_reviewer_may_not_read_security_events(client, reviewer) -> None:
    client.force_login(reviewer)
    assert client.get("/security-events/").status_code == 403
