"""The production page's, the purge's, the export's and the call list's queries read through indexes.

PostgreSQL is asked with sequential scans priced out (``enable_seqscan = off``): a plan that still scans the
table would mean no index can serve the query. SQLite names the index it searches with.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from evaluation.models import ClassifyCall, ClassifyCallRollup
from evaluation.production.call_pages import calls_newer, calls_older
from evaluation.production.decision_log import purge_batch_calls
from evaluation.production.exports import calls_in_range
from tests.support.factories import ClassifyCallFactory
from tests.support.prompt_versions import approve_all, compiled


@pytest.fixture
def version(task, admin_user, second_reviewer):
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    for days in range(5):
        ClassifyCallFactory(prompt_version=version, created_at=timezone.now() - timedelta(days=days))
    return version


def _plan(queryset) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def _uses(plan: str, index: str) -> bool:
    if connection.vendor == "postgresql":
        return any(f"{scan} {index}" in plan for scan in (
            "Index Scan using", "Index Scan Backward using", "Index Only Scan using", "Bitmap Index Scan on"))
    return f"INDEX {index}" in plan


def _created_at_index() -> str:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, ClassifyCall._meta.db_table)
    names = [name for name, info in constraints.items() if info["index"] and info["columns"] == ["created_at"]]
    assert names, "ClassifyCall.created_at has no index"
    return names[0]


def test_the_page_reads_the_rollups_through_their_key(version) -> None:
    today = timezone.localdate()
    rollups = (ClassifyCallRollup.objects.filter(task=version.task, day__gte=today - timedelta(days=29),
                                                 day__lte=today).values("day", "label").annotate(n=Sum("calls")))
    plan = _plan(rollups)
    # SQLite builds the unique key into its CREATE TABLE, under a name of its own.
    assert _uses(plan, "classify_rollup_key") or (
        connection.vendor == "sqlite" and "USING INDEX sqlite_autoindex_evaluation_classifycallrollup_1 "
        "(task_id=? AND day>? AND day<?)" in plan), plan


def test_the_purge_takes_its_batches_from_an_index_range(version) -> None:
    cutoff = timezone.now() - timedelta(days=2)
    plan = _plan(purge_batch_calls(cutoff=cutoff, task=version.task, batch_size=1000))
    assert _uses(plan, "classify_call_task_day_idx") or _uses(plan, _created_at_index()), plan
    plan = _plan(purge_batch_calls(cutoff=cutoff, task=None, batch_size=1000))
    assert _uses(plan, _created_at_index()), plan


def test_the_export_and_the_call_list_read_the_tasks_time_range(version) -> None:
    today = timezone.localdate()
    calls = calls_in_range(task=version.task, start=today - timedelta(days=3), end=today, version=None)
    # Either time index bounds the read; which one the planner takes depends on its statistics.
    plan = _plan(calls.order_by("created_at", "id"))
    assert _uses(plan, "classify_call_task_day_idx") or _uses(plan, _created_at_index()), plan
    listed = ClassifyCall.objects.filter(task=version.task).order_by("-created_at", "-id")[:50]
    plan = _plan(listed)
    assert _uses(plan, "classify_call_task_day_idx") or _uses(plan, _created_at_index()), plan
    assert ClassifyCall.objects.filter(task=version.task).count() == 5


def test_the_call_lists_older_and_newer_pages_start_from_their_cursor_in_an_index(version) -> None:
    calls = ClassifyCall.objects.filter(task=version.task)
    middle = calls.order_by("created_at")[2]
    for page in (calls_older(calls, middle.created_at, middle.pk), calls_newer(calls, middle.created_at, middle.pk)):
        plan = _plan(page[:51])
        assert _uses(plan, "classify_call_task_day_idx") or _uses(plan, _created_at_index()), plan
        # On SQLite the cursor bounds the index search itself, so a deep page does not read the calls above it.
        assert connection.vendor != "sqlite" or "created_at<?" in plan or "created_at>?" in plan, plan
    assert [c.pk for c in calls_older(calls, middle.created_at, middle.pk)] == [
        c.pk for c in calls.order_by("-created_at", "-id") if c.created_at < middle.created_at]
