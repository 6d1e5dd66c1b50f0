"""Migration 0014 renames the reviewers' export permission in place: every group and user keeps the grant."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User

from tests.support.migrations import migrate_to, migrate_to_the_latest

BEFORE = ("rules", "0013_task_membership")
AFTER = ("rules", "0014_review_log_permission")


@pytest.mark.django_db(transaction=True)
def test_the_export_permission_is_renamed_in_place_and_every_grant_survives() -> None:
    old = migrate_to(BEFORE)
    try:
        permission = old.get_model("auth", "Permission").objects.get(
            content_type__app_label="rules", codename="export_decision_log")
        # The grants the roles migration makes; a transactional test before this one may have flushed them.
        for name in ("Auditor", "Admin"):
            old.get_model("auth", "Group").objects.get_or_create(name=name)[0].permissions.add(permission)
        held_by = set(permission.group_set.values_list("name", flat=True))
        user = old.get_model("auth", "User").objects.create(username="granted-by-hand")
        user.user_permissions.add(permission)
        migrate_to(AFTER)
    finally:
        migrate_to_the_latest()
    renamed = Permission.objects.get(pk=permission.pk)
    assert (renamed.codename, renamed.name) == ("export_review_log", "Can export a task's review log")
    assert not Permission.objects.filter(codename="export_decision_log").exists()
    assert set(Group.objects.filter(permissions=renamed).values_list("name", flat=True)) == held_by == {
        "Auditor", "Admin"}
    assert User.objects.get(username="granted-by-hand").has_perm("rules.export_review_log")
