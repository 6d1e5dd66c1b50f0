"""Queued django-tasks rows still load after their task functions moved (evaluation migration 0020)."""
from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.utils.module_loading import import_string
from django_tasks_db.models import DBTaskResult

from evaluation.production.webhooks import webhook_deliver
from evaluation.runs.worker import run_evaluation_shard, watch_evaluation_run

MIGRATION = "evaluation.migrations.0021_task_paths_moved"
TASKS = {task.module_path: task for task in (run_evaluation_shard, watch_evaluation_run, webhook_deliver)}


def test_a_row_queued_under_each_old_path_resolves_after_the_migration(db: None) -> None:
    migration = importlib.import_module(MIGRATION)
    assert set(migration.TASK_PATH_MOVES.values()) == set(TASKS)
    for old, new in migration.TASK_PATH_MOVES.items():
        with pytest.raises(ImportError):
            import_string(old)  # the row could not be run as it was stored
        result = TASKS[new].enqueue(1, "token") if new.endswith("watch_evaluation_run") else TASKS[new].enqueue(1)
        DBTaskResult.objects.filter(pk=result.id).update(task_path=old)
        migration.task_paths_move(django_apps, schema_editor=None)
        row = DBTaskResult.objects.get(pk=result.id)
        assert row.task_path == new
        assert row.task.func is TASKS[new].func


def test_the_task_path_migration_can_be_undone(db: None) -> None:
    migration = importlib.import_module(MIGRATION)
    result = webhook_deliver.enqueue(1)
    migration.task_paths_restore(django_apps, schema_editor=None)
    assert DBTaskResult.objects.get(pk=result.id).task_path == "evaluation.webhooks.webhook_deliver"
