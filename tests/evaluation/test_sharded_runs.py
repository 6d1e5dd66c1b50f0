"""Sharded evaluation runs: shards of whole groups, leases, a dead worker's shard retried, cancel, resume.

The last tests start real ``manage.py db_worker`` processes on PostgreSQL (scripts/test-postgres runs them):
two workers share one run, and a worker killed mid-shard leaves a run that still ends complete and correct.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from evaluation.models import EvaluationRun, EvaluationShard, Prediction
from evaluation.runs.execution import evaluation_run_finish, evaluation_shard_execute
from evaluation.runs.services import (
    evaluation_run_cancel,
    evaluation_run_create,
    evaluation_run_execute,
    evaluation_run_resume,
    evaluation_run_start,
)
from evaluation.runs.shards import ShardLost, ShardProgress, lease_length, shard_claim, shard_heartbeat
from evaluation.runs.worker import watch_evaluation_run
from evaluation.student.in_process import Student
from pldreview.jobs import JobCancelled
from pldreview.models import Job
from rules.models import Example, Task
from tests.support.factories import NDA_ROWS, add_contract_examples, add_examples
from tests.support.student import STUDENT_N_CTX

# Metrics that depend on the decisions only (latency differs from run to run by nature).
QUALITY = ("n", "n_refused", "macro_f1", "macro_f1_ci95", "accuracy", "per_class", "confusion", "labels")


def _quality(run: EvaluationRun) -> dict[str, Any]:
    return {key: run.metrics.get(key) for key in QUALITY}


def _labels(run: EvaluationRun) -> dict[int, str]:
    return dict(run.predictions.values_list("example_id", "label"))


def _expire(shard: EvaluationShard) -> None:
    EvaluationShard.objects.filter(pk=shard.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


# --- planning, claiming, leases (no model) -----------------------------------------------------


def test_a_shard_holds_whole_shared_context_groups(contract_task: Task, settings: Any) -> None:
    settings.PLD_SHARD_EXAMPLES = 2
    examples = add_contract_examples(contract_task)
    run = evaluation_run_create(task=contract_task, mode="zero-shot")
    shards = list(run.shards.order_by("number"))
    # Three pairs per document: a shard of "about two" still takes the whole document, never half of it.
    assert [len(s.example_ids) for s in shards] == [3, 3]
    by_id = {e.pk: e.group_key for e in examples}
    assert [{by_id[i] for i in s.example_ids} for s in shards] == [{"doc-a"}, {"doc-b"}]
    assert [i for s in shards for i in s.example_ids] == run.options["example_ids"]


def test_examples_without_a_shared_context_are_cut_by_size(
    task: Task, nda_examples: list[Example], settings: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 4
    run = evaluation_run_create(task=task, mode="zero-shot")
    assert [len(s.example_ids) for s in run.shards.order_by("number")] == [4, 2]


def test_a_shard_is_claimed_by_one_worker_only(task: Task, nda_examples: list[Example]) -> None:
    shard = evaluation_run_create(task=task, mode="zero-shot").shards.get()
    first = shard_claim(shard_id=shard.pk, worker="w-a")
    assert first is not None and first.status == EvaluationShard.Status.RUNNING and first.lease_expires_at
    assert shard_claim(shard_id=shard.pk, worker="w-b") is None
    assert EvaluationShard.objects.get(pk=shard.pk).worker == "w-a"


def test_the_database_refuses_a_running_shard_without_a_lease(task: Task, nda_examples: list[Example]) -> None:
    shard = evaluation_run_create(task=task, mode="zero-shot").shards.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        EvaluationShard.objects.filter(pk=shard.pk).update(status=EvaluationShard.Status.RUNNING)


def test_the_database_refuses_a_second_decision_on_an_example(task: Task, nda_examples: list[Example]) -> None:
    run = evaluation_run_create(task=task, mode="zero-shot")
    fields = {"run": run, "example": nda_examples[0], "label": "Entailment", "correct": True, "latency_ms": 1.0}
    Prediction.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Prediction.objects.create(**{**fields, "label": "Contradiction", "correct": False})


def test_a_dead_workers_shard_is_queued_again_and_the_run_page_says_so(
    task: Task, nda_examples: list[Example], client: Any, reviewer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = evaluation_run_start(task=task, mode="zero-shot")
    shard = run.shards.get()
    first_task = shard_claim(shard_id=shard.pk, worker="w-a (host-1, pid 42)")
    DBTaskResult.objects.filter(id=shard.task_result_id).update(status="RUNNING")  # as the dead worker left it
    _expire(shard)
    run.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert watch_evaluation_run.call(run.pk, run.options["watch"]) == 1
    shard.refresh_from_db()
    assert shard.status == EvaluationShard.Status.QUEUED and shard.attempts == 1
    assert "Shard 1 was retried after worker w-a (host-1, pid 42) stopped responding" in shard.events[-1]["message"]
    # A new django-tasks task for the shard, the dead one recorded as failed, and the watch goes on.
    assert shard.task_result_id and DBTaskResult.objects.get(id=shard.task_result_id).status == "READY"
    assert DBTaskResult.objects.filter(task_path__endswith="run_evaluation_shard", status="FAILED").count() == 1
    assert DBTaskResult.objects.filter(task_path__endswith="watch_evaluation_run", status="READY").count() >= 1
    # The worker that was only slow finds out at its next heartbeat and stops.
    with pytest.raises(ShardLost):
        shard_heartbeat(shard=first_task)
    client.force_login(reviewer)
    body = client.get(run.get_absolute_url()).content.decode()
    assert "Shard 1 was retried after worker w-a (host-1, pid 42) stopped responding" in body


def _watches(run: EvaluationRun, status: str) -> list[DBTaskResult]:
    results = DBTaskResult.objects.filter(task_path__endswith="watch_evaluation_run", status=status)
    return [result for result in results if result.args_kwargs["args"][:2] == [run.pk, run.options["watch"]]]


def _run_watch(result: DBTaskResult, capture: Any) -> None:
    """Run a queued watch as db_worker does: claim it, call it, record it as successful."""
    result.claim("w-live")
    with capture(execute=True):
        value = watch_evaluation_run.call(*result.args_kwargs["args"])
    result.set_successful(value)


def test_a_worker_killed_holding_a_watch_does_not_end_the_watch(
    task: Task, nda_examples: list[Example], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = evaluation_run_start(task=task, mode="zero-shot")
    run.refresh_from_db()
    chains = run.options["watches"]
    assert sorted(chains) == ["0", "1"]
    assert {str(result.id) for result in _watches(run, "READY")} == set(chains.values())
    # A worker claims chain 0's watch and is killed before the watch queues its next one.
    killed = DBTaskResult.objects.get(id=chains["0"])
    killed.claim("w-dead")
    DBTaskResult.objects.filter(id=killed.id).update(started_at=timezone.now() - 2 * lease_length())
    # Chain 1's watch notices, records the dead watch as failed and starts chain 0 again.
    _run_watch(DBTaskResult.objects.get(id=chains["1"]), django_capture_on_commit_callbacks)
    killed.refresh_from_db()
    assert killed.status == "FAILED" and "WorkerLost" in killed.exception_class_path
    assert "stopped with its worker" in killed.traceback
    run.refresh_from_db()
    pending = _watches(run, "READY")
    assert {str(result.id) for result in pending} == set(run.options["watches"].values())
    assert sorted(result.args_kwargs["args"][2] for result in pending) == [0, 1]
    # A chain whose watch is only waiting for a free worker is left alone: no second copy of it.
    _run_watch(DBTaskResult.objects.get(id=run.options["watches"]["1"]), django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert sorted(result.args_kwargs["args"][2] for result in _watches(run, "READY")) == [0, 1]


def test_a_watch_from_an_earlier_start_stops(task: Task, nda_examples: list[Example]) -> None:
    run = evaluation_run_start(task=task, mode="zero-shot")
    assert watch_evaluation_run.call(run.pk, "an-older-token") == 0


def test_cancel_stops_queued_shards_at_once_and_running_ones_at_their_next_example(
    task: Task, nda_examples: list[Example], settings: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 2
    run = evaluation_run_start(task=task, mode="zero-shot")
    running = shard_claim(shard_id=run.shards.get(number=1).pk, worker="w-a")
    evaluation_run_cancel(run=run)
    run.refresh_from_db()
    run.job.refresh_from_db()
    assert run.status == EvaluationRun.Status.CANCELLED and run.job.state == Job.State.CANCELLED
    assert set(run.shards.exclude(number=1).values_list("status", flat=True)) == {EvaluationShard.Status.CANCELLED}
    with pytest.raises(JobCancelled):
        ShardProgress(None, running).beat(force=True)


def test_resume_queues_every_unfinished_shard_as_its_own_task(
    task: Task, nda_examples: list[Example], settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 2
    run = evaluation_run_start(task=task, mode="zero-shot")
    EvaluationShard.objects.filter(run=run, number=1).update(status=EvaluationShard.Status.FINISHED)
    evaluation_run_cancel(run=run)
    with django_capture_on_commit_callbacks(execute=True):
        evaluation_run_resume(run=run)
    shards = {s.number: s for s in run.shards.all()}
    assert shards[1].status == EvaluationShard.Status.FINISHED
    assert {shards[n].status for n in (2, 3)} == {EvaluationShard.Status.QUEUED}
    tasks = DBTaskResult.objects.filter(task_path__endswith="run_evaluation_shard")
    assert sorted(t.args_kwargs["args"][0] for t in tasks) == sorted([shards[2].pk, shards[3].pk])
    assert "resumed the run" in shards[2].events[-1]["message"]


def test_a_run_with_a_live_lease_cannot_be_resumed(task: Task, nda_examples: list[Example]) -> None:
    run = evaluation_run_create(task=task, mode="zero-shot")
    shard_claim(shard_id=run.shards.get().pk, worker="w-a")
    EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationRun.Status.FAILED)
    run.refresh_from_db()
    with pytest.raises(ValidationError, match="still running"):
        evaluation_run_resume(run=run)


def test_metrics_do_not_depend_on_the_order_decisions_were_stored_in(task: Task, nda_examples: list[Example]) -> None:
    runs = [evaluation_run_create(task=task, mode="zero-shot") for _ in range(2)]
    labels = ["Entailment", "Entailment", "Contradiction", "NotMentioned", "Entailment", "Contradiction"]
    decided = list(zip(nda_examples, labels, strict=True))
    for run, order in ((runs[0], decided), (runs[1], decided[::-1])):
        for example, label in order:
            Prediction.objects.create(run=run, example=example, label=label, correct=label == example.gold_label,
                                      latency_ms=1.0)
    a, b = (evaluation_run_finish(run=run) for run in runs)
    assert _quality(a) == _quality(b)


# --- with the model (SQLite or PostgreSQL) ----------------------------------------------------


@pytest.mark.slow
def test_a_run_in_several_shards_decides_like_a_run_in_one(
    task: Task, nda_examples: list[Example], student_settings: Student, settings: Any
) -> None:
    one = evaluation_run_execute(run=evaluation_run_create(task=task, mode="zero-shot"))
    settings.PLD_SHARD_EXAMPLES = 2
    three = evaluation_run_execute(run=evaluation_run_create(task=task, mode="zero-shot"))
    assert one.shards.count() == 1 and three.shards.count() == 3
    assert three.status == EvaluationRun.Status.FINISHED
    assert set(three.shards.values_list("status", flat=True)) == {EvaluationShard.Status.FINISHED}
    assert _labels(three) == _labels(one) and _quality(three) == _quality(one)


@pytest.mark.slow
def test_a_shard_taken_back_from_a_dead_worker_is_decided_by_the_next_who_finishes_the_run(
    task: Task, nda_examples: list[Example], student_settings: Student, settings: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 3
    run = evaluation_run_start(task=task, mode="zero-shot")
    first, second = run.shards.order_by("number")
    assert evaluation_shard_execute(shard_id=first.pk, worker="w-a") is not None
    _expire(shard_claim(shard_id=second.pk, worker="w-b"))  # w-b took the last shard, then died
    run.refresh_from_db()
    assert watch_evaluation_run.call(run.pk, run.options["watch"]) == 1
    assert evaluation_shard_execute(shard_id=second.pk, worker="w-c") is not None
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.FINISHED and run.metrics["n"] == len(nda_examples)
    assert run.predictions.count() == len(nda_examples)
    assert EvaluationShard.objects.get(pk=second.pk).worker == "w-c"


# --- real db_worker processes on PostgreSQL ---------------------------------------------------

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="several db_worker processes need PostgreSQL (scripts/test-postgres)"
)
LEASE_SECONDS = 3


def _many_examples(task: Task, copies: int) -> list[Example]:
    rows = [(premise, f"{hypothesis} (case {n})", label) for n in range(copies)
            for premise, hypothesis, label in NDA_ROWS]
    return add_examples(task, rows)


def _worker(name: str) -> subprocess.Popen:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "PLD_STUDENT_THREADS": "1",
        "PLD_SHARD_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.2",
         "--worker-id", name],
        cwd=Path(settings.BASE_DIR), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _wait(condition: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        time.sleep(0.05)


def _stop(*workers: subprocess.Popen) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _status(run: EvaluationRun) -> str:
    return EvaluationRun.objects.filter(pk=run.pk).values_list("status", flat=True).get()


def _one_worker_reference(task: Task, settings: Any) -> EvaluationRun:
    # The same run decided in this process with the workers' thread count: the figures to match.
    settings.PLD_STUDENT_THREADS = 1
    return evaluation_run_execute(run=evaluation_run_create(task=task, mode="zero-shot"))


def _assert_complete_and_once(run: EvaluationRun) -> None:
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.FINISHED, run.error
    ids = list(run.predictions.values_list("example_id", flat=True))
    assert len(ids) == len(set(ids)) == run.n_examples
    assert set(ids) == set(run.options["example_ids"])
    assert set(run.shards.values_list("status", flat=True)) == {EvaluationShard.Status.FINISHED}
    run.job.refresh_from_db()
    assert run.job.state == Job.State.SUCCEEDED and run.job.result["run_id"] == run.pk


@pytest.mark.slow
@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_db_workers_finish_one_run_together(task: Task, settings: Any) -> None:
    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX
    _many_examples(task, 2)
    settings.PLD_SHARD_EXAMPLES = 2
    run = evaluation_run_start(task=task, mode="zero-shot")
    workers = [_worker("w-a"), _worker("w-b")]
    try:
        _wait(lambda: _status(run) not in {"queued", "running"}, timeout=300, what="the run to end")
    finally:
        _stop(*workers)
    _assert_complete_and_once(run)
    holders = {worker.split(" ")[0] for worker in run.shards.values_list("worker", flat=True)}
    assert holders == {"w-a", "w-b"}, "both workers should have decided shards"
    reference = _one_worker_reference(task, settings)
    assert _labels(run) == _labels(reference) and _quality(run) == _quality(reference)


@pytest.mark.slow
@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_shard_still_leaves_a_complete_correct_run(task: Task, settings: Any) -> None:
    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX
    _many_examples(task, 4)
    settings.PLD_SHARD_EXAMPLES = 12
    settings.PLD_SHARD_LEASE_SECONDS = LEASE_SECONDS  # the watch this process queues comes due as the workers'
    run = evaluation_run_start(task=task, mode="zero-shot")
    doomed = _worker("w-a")
    survivor = None
    try:
        def mid_shard() -> bool:
            shard = run.shards.filter(status=EvaluationShard.Status.RUNNING).first()
            return shard is not None and 2 <= run.predictions.filter(example_id__in=shard.example_ids).count() < 12

        _wait(mid_shard, timeout=300, what="w-a to be mid-shard")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        survivor = _worker("w-b")
        _wait(lambda: _status(run) not in {"queued", "running"}, timeout=300, what="the run to end")
    finally:
        _stop(doomed, *([survivor] if survivor else []))
    _assert_complete_and_once(run)
    events = [event["message"] for shard in run.shards.all() for event in shard.events]
    assert any("retried after worker w-a" in message and "stopped responding" in message for message in events), events
    assert set(run.shards.values_list("worker", flat=True)) != {""}
    reference = _one_worker_reference(task, settings)
    assert _labels(run) == _labels(reference) and _quality(run) == _quality(reference)
    # The killed worker's django-tasks result no longer claims to be running.
    assert not DBTaskResult.objects.filter(task_path__endswith="run_evaluation_shard", status="RUNNING").exists()
