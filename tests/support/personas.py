"""The roles persona fixtures are given (tests/conftest.py), for tests that build their own users."""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission, User


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
