"""Create the Reviewer, Auditor and Admin groups with their permissions (see pldreview/roles.py)."""
from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen copy of the table as of this migration: later changes get their own migration.
ROLE_PERMISSIONS = {
    "Reviewer": [
        "rules.view_task", "rules.view_example", "rules.view_datasetimport", "rules.view_microrule",
        "rules.view_clusteringrun", "rules.view_teachercall", "rules.view_rule", "rules.view_rulerevision",
        "rules.view_decision", "rules.view_promptversion", "evaluation.view_evaluationrun",
        "evaluation.view_prediction", "evaluation.view_promotion", "pldreview.view_job",
        "rules.review_rule", "rules.reorder_ruleset", "rules.add_rule",
    ],
    "Auditor": [
        "rules.view_task", "rules.view_example", "rules.view_datasetimport", "rules.view_microrule",
        "rules.view_clusteringrun", "rules.view_teachercall", "rules.view_rule", "rules.view_rulerevision",
        "rules.view_decision", "rules.view_promptversion", "evaluation.view_evaluationrun",
        "evaluation.view_prediction", "evaluation.view_promotion", "pldreview.view_job",
        "rules.export_decision_log", "evaluation.view_report", "evaluation.generate_report",
        "evaluation.verify_report",
    ],
    "Admin": [
        "rules.view_task", "rules.view_example", "rules.view_datasetimport", "rules.view_microrule",
        "rules.view_clusteringrun", "rules.view_teachercall", "rules.view_rule", "rules.view_rulerevision",
        "rules.view_decision", "rules.view_promptversion", "evaluation.view_evaluationrun",
        "evaluation.view_prediction", "evaluation.view_promotion", "pldreview.view_job",
        "rules.import_dataset", "rules.add_task", "rules.run_teacher", "rules.compile_prompt",
        "rules.export_decision_log", "evaluation.run_evaluation", "evaluation.promote_prompt",
        "evaluation.manage_api_tokens", "evaluation.view_apitoken", "evaluation.view_report",
        "evaluation.generate_report", "evaluation.verify_report", "pldreview.run_job",
    ],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; create them now so the groups can hold them.
    for app_label in ("pldreview", "rules", "evaluation"):
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True  # the migration state's stub lacks it; create_permissions checks it
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pldreview", "0001_initial"),
        ("rules", "0001_initial"),
        ("evaluation", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
