# Issue 28: the production page reads rollups of the decision log. Written by makemigrations, with a backfill
# by hand that counts the calls already logged (afterwards each call adds to its rollup as it is written).

import bisect

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

# Written out rather than imported (evaluation.rollups): a migration keeps meaning what it meant when it ran.
BOUNDS = (50, 100, 250, 500, 1000, 2500, 5000)
BUCKETS = [f"latency_le_{b}" for b in BOUNDS] + ["latency_over"]


def backfill(apps, schema_editor):
    call_model = apps.get_model("evaluation", "ClassifyCall")
    rollup_model = apps.get_model("evaluation", "ClassifyCallRollup")
    rows = {}
    fields = ("task_id", "prompt_version_id", "created_at", "label", "top_probability", "latency_ms")
    for task_id, version_id, created_at, label, top, latency in (
        call_model.objects.order_by().values_list(*fields).iterator(chunk_size=5000)
    ):
        key = (task_id, version_id, timezone.localtime(created_at).date(), label)
        row = rows.setdefault(key, {"calls": 0, "top_probability_micros": 0, **dict.fromkeys(BUCKETS, 0)})
        row["calls"] += 1
        row["top_probability_micros"] += round(top * 1_000_000)
        row[BUCKETS[bisect.bisect_left(BOUNDS, latency)]] += 1
    rollup_model.objects.bulk_create(
        [rollup_model(task_id=k[0], prompt_version_id=k[1], day=k[2], label=k[3], **v) for k, v in rows.items()],
        batch_size=1000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ('evaluation', '0018_rule_impact'),
        ('rules', '0012_frozen_test_split'),
    ]

    operations = [
        migrations.CreateModel(
            name='ClassifyCallRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(help_text="The call's date in TIME_ZONE")),
                ('label', models.CharField(max_length=100)),
                ('calls', models.BigIntegerField(default=0)),
                ('top_probability_micros', models.BigIntegerField(default=0)),
                ('latency_le_50', models.BigIntegerField(default=0)),
                ('latency_le_100', models.BigIntegerField(default=0)),
                ('latency_le_250', models.BigIntegerField(default=0)),
                ('latency_le_500', models.BigIntegerField(default=0)),
                ('latency_le_1000', models.BigIntegerField(default=0)),
                ('latency_le_2500', models.BigIntegerField(default=0)),
                ('latency_le_5000', models.BigIntegerField(default=0)),
                ('latency_over', models.BigIntegerField(default=0)),
                ('prompt_version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='rules.promptversion')),
                ('task', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='rules.task')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('task', 'day', 'prompt_version', 'label'), name='classify_rollup_key')],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
