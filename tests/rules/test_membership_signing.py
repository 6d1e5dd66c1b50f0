"""Adding and removing a task member is an Admin's e-signature (Part 11 §11.50, §11.200): re-authenticated at
signing, its meaning recorded, the change kept append-only; the side doors (a raw ORM write, a non-Admin, a
change without re-authentication, another signature) are refused by the service or the database."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client

from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry, Signature
from rules.membership import task_member_add, task_member_remove
from rules.models import TaskMembership, TaskMembershipChange
from tests.support.factories import TaskFactory
from tests.support.personas import unsigned_memberships_create
from tests.support.signatures import member_add_signed, sign_membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_task(db):  # noqa: ANN001, ANN201 - fixtures
    return TaskFactory(name="team-task")


def _post(client: Client, task, **data: str):  # noqa: ANN001, ANN202 - a Task; the test client's response
    return client.post(f"/tasks/{task.name}/members/", {"user": "nemo", "reason": "joins the team", **data})


def test_adding_a_member_records_the_admins_signature_its_meaning_and_method(
    client, team_task, admin_user, non_member_reviewer
):
    client.force_login(admin_user)
    assert _post(client, team_task, action="add", password="pw-adam").status_code == 302
    membership = TaskMembership.objects.get(task=team_task, user=non_member_reviewer)
    signature = membership.signature
    assert (signature.user, signature.meaning, signature.auth_method) == (admin_user, "task_member_added", "password")
    assert signature.password_checked and signature.reason == "joins the team"
    change = TaskMembershipChange.objects.get()
    assert (change.action, change.by, change.user, change.signature) == ("add", admin_user, non_member_reviewer,
                                                                          signature)
    assert ledger_verify().ok


def test_removing_a_member_is_signed_too_and_the_history_keeps_both_changes(
    client, team_task, admin_user, non_member_reviewer
):
    member_add_signed(task=team_task, user=non_member_reviewer, by=admin_user, reason="joins")
    client.force_login(admin_user)
    assert _post(client, team_task, action="remove", password="pw-adam", reason="leaves").status_code == 302
    assert not TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()
    changes = list(TaskMembershipChange.objects.filter(task=team_task).order_by("id"))
    assert [(c.action, c.signature.meaning) for c in changes] == [("add", "task_member_added"),
                                                                  ("remove", "task_member_removed")]
    assert ledger_verify().ok


def test_the_same_change_without_re_authentication_is_refused_and_leaves_nothing(
    client, team_task, admin_user, non_member_reviewer
):
    client.force_login(admin_user)
    missing = _post(client, team_task, action="add")
    assert missing.status_code == 400 and "Enter your password to sign" in missing.content.decode()
    wrong = _post(client, team_task, action="add", password="not-adams")
    assert wrong.status_code == 400 and "Wrong password" in wrong.content.decode()
    assert not TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()
    assert not TaskMembershipChange.objects.exists()
    assert not Signature.objects.filter(meaning="task_member_added").exists()
    # The refused attempt is on the ledger (§11.300(d)).
    assert LedgerEntry.objects.filter(event="security.signature_failed", actor=admin_user).exists()


def test_a_non_admin_cannot_add_a_member_even_with_her_own_valid_signature(team_task, reviewer, non_member_reviewer):
    answer = _post(_client(reviewer), team_task, action="add", password="pw-rita")
    assert answer.status_code == 403
    with pytest.raises(PermissionDenied):
        task_member_add(task=team_task, user=non_member_reviewer, by=reviewer, reason="x",
                        signature=sign_membership(reviewer, team_task, non_member_reviewer, "add"))
    assert not TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()


def test_the_service_refuses_a_missing_borrowed_or_mismatched_signature(
    team_task, admin_user, second_admin, non_member_reviewer, reviewer
):
    def add(signature):  # noqa: ANN001, ANN202 - a Signature or None
        with transaction.atomic():
            return task_member_add(task=team_task, user=non_member_reviewer, by=admin_user, reason="x",
                                   signature=signature)

    with pytest.raises(ValidationError, match="signing"):
        add(None)
    with pytest.raises(PermissionDenied, match="person who signed"):
        add(sign_membership(second_admin, team_task, non_member_reviewer, "add"))
    with pytest.raises(ValidationError, match="Task member added"):
        add(sign_membership(admin_user, team_task, non_member_reviewer, "remove"))
    with pytest.raises(ValidationError, match="other content"):
        add(sign_membership(admin_user, team_task, reviewer, "add"))
    assert not TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()
    membership = member_add_signed(task=team_task, user=non_member_reviewer, by=admin_user, reason="ok")
    with pytest.raises(ValidationError, match="signing"), transaction.atomic():
        task_member_remove(task=team_task, user=non_member_reviewer, by=admin_user, reason="x")
    # The addition's signature cannot remove: its meaning is another.
    with pytest.raises(ValidationError, match="Task member removed"), transaction.atomic():
        task_member_remove(task=team_task, user=non_member_reviewer, by=admin_user, reason="x",
                           signature=membership.signature)
    assert TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()


def test_the_database_refuses_a_membership_added_by_someone_without_a_signature(
    team_task, admin_user, non_member_reviewer
):
    # A trigger (SQLite: IntegrityError, PostgreSQL: a raised exception), so DatabaseError covers both.
    with pytest.raises(DatabaseError, match="signed addition"), transaction.atomic():
        TaskMembership.objects.create(task=team_task, user=non_member_reviewer, added_by=admin_user, reason="raw")
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskMembershipChange.objects.create(task=team_task, user=non_member_reviewer, action="add", by=admin_user,
                                            reason="raw")
    assert not TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()


def test_the_database_refuses_every_membership_without_its_signed_addition(
    team_task, admin_user, second_admin, non_member_reviewer
):
    """A database writer tries the doors the service never opens: no adder and no signature (the shape of the rows
    kept at the upgrade), a raw SQL insert, another signature of the same Admin, another Admin named as the adder,
    and the signature of an earlier addition reused after its signed removal."""
    table = TaskMembership._meta.db_table

    def refused(**fields: object) -> None:
        with pytest.raises(DatabaseError, match="signed addition"), transaction.atomic():
            TaskMembership.objects.create(task=team_task, user=non_member_reviewer, reason="raw", **fields)

    refused()
    with pytest.raises(DatabaseError, match="signed addition"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (task_id, user_id, added_at, reason) VALUES (%s, %s, %s, 'raw')",
                       [team_task.pk, non_member_reviewer.pk, "2026-12-07 00:00:00+00:00"])
    # A valid signature of the Admin, but no "add" change records it.
    refused(added_by=admin_user, signature=sign_membership(admin_user, team_task, non_member_reviewer, "add"))

    membership = member_add_signed(task=team_task, user=non_member_reviewer, by=admin_user, reason="joins")
    added = membership.signature
    task_member_remove(task=team_task, user=non_member_reviewer, by=admin_user, reason="leaves",
                       signature=sign_membership(admin_user, team_task, non_member_reviewer, "remove", "leaves"))
    # The addition's change and signature still exist, but the latest change of this person is the removal.
    refused(added_by=admin_user, signature=added)
    # A writer who also forges the "add" change around a genuine signature: the row must name that change's Admin,
    # and the forged change, which never went through the service, has no ledger entry.
    forged = sign_membership(admin_user, team_task, non_member_reviewer, "add")
    change = TaskMembershipChange.objects.create(task=team_task, user=non_member_reviewer, action="add",
                                                 by=admin_user, reason="forged", signature=forged)
    refused(added_by=second_admin, signature=forged)
    TaskMembership.objects.create(task=team_task, user=non_member_reviewer, reason="raw", added_by=admin_user,
                                  signature=forged)
    verdict = ledger_verify()
    assert not verdict.ok
    assert any(p.object_type == "rules.taskmembershipchange" and p.object_id == str(change.pk)
               and "no ledger entry" in p.detail for p in verdict.problems)


def test_the_database_refuses_to_edit_a_membership_or_to_change_or_delete_a_signed_change(
    team_task, admin_user, non_member_reviewer
):
    membership = member_add_signed(task=team_task, user=non_member_reviewer, by=admin_user, reason="joins")
    change = TaskMembershipChange.objects.get()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TaskMembership._meta.db_table} SET signature_id = NULL WHERE id = %s",
                       [membership.pk])
    for sql in (f"UPDATE {TaskMembershipChange._meta.db_table} SET reason = 'rewritten' WHERE id = %s",
                f"DELETE FROM {TaskMembershipChange._meta.db_table} WHERE id = %s"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [change.pk])
    assert TaskMembershipChange.objects.get().reason == "joins"
    assert TaskMembership.objects.get(pk=membership.pk).signature_id == change.signature_id


def test_the_database_refuses_to_delete_a_membership_without_its_signed_removal(
    team_task, admin_user, non_member_reviewer
):
    membership = member_add_signed(task=team_task, user=non_member_reviewer, by=admin_user, reason="joins")
    with pytest.raises(DatabaseError, match="signed removal"), transaction.atomic():
        TaskMembership.objects.filter(pk=membership.pk).delete()
    # A membership kept at the upgrade (nobody added it, no change recorded) is guarded the same way.
    kept_task = TaskFactory(name="kept-task")
    unsigned_memberships_create([TaskMembership(task=kept_task, user=non_member_reviewer,
                                                reason="Access kept at the upgrade to task membership")])
    kept = TaskMembership.objects.get(task=kept_task, user=non_member_reviewer)
    with pytest.raises(DatabaseError, match="signed removal"), transaction.atomic():
        kept.delete()
    task_member_remove(task=team_task, user=non_member_reviewer, by=admin_user, reason="leaves",
                       signature=sign_membership(admin_user, team_task, non_member_reviewer, "remove", "leaves"))
    assert list(TaskMembership.objects.filter(user=non_member_reviewer)) == [kept]


def _client(user) -> Client:  # noqa: ANN001 - a User
    client = Client()
    client.force_login(user)
    return client


def test_an_admin_adds_and_removes_a_person_from_the_users_page_by_signing(
    client, team_task, admin_user, non_member_reviewer
):
    client.force_login(admin_user)
    page = client.get(f"/users/{non_member_reviewer.pk}/").content.decode()
    assert f'action="/users/{non_member_reviewer.pk}/tasks/"' in page and "Task member added or removed" in page
    url = f"/users/{non_member_reviewer.pk}/tasks/"
    added = client.post(url, {"action": "add", "task": team_task.name, "reason": "joins", "password": "pw-adam"})
    assert added.status_code == 302 and added["Location"] == f"/users/{non_member_reviewer.pk}/"
    assert TaskMembership.objects.get(task=team_task, user=non_member_reviewer).signature.user == admin_user
    assert "/tasks/team-task/members/" in client.get(f"/users/{non_member_reviewer.pk}/").content.decode()
    # Without the password nothing changes, and the form comes back with the reason kept.
    refused = client.post(url, {"action": "remove", "task": team_task.name, "reason": "moves on"})
    assert refused.status_code == 400 and "moves on" in refused.content.decode()
    assert "Enter your password to sign" in refused.content.decode()
    assert TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()
    client.post(url, {"action": "remove", "task": team_task.name, "reason": "moves on", "password": "pw-adam"})
    assert not TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()
    history = client.get(url).content.decode()
    assert "Task member removed by" in history and "Task member added by" in history


def test_the_users_page_offers_no_membership_form_for_an_admin_account_nor_to_a_reviewer(
    client, team_task, admin_user, second_admin, reviewer, non_member_reviewer
):
    client.force_login(admin_user)
    assert f'action="/users/{second_admin.pk}/tasks/"' not in client.get(f"/users/{second_admin.pk}/").content.decode()
    url = f"/users/{non_member_reviewer.pk}/tasks/"
    assert _client(reviewer).post(url, {"action": "add", "task": team_task.name, "reason": "x",
                                        "password": "pw-rita"}).status_code == 403
    assert _client(reviewer).get(url).status_code == 403
    assert not TaskMembership.objects.filter(task=team_task, user=non_member_reviewer).exists()
