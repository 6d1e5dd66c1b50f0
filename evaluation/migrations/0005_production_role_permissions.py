"""Give the roles the decision log's permissions (see pldreview/roles.py)."""
from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen copy of what this migration adds; later changes get their own migration.
ADDED = {
    "Reviewer": ["evaluation.view_classifycall", "evaluation.give_feedback"],
    "Auditor": ["evaluation.view_classifycall", "evaluation.watch_production"],
    "Admin": ["evaluation.view_classifycall", "evaluation.watch_production", "evaluation.set_decision_retention"],
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("evaluation")
    app_config.models_module = True  # the migration state's stub lacks it; create_permissions checks it
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ADDED.items():
        group, _ = Group.objects.get_or_create(name=role)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ADDED.items():
        group = Group.objects.filter(name=role).first()
        if group is None:
            continue
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0004_decision_log_feedback_and_token_limits"),
        ("pldreview", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
