"""The decision log's rollups stay equal to a recount of the calls: inserts, purges and a crash in between."""
from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evaluation.models import ClassifyCall, ClassifyCallRollup
from evaluation.production import decision_log
from evaluation.production.decision_log import classify_call_save, decisions_purge
from evaluation.production.rollups import COUNT_FIELDS, Tally, latency_bucket, rollups_rebuild
from tests.support.factories import ClassifyCallFactory
from tests.support.prompt_versions import approve_all, compiled

LABELS = ["Entailment", "Contradiction", "NotMentioned"]


@pytest.fixture
def version(task, admin_user, second_reviewer):
    approve_all(task, second_reviewer)
    return compiled(task, admin_user)


def _random_call(version, rng: random.Random) -> ClassifyCall:
    return ClassifyCallFactory.build(
        prompt_version=version, task=version.task, label=rng.choice(LABELS),
        top_probability=round(rng.uniform(0.34, 1.0), 6), latency_ms=rng.choice([3.0, 75.0, 180.0, 4000.0, 9000.0]),
        created_at=timezone.now() - timedelta(days=rng.uniform(0, 40)),
    )


def test_latency_buckets_close_at_their_upper_bound() -> None:
    assert [latency_bucket(ms) for ms in (0, 50, 50.1, 100, 5000, 5000.5)] == [0, 0, 1, 1, 6, 7]


def test_rollups_equal_a_recount_after_random_inserts_purges_and_a_crash(version, monkeypatch, capsys) -> None:
    rng = random.Random(28)
    for _ in range(120):
        classify_call_save(_random_call(version, rng))
    assert rollups_rebuild(check=True).ok

    # A crash between the call's INSERT and its rollup: the transaction takes the call with it.
    def crash(call):
        raise DatabaseError("the process died before the rollup was written")

    monkeypatch.setattr(decision_log, "rollup_add", crash)
    lost = _random_call(version, rng)
    with pytest.raises(DatabaseError):
        classify_call_save(lost)
    monkeypatch.undo()
    assert not ClassifyCall.objects.filter(request_id=lost.request_id).exists()
    assert rollups_rebuild(check=True).ok

    decisions_purge(older_than_days=25, actor=None, batch_size=7)
    decisions_purge(older_than_days=rng.randint(5, 20), actor=None, task=version.task, batch_size=50)
    assert not ClassifyCall.objects.filter(created_at__lt=timezone.now() - timedelta(days=20)).exists()
    assert rollups_rebuild(check=True).ok
    for _ in range(30):
        classify_call_save(_random_call(version, rng))
    check = rollups_rebuild(check=True)
    assert check.ok and check.calls == ClassifyCall.objects.count() > 0
    assert not ClassifyCallRollup.objects.filter(calls__lte=0).exists()

    call_command("rebuild_rollups", "--check")
    assert json.loads(capsys.readouterr().out)["differences"] == 0


def test_the_command_finds_and_repairs_rollups_that_differ_from_the_calls(version, capsys) -> None:
    rng = random.Random(7)
    calls = [classify_call_save(_random_call(version, rng)) for _ in range(20)]
    # A call written past the decision log (a bulk load, a restore of the calls table alone) has no rollup;
    # a rollup row edited by hand no longer matches its calls.
    orphan = _random_call(version, rng)
    orphan.request_id = uuid.uuid4()
    ClassifyCall.objects.bulk_create([orphan])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE evaluation_classifycallrollup SET calls = calls + 5 WHERE id = %s",
                       [ClassifyCallRollup.objects.order_by("id").values_list("id", flat=True).first()])
    with pytest.raises(SystemExit) as exited:
        call_command("rebuild_rollups", "--check")
    assert exited.value.code == 1
    assert json.loads(capsys.readouterr().out)["differences"] >= 1

    call_command("rebuild_rollups")
    assert rollups_rebuild(check=True).ok
    assert sum(ClassifyCallRollup.objects.values_list("calls", flat=True)) == len(calls) + 1
    assert Tally.of_calls(ClassifyCall.objects.all()).rows == {
        key: list(counts) for key, counts in _all_counts().items()}


def _all_counts() -> dict:
    return {(r[0], r[1], r[2], r[3]): r[4:] for r in ClassifyCallRollup.objects.values_list(
        "task_id", "prompt_version_id", "day", "label", *COUNT_FIELDS)}


def test_the_production_page_reads_rollups_and_never_the_calls(client, auditor, version) -> None:
    rng = random.Random(3)
    for _ in range(12):
        classify_call_save(_random_call(version, rng))
    client.force_login(auditor)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/tasks/nda-demo/production/?start=" +
                              (timezone.localdate() - timedelta(days=45)).isoformat())
    assert response.status_code == 200
    table = ClassifyCall._meta.db_table
    assert not [q["sql"] for q in queries.captured_queries if f'"{table}"' in q["sql"] or f" {table} " in q["sql"]]
    assert f"{ClassifyCall.objects.count()} in all" in response.content.decode()
