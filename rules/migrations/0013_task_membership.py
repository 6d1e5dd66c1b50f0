"""Need-to-know per task: task memberships, the permissions to see every task, and access kept at the upgrade."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

# Frozen copy of what this migration grants (pldreview/roles.py holds the current table).
GRANTS = {
    "Auditor": ["audit_all_tasks"],
    "Admin": ["view_all_tasks", "manage_task_members"],
}
# Upgrading must not take anyone's work away: who may see every task today (Reviewers, Auditors) becomes a member
# of every existing task. Admins then narrow it on each task's Members page.
MEMBER_ROLES = ("Reviewer", "Auditor")


def grant_and_keep_access(apps, schema_editor):
    app_config = apps.get_app_config("rules")
    app_config.models_module = True  # the migration state's stub lacks it; create_permissions checks it
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for codename in codenames:
            group.permissions.add(Permission.objects.get(content_type__app_label="rules", codename=codename))
    User = apps.get_model("auth", "User")
    Task = apps.get_model("rules", "Task")
    TaskMembership = apps.get_model("rules", "TaskMembership")
    people = list(User.objects.filter(groups__name__in=MEMBER_ROLES).distinct())
    TaskMembership.objects.bulk_create(
        [TaskMembership(task=task, user=user, reason="Access kept at the upgrade to task membership")
         for task in Task.objects.all() for user in people],
        ignore_conflicts=True,
    )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in GRANTS.items():
        for group in Group.objects.filter(name=role):
            group.permissions.remove(*Permission.objects.filter(content_type__app_label="rules", codename__in=codenames))


class Migration(migrations.Migration):

    dependencies = [
        ('rules', '0012_frozen_test_split'),
        ('pldreview', '0002_roles'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='task',
            options={'ordering': ['name'], 'permissions': [('import_dataset', 'Can import datasets into a task'), ('export_decision_log', "Can export a task's decision log"), ('view_all_tasks', 'Sees every task without being a member'), ('audit_all_tasks', 'Sees every task unless PLD_AUDITORS_SCOPED is on'), ('manage_task_members', 'Can add and remove task members')]},
        ),
        migrations.CreateModel(
            name='TaskMembership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('added_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('reason', models.CharField(blank=True, max_length=500)),
                ('added_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('task', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='memberships', to='rules.task')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='task_memberships', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['task__name', 'user__username'],
                'constraints': [models.UniqueConstraint(fields=('task', 'user'), name='task_membership_once')],
            },
        ),
        migrations.RunPython(grant_and_keep_access, revoke),
    ]
