# Rule impact runs and their decisions, decision explanations (issue 23). Partly written by hand: a finished
# impact run is immutable, its decisions and every explanation are append-only (database triggers), and the
# Auditor and Admin roles may ask for explanations.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

from pldreview.db_triggers import (
    by_vendor,
    pg_drop,
    pg_function,
    pg_trigger,
    refuse_changes,
    sqlite_drop,
    sqlite_guard,
)

FINISHED_MESSAGE = "A finished rule impact run is a record: it cannot be changed."
FINISHED = "pld_ruleimpactrun_finished"
DECISION_MESSAGE = "A rule impact decision is a record: it cannot be changed."
EXPLANATION_MESSAGE = "A decision explanation is a record: it cannot be changed; explain again for a new one."
ADDED = {"Auditor": ["evaluation.explain_decision"], "Admin": ["evaluation.explain_decision"]}


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
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(content_type__app_label="evaluation", codename="explain_decision").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('evaluation', '0017_technical_file_and_provider_information'),
        ('pldreview', '0010_ledger_checkpoint_and_recorded_permits'),
        ('rules', '0012_frozen_test_split'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='RuleImpactRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('split', models.CharField(choices=[('train', 'Train'), ('dev', 'Dev'), ('test', 'Test'), ('feedback', 'Feedback')], default='dev', max_length=10)),
                ('sample', models.PositiveIntegerField(blank=True, help_text='How many examples were drawn; empty = all', null=True)),
                ('seed', models.IntegerField(default=0)),
                ('options', models.JSONField(blank=True, default=dict)),
                ('n_examples', models.PositiveIntegerField(default=0)),
                ('n_rules', models.PositiveIntegerField(default=0)),
                ('data_sha256', models.CharField(blank=True, help_text='Hash of the sampled examples', max_length=64)),
                ('model_path', models.CharField(max_length=500)),
                ('model_sha256', models.CharField(max_length=64)),
                ('model_name', models.CharField(blank=True, max_length=200)),
                ('llama_cpp_version', models.CharField(blank=True, max_length=30)),
                ('n_ctx', models.PositiveIntegerField(default=0)),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('finished', 'Finished'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], db_index=True, default='queued', max_length=10)),
                ('results', models.JSONField(blank=True, default=dict)),
                ('error', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, to=settings.AUTH_USER_MODEL)),
                ('job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='pldreview.job')),
                ('prompt_version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='impact_runs', to='rules.promptversion')),
                ('task', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='impact_runs', to='rules.task')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='RuleImpactDecision',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('variant', models.PositiveIntegerField(help_text='0 = the whole rule set; k = the rule at number k left out')),
                ('label', models.CharField(blank=True, help_text='Empty when the example was refused (too long)', max_length=100)),
                ('probabilities', models.JSONField(blank=True, default=dict)),
                ('tokens_processed', models.PositiveIntegerField(default=0)),
                ('latency_ms', models.FloatField(default=0.0)),
                ('example', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='rules.example')),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='decisions', to='evaluation.ruleimpactrun')),
            ],
            options={
                'ordering': ['run', 'variant', 'id'],
            },
        ),
        migrations.CreateModel(
            name='DecisionExplanation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('prompt_sha256', models.CharField(max_length=64)),
                ('model_sha256', models.CharField(max_length=64)),
                ('label', models.CharField(help_text='The label with every rule, as recomputed for the explanation', max_length=100)),
                ('probabilities', models.JSONField(default=dict)),
                ('rules', models.JSONField(blank=True, default=list)),
                ('deciding_numbers', models.JSONField(blank=True, default=list, help_text='Numbers of the rules whose removal changes the label')),
                ('seconds', models.FloatField(default=0.0)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('call', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='explanations', to='evaluation.classifycall')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, to=settings.AUTH_USER_MODEL)),
                ('job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='pldreview.job')),
                ('prediction', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='explanations', to='evaluation.prediction')),
                ('prompt_version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='rules.promptversion')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'permissions': [('explain_decision', 'Can ask why a decision came out as it did, and measure rule impact')],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('call__isnull', False), ('prediction__isnull', True)), models.Q(('call__isnull', True), ('prediction__isnull', False)), _connector='OR'), name='decision_explanation_one_subject')],
            },
        ),
        migrations.AddConstraint(
            model_name='ruleimpactrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'finished', 'failed', 'cancelled']), ('split__in', ['train', 'dev', 'test', 'feedback'])), name='rule_impact_run_in_choices'),
        ),
        migrations.AddConstraint(
            model_name='ruleimpactrun',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'finished'), _negated=True), ('finished_at__isnull', False), _connector='OR'), name='rule_impact_run_finished_at'),
        ),
        migrations.AddConstraint(
            model_name='ruleimpactdecision',
            constraint=models.UniqueConstraint(fields=('run', 'variant', 'example'), name='rule_impact_decision_once'),
        ),
        refuse_changes("pld_ruleimpactdecision_no_update", table="evaluation_ruleimpactdecision",
                       message=DECISION_MESSAGE),
        refuse_changes("pld_decisionexplanation_no_update", table="evaluation_decisionexplanation",
                       message=EXPLANATION_MESSAGE),
        by_vendor(
            {
                "sqlite": [
                    sqlite_guard(FINISHED, before="UPDATE", table="evaluation_ruleimpactrun",
                                 message=FINISHED_MESSAGE, when="OLD.status = 'finished'"),
                    sqlite_guard(FINISHED + "_del", before="DELETE", table="evaluation_ruleimpactrun",
                                 message=FINISHED_MESSAGE, when="OLD.status = 'finished'"),
                ],
                "postgresql": [
                    pg_function(FINISHED, "\n    BEGIN\n      IF OLD.status = 'finished' THEN RAISE EXCEPTION '"
                                + FINISHED_MESSAGE + "'; END IF;\n      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;"
                                "\n      RETURN NEW;\n    END "),
                    pg_trigger(FINISHED, before="UPDATE OR DELETE", table="evaluation_ruleimpactrun"),
                ],
            },
            {"sqlite": sqlite_drop(FINISHED, FINISHED + "_del"),
             "postgresql": pg_drop(FINISHED, table="evaluation_ruleimpactrun")},
        ),
        migrations.RunPython(grant, revoke),
    ]
