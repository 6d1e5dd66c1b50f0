"""Queued django-tasks rows name their task by the dotted path of its function: point the moved ones at their new home.

django-tasks-db stores ``task_path`` in each DBTaskResult and imports it when a worker claims the row; a row queued
before a task function moved (issue 26: evaluation/runs.py became a package, the shard and watch tasks went to
evaluation/runs/worker.py, the webhook task to evaluation/production/webhooks.py) would otherwise fail to load.
"""
from django.db import migrations

# Every path these tasks were ever queued under, and where each function lives now.
TASK_PATH_MOVES = {
    "evaluation.runs.run_evaluation_shard": "evaluation.runs.worker.run_evaluation_shard",
    "evaluation.runs.services.run_evaluation_shard": "evaluation.runs.worker.run_evaluation_shard",
    "evaluation.runs.watch_evaluation_run": "evaluation.runs.worker.watch_evaluation_run",
    "evaluation.runs.services.watch_evaluation_run": "evaluation.runs.worker.watch_evaluation_run",
    "evaluation.webhooks.webhook_deliver": "evaluation.production.webhooks.webhook_deliver",
}
# Undoing the move restores the paths of the code before issue 26.
TASK_PATH_RESTORES = {
    "evaluation.runs.worker.run_evaluation_shard": "evaluation.runs.run_evaluation_shard",
    "evaluation.runs.worker.watch_evaluation_run": "evaluation.runs.watch_evaluation_run",
    "evaluation.production.webhooks.webhook_deliver": "evaluation.webhooks.webhook_deliver",
}


def task_paths_move(apps, schema_editor):
    DBTaskResult = apps.get_model("django_tasks_database", "DBTaskResult")
    for old, new in TASK_PATH_MOVES.items():
        DBTaskResult.objects.filter(task_path=old).update(task_path=new)


def task_paths_restore(apps, schema_editor):
    DBTaskResult = apps.get_model("django_tasks_database", "DBTaskResult")
    for new, old in TASK_PATH_RESTORES.items():
        DBTaskResult.objects.filter(task_path=new).update(task_path=old)


class Migration(migrations.Migration):

    dependencies = [
        ("evaluation", "0020_rule_impact_shards"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [migrations.RunPython(task_paths_move, task_paths_restore)]
