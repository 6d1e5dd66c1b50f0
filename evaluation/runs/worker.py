"""What the django-tasks workers run for an evaluation run: one task per shard, and the watch that takes back
the shards of a worker that stopped responding.

Queued tasks are stored by the dotted path of their function (``DBTaskResult.task_path``): moving one of the
functions below needs a data migration that rewrites the stored paths, as
evaluation/migrations/0021_task_paths_moved.py does.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_tasks import TaskContext, task
from django_tasks_db.models import DBTaskResult

from evaluation.models import EvaluationRun, EvaluationShard
from evaluation.runs.execution import LIVE, evaluation_shard_execute, run_job_result
from evaluation.runs.shards import lease_length, shards_reclaim, task_result_abandon, worker_label
from pldreview.jobs import CountedJobProgress, JobCancelled, job_begin, job_end
from pldreview.models import Job

logger = logging.getLogger(__name__)

CANCELLED_MESSAGE = "Cancelled; resume the run to continue where it stopped."


def evaluation_run_queue(*, run: EvaluationRun) -> None:
    """Queue every queued shard as its own task, and the run's watch, once the transaction commits."""
    token = uuid.uuid4().hex
    _run_options_set(run, watch=token)
    shards = list(run.shards.filter(status=EvaluationShard.Status.QUEUED).order_by("number"))

    def enqueue() -> None:
        _enqueue_shards(shards)
        for chain in WATCH_CHAINS:
            _watch_later(run.pk, token, chain)

    transaction.on_commit(enqueue)


def _run_options_set(run: EvaluationRun, **values: Any) -> None:
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        locked.options = {**locked.options, **values}
        locked.save(update_fields=["options"])
    run.options = locked.options


def _enqueue_shards(shards: Iterable[EvaluationShard]) -> None:
    for shard in shards:
        result = run_evaluation_shard.enqueue(shard.pk)
        EvaluationShard.objects.filter(pk=shard.pk).update(task_result_id=str(result.id))


# Two watches a run, each queueing its own next one and starting the other's again when it fell silent:
# a worker killed after claiming a watch and before queueing its successor ends one chain, not the watch.
WATCH_CHAINS = (0, 1)


def _watch_later(run_id: int, token: str, chain: int) -> None:
    """Queue the chain's next watch and note it on the run, in one transaction (the other chain checks on it)."""
    # A deferred django-tasks task (run_after): whichever worker is free when it is due runs it. The
    # chains interleave, so one of them comes due every quarter lease.
    due = timezone.now() + lease_length() * (0.5 if chain == 0 else 0.75)
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.options.get("watch") != token:
            return
        result = watch_evaluation_run.using(run_after=due).enqueue(run_id, token, chain)
        run.options = {**run.options, "watches": {**run.options.get("watches", {}), str(chain): str(result.id)}}
        run.save(update_fields=["options"])


def _watch_revive_silent(run: EvaluationRun, token: str, chain: int) -> None:
    """Start another chain again when its newest watch was claimed long ago and never finished (its worker died)."""
    stuck_since = timezone.now() - lease_length() / 2  # a watch takes milliseconds
    for other in WATCH_CHAINS:
        task_result_id = (run.options.get("watches") or {}).get(str(other))
        if other == chain or not task_result_id:
            continue
        if not DBTaskResult.objects.running().filter(id=task_result_id, started_at__lt=stuck_since).exists():
            continue  # queued, running now, or it went on
        message = f"Watch {other} of run {run.pk} stopped with its worker; watch {chain} started it again."
        logger.warning(message)
        task_result_abandon(task_result_id, message)
        _watch_later(run.pk, token, other)


def _run_job_progress(run: EvaluationRun) -> CountedJobProgress:
    return CountedJobProgress(run.job_id, count=run.predictions.count, total=run.n_examples)


@task(takes_context=True)
def run_evaluation_shard(context: TaskContext, shard_id: int) -> dict[str, Any] | None:
    """Decide one shard in this worker, and finish its run when it is the last; the django-tasks entry point."""
    shard = EvaluationShard.objects.select_related("run").filter(pk=shard_id).first()
    if shard is None:
        return None
    run = shard.run
    worker_ids = context.task_result.worker_ids
    job_begin(run.job_id, message=f"Evaluating {run.n_examples} examples in {run.shards.count()} shards")
    try:
        worker = worker_label(worker_ids[-1] if worker_ids else "")
        claimed = evaluation_shard_execute(shard_id=shard_id, worker=worker, progress=_run_job_progress(run))
    except JobCancelled:
        job_end(run.job_id, Job.State.CANCELLED, message=CANCELLED_MESSAGE)
        return {"run_id": run.pk, "shard": shard.number, "stopped": "cancelled"}
    except Exception as exc:
        job_end(run.job_id, Job.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    run.refresh_from_db()
    if run.status == EvaluationRun.Status.FINISHED:
        job_end(run.job_id, Job.State.SUCCEEDED, done=run.n_examples, total=run.n_examples,
                result=run_job_result(run), message="Finished")
    return {"run_id": run.pk, "shard": shard.number, "claimed": claimed is not None}


@task()
def watch_evaluation_run(run_id: int, token: str, chain: int = 0) -> int:
    """Queue again the run's shards whose worker stopped responding, while the run is live.

    Each of the run's two chains queues its next watch first (due in half a lease, or three quarters
    for chain 1) and starts the other chain again if that one's worker died holding its watch.
    """
    run = EvaluationRun.objects.filter(pk=run_id).first()
    if run is None or run.status not in LIVE or run.options.get("watch") != token:
        return 0  # over, or a later start or resume watches it now
    _watch_later(run_id, token, chain)  # first: a worker that dies below must not end the watch
    run.refresh_from_db(fields=["options"])
    _watch_revive_silent(run, token, chain)
    reclaimed = shards_reclaim(run=run)
    for shard in reclaimed:
        logger.warning(shard.events[-1]["message"])
        task_result_abandon(shard.task_result_id, shard.events[-1]["message"])
    _enqueue_shards(reclaimed)
    return len(reclaimed)


