"""Identities that cannot be rewritten: no rename after acting, no deletion, every change in the ledger."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext

from pldreview.accounts.models import AccountChangeKind as Kind
from pldreview.accounts.models import AccountChangeRequest
from pldreview.accounts.services import user_deactivate, user_rename
from pldreview.ledger import ledger_append
from pldreview.models import LedgerEntry
from rules.review.services import rule_approve
from tests.support.account_changes import account_change_made
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval

pytestmark = pytest.mark.django_db


def _decide(task, reviewer) -> None:
    rule = teacher_rule(task)
    rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="clear",
                 signature=sign_approval(reviewer, rule))


def test_a_renamed_username_is_refused_for_a_user_with_decisions(task, reviewer, admin_user) -> None:
    _decide(task, reviewer)
    with pytest.raises(ValidationError, match="cannot change"):
        user_rename(actor=admin_user, user=reviewer, new_username="rita2", reason="typo")
    # The side door: a plain ORM save of the renamed user is refused by the database.
    reviewer.username = "rita2"
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        reviewer.save()
    assert User.objects.filter(username="rita").exists()


def test_a_user_in_the_ledger_as_actor_cannot_be_renamed_either(reviewer, admin_user) -> None:
    ledger_append(event="security.login", actor=reviewer, obj=reviewer)  # reviewer is now an actor
    reviewer.username = "rita-renamed"
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        reviewer.save()


def test_a_user_who_never_acted_may_be_renamed_and_the_ledger_says_so(outsider, admin_user) -> None:
    user_rename(actor=admin_user, user=outsider, new_username="olga.k", reason="spelling of her login")
    outsider.refresh_from_db()
    assert outsider.username == "olga.k"
    entry = LedgerEntry.objects.get(event="security.user_renamed")
    assert entry.actor == admin_user and '"old_username":"olga"' in entry.payload


def test_a_user_with_decisions_cannot_be_deleted(task, reviewer) -> None:
    _decide(task, reviewer)
    with pytest.raises(ProtectedError):
        reviewer.delete()


def test_deactivation_keeps_the_user_and_ends_their_sessions(client, reviewer, admin_user, task) -> None:
    client.post("/login/", {"login": "rita", "password": "pw-rita"})
    assert client.get("/").status_code == 200
    user_deactivate(actor=admin_user, user=reviewer, reason="left the company")
    reviewer.refresh_from_db()
    assert not reviewer.is_active
    assert client.get("/").status_code == 302
    entry = LedgerEntry.objects.get(event="security.user_deactivated")
    assert entry.actor == admin_user and '"reason":"left the company"' in entry.payload


def test_role_changes_are_recorded_with_who_and_why(outsider, admin_user, second_admin) -> None:
    account_change_made(admin_user, second_admin, Kind.GRANT_ROLE, target=outsider, role="Auditor",
                        reason="covers the audit in March")
    assert outsider.groups.filter(name="Auditor").exists()
    account_change_made(admin_user, second_admin, Kind.REVOKE_ROLE, target=outsider, role="Auditor",
                        reason="audit over")
    assert not outsider.groups.filter(name="Auditor").exists()
    entries = list(LedgerEntry.objects.filter(event__startswith="security.role_"))
    assert [e.event for e in entries] == ["security.role_granted", "security.role_revoked"]
    assert all(e.actor == second_admin for e in entries)
    assert '"reason":"covers the audit in March"' in entries[0].payload
    with pytest.raises(ValidationError):
        account_change_made(admin_user, second_admin, Kind.GRANT_ROLE, target=outsider, role="Auditor", reason="  ")


def test_the_admin_page_creates_a_user_whose_temporary_password_must_be_changed(
    client, admin_user, second_admin, task
) -> None:
    client.force_login(admin_user)
    response = client.post(
        "/users/new/",
        {"username": "nina", "first_name": "Nina", "last_name": "Kowalski", "roles": ["Reviewer"],
         "reason": "joins the review team", "password": "pw-adam"},
    )
    assert response.status_code == 302 and "password" not in (response.context or {})
    nina = User.objects.get(username="nina")
    assert not nina.is_active and not nina.groups.exists()  # nothing until a second Admin confirms
    change = AccountChangeRequest.objects.get(target=nina)
    client.force_login(second_admin)
    response = client.post(f"/users/changes/{change.pk}/confirm/", {"password": "pw-alex"})
    assert response.status_code == 200
    password = response.context["password"]
    assert password in response.content.decode()
    nina.refresh_from_db()
    assert nina.is_active
    assert list(nina.groups.values_list("name", flat=True)) == ["Reviewer"]
    assert {"security.user_created", "security.role_granted"} <= set(
        LedgerEntry.objects.filter(object_id=str(nina.pk)).values_list("event", flat=True)
    )
    # At first login Nina can do nothing before choosing her own password.
    nina_client = type(client)()
    assert nina_client.post("/login/", {"login": "nina", "password": password}).status_code == 302
    response = nina_client.get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/password/change/"
    short = nina_client.post(
        "/accounts/password/change/", {"oldpassword": password, "password1": "short-pw", "password2": "short-pw"}
    )
    assert "at least 12 characters" in short.content.decode()
    nina_client.post(
        "/accounts/password/change/",
        {"oldpassword": password, "password1": "a-long-enough-passphrase", "password2": "a-long-enough-passphrase"},
    )
    assert nina_client.get("/").status_code == 200
    assert LedgerEntry.objects.filter(event="security.password_changed", actor=nina).exists()


def test_two_admins_force_a_password_reset_shown_once_to_the_confirming_one(
    client, admin_user, second_admin, reviewer, task
) -> None:
    rita = type(client)()
    rita.post("/login/", {"login": "rita", "password": "pw-rita"})
    client.force_login(second_admin)
    asked = client.post(f"/users/{reviewer.pk}/change/",
                        {"action": "reset_password", "reason": "phished", "password": "pw-alex"})
    assert asked.status_code == 302 and rita.get("/").status_code == 200  # requested, not done
    change = AccountChangeRequest.objects.get(kind=Kind.RESET_PASSWORD)
    client.force_login(admin_user)
    response = client.post(f"/users/changes/{change.pk}/confirm/", {"password": "pw-adam"})
    temporary = response.context["password"]
    assert rita.get("/").status_code == 302  # her sessions ended
    assert rita.post("/login/", {"login": "rita", "password": "pw-rita"}).status_code == 200
    assert rita.post("/login/", {"login": "rita", "password": temporary}).status_code == 302
    assert rita.get("/")["Location"] == "/accounts/password/change/"
    assert LedgerEntry.objects.get(event="security.password_reset_forced").actor == admin_user


def test_only_admins_manage_users(client, reviewer, auditor) -> None:
    for user in (reviewer, auditor):
        client.force_login(user)
        assert client.get("/users/").status_code == 403
        grant = {"action": "grant", "role": "Admin", "reason": "x"}
        assert client.post(f"/users/{reviewer.pk}/change/", grant).status_code == 403
    assert not reviewer.groups.filter(name="Admin").exists()


def test_django_admin_offers_no_side_door_to_users_roles_or_second_factors() -> None:
    from allauth.mfa.models import Authenticator

    for model in (User, Group, Authenticator):
        assert not admin.site.is_registered(model)


def test_a_raw_sql_rename_is_refused_too(task, reviewer) -> None:
    _decide(task, reviewer)
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE auth_user SET username = 'someone-else' WHERE id = %s", [reviewer.pk])


def test_the_database_refuses_to_delete_any_user(outsider) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no delete trigger (the test flush deletes rows); PostgreSQL flushes with TRUNCATE")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM auth_user WHERE id = %s", [outsider.pk])


def test_the_user_list_runs_the_same_number_of_queries_for_3_and_30_users(
    client, admin_user, reviewer, auditor, django_assert_num_queries
) -> None:
    client.force_login(admin_user)
    client.get("/users/")
    with CaptureQueriesContext(connection) as few:
        client.get("/users/")
    for n in range(27):
        User.objects.create_user(username=f"user-{n}").groups.add(Group.objects.get(name="Reviewer"))
    with django_assert_num_queries(len(few.captured_queries)):
        body = client.get("/users/").content.decode()
    assert "user-26" in body and "Reviewer" in body
