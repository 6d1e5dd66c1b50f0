"""The reviewers' export is the review log (issue 26): rename its permission in place, so every grant survives.

``export_decision_log`` becomes ``export_review_log``. The Permission row keeps its id, so the groups and users
that hold it (the Auditor and Admin roles, and any grant made by hand) hold the new name without being touched.
"""
from __future__ import annotations

from django.db import migrations

OLD = ("export_decision_log", "Can export a task's decision log")
NEW = ("export_review_log", "Can export a task's review log")


def _rename(apps, schema_editor, old, new):
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    task_type = ContentType.objects.filter(app_label="rules", model="task").first()
    if task_type is None:
        return  # a database without content types yet: post_migrate creates the new permission
    before = Permission.objects.filter(content_type=task_type, codename=old[0]).first()
    if before is None:
        return
    after = Permission.objects.filter(content_type=task_type, codename=new[0]).first()
    if after is not None:
        # Both exist (post_migrate ran between the model change and this migration): move the grants, keep one.
        for group in before.group_set.all():
            group.permissions.add(after)
        for user in before.user_set.all():
            user.user_permissions.add(after)
        before.delete()
        return
    before.codename, before.name = new
    before.save(update_fields=["codename", "name"])


def forwards(apps, schema_editor):
    _rename(apps, schema_editor, OLD, NEW)


def backwards(apps, schema_editor):
    _rename(apps, schema_editor, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0013_task_membership"),
        # The roles migration grants the permission by its old name: it must run first.
        ("pldreview", "0002_roles"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="task",
            options={
                "ordering": ["name"],
                "permissions": [
                    ("import_dataset", "Can import datasets into a task"),
                    NEW,
                    ("view_all_tasks", "Sees every task without being a member"),
                    ("audit_all_tasks", "Sees every task unless PLD_AUDITORS_SCOPED is on"),
                    ("manage_task_members", "Can add and remove task members"),
                ],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
