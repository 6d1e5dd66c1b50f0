"""Give Admins user management and Auditors and Admins the security events (see pldreview/roles.py)."""
from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen copy as of this migration.
GRANTS = {
    "Auditor": ["accounts.view_security_events"],
    "Admin": ["accounts.manage_users", "accounts.view_security_events"],
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("accounts")
    app_config.models_module = True  # the migration state's stub lacks it; create_permissions checks it
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in GRANTS.items():
        for group in Group.objects.filter(name=role):
            codenames = [dotted.split(".")[1] for dotted in perms]
            group.permissions.remove(*Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_identities_immutable"),
        ("pldreview", "0002_roles"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
