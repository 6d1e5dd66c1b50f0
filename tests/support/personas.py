"""The roles persona fixtures are given (tests/conftest.py), for tests that build their own users."""
from __future__ import annotations

from importlib import import_module
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.db import connections, router, transaction


def role_group(name: str) -> Group:
    """Return the role's group; a transactional test's flush may have removed the migration's groups."""
    from pldreview.roles import ROLE_PERMISSIONS

    group, created = Group.objects.get_or_create(name=name)
    if created:
        for dotted in ROLE_PERMISSIONS[name]:
            app_label, codename = dotted.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def persona(username: str, *roles: str) -> User:
    """Create a user whose password is "pw-<username>", holding the given roles."""
    user = User.objects.create_user(username=username, password="pw-" + username, email=f"{username}@example.org")
    for role in roles:
        user.groups.add(role_group(role))
    return user


def unsigned_memberships_create(memberships: list[Any]) -> None:
    """Store task memberships that no Admin signed (the test personas', or the shape of access kept at the upgrade).

    The database refuses a membership without its signed addition (rules/migrations/0016): only the tests make such
    rows, by lifting that trigger for this one insert inside one transaction and putting it back.
    """
    if not memberships:
        return
    from rules.models import TaskMembership

    guard = import_module("rules.migrations.0016_task_membership_signed_only")
    connection = connections[router.db_for_write(TaskMembership)]
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for sql in guard.LIFT.get(connection.vendor, []):
            cursor.execute(sql)
        TaskMembership.objects.bulk_create(memberships, ignore_conflicts=True)
        for sql in guard.PUT_BACK.get(connection.vendor, []):
            cursor.execute(sql)
