# Each run records the SHA-256 of the whole test split it drew from (issue 22: the gate judges only runs on the
# frozen test split). Written by makemigrations, with a backfill by hand: a run of the whole test split whose
# examples are exactly today's test examples gets today's hash; any other earlier run stays blank and never gates.

import hashlib
import json

from django.db import migrations, models

from pldreview.db_triggers import keep_sqlite_triggers

NOTE_TRIGGERS, RESTORE_TRIGGERS = keep_sqlite_triggers(["evaluation_evaluationrun"])


# Written out rather than imported (rules.frozen_split.examples_sha256): a migration keeps meaning what it
# meant when it ran.
def _content(inputs, gold_label):
    payload = json.dumps({"inputs": inputs, "label": gold_label}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def backfill(apps, schema_editor):
    Example = apps.get_model("rules", "Example")
    EvaluationRun = apps.get_model("evaluation", "EvaluationRun")
    runs = EvaluationRun.objects.filter(split="test", limit__isnull=True, split_sha256="")
    for task_id in runs.values_list("task_id", flat=True).distinct():
        rows = Example.objects.filter(task_id=task_id, split="test").order_by("id").values_list(
            "id", "inputs", "gold_label"
        )
        digest, ids = hashlib.sha256(), set()
        for pk, inputs, gold_label in rows.iterator(chunk_size=500):
            digest.update(f"{pk} {_content(inputs, gold_label)}\n".encode())
            ids.add(pk)
        for run in runs.filter(task_id=task_id):
            if ids and set((run.options or {}).get("example_ids", [])) == ids:
                run.split_sha256 = digest.hexdigest()
                run.save(update_fields=["split_sha256"])


class Migration(migrations.Migration):

    dependencies = [
        ('evaluation', '0012_classify_call_backend'),
        ('rules', '0012_frozen_test_split'),
    ]

    operations = [
        NOTE_TRIGGERS,
        migrations.AddField(
            model_name='evaluationrun',
            name='split_sha256',
            field=models.CharField(blank=True, help_text='Hash of the whole test split at creation', max_length=64),
        ),
        RESTORE_TRIGGERS,
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
