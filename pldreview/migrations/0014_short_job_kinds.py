"""Job kinds become short names ("extract", "report"): they no longer look like import paths that moved."""
from django.db import migrations, models

# Every kind ever stored before this migration, and the name its handler is registered under now.
KIND_RENAMES = {
    "rules.jobs.extract": "extract",
    "rules.jobs.cluster": "cluster",
    "evaluation.jobs.run_evaluation": "evaluation_run",
    "evaluation.refine.refine": "refine",
    "evaluation.report_jobs.generate_report": "report",
    "evaluation.warm.student_state_save_job": "student_state_save",
    "evaluation.impact.rule_impact_job": "rule_impact",
    "evaluation.impact.decision_explain_job": "decision_explain",
}


def kinds_shorten(apps, schema_editor):
    Job = apps.get_model("pldreview", "Job")
    for old, new in KIND_RENAMES.items():
        Job.objects.filter(kind=old).update(kind=new)


def kinds_lengthen(apps, schema_editor):
    Job = apps.get_model("pldreview", "Job")
    for old, new in KIND_RENAMES.items():
        Job.objects.filter(kind=new).update(kind=old)


class Migration(migrations.Migration):

    dependencies = [("pldreview", "0013_signature_auth_method")]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="kind",
            field=models.CharField(
                help_text="What the job does: the short name its handler is registered under, e.g. extract",
                max_length=100,
            ),
        ),
        migrations.RunPython(kinds_shorten, kinds_lengthen),
    ]
