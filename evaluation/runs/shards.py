"""Shards of a run: plan them, claim one under a lease, renew it, take back a dead worker's.

Evaluation runs (``EvaluationShard``) and rule impact runs (``RuleImpactShard``) share this code: every
function works on the run's ``shards`` and the shard's own model, so the two kinds lease alike.

A shard holds whole shared-context groups (all pairs of one ContractNLI document), so each document
is processed once. Claiming is a conditional UPDATE (queued → running) and the lease is a column:
django-tasks' database backend claims its task rows with ``SELECT … FOR UPDATE SKIP LOCKED`` but
leaves a task whose worker died marked running for ever (django-tasks issue #46), so the shard's
lease is what tells a dead worker from a slow one.
"""
from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from evaluation.models import EvaluationRun, EvaluationShard, LeasedShard, RuleImpactRun
from pldreview.jobs import JobCancelled, JobProgress
from rules.models import Example

# What a shard can belong to: both have ``options["example_ids"]``, ``status`` and ``shards``.
ShardedRun = EvaluationRun | RuleImpactRun
LIVE = {EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING}


class ShardLost(Exception):
    """Raised in a worker whose shard was taken back (its lease ran out) and given to another."""


def lease_length() -> timedelta:
    """Return how long a shard stays held without a heartbeat."""
    return timedelta(seconds=settings.PLD_SHARD_LEASE_SECONDS)


def worker_label(worker_id: str = "") -> str:
    """Name this process the way the run page shows it: the django-tasks worker id, host and pid."""
    where = f"{socket.gethostname()}, pid {os.getpid()}"
    return (f"{worker_id} ({where})" if worker_id else where)[:200]


def shards_plan(*, run: ShardedRun, size: int | None = None) -> list[Any]:
    """Cut the run's examples into shards of whole groups of about ``size`` examples (once per run)."""
    existing = list(run.shards.order_by("number"))
    if existing:
        return existing
    size = size or settings.PLD_SHARD_EXAMPLES
    model = run.shards.model
    slices = example_slices(run.options.get("example_ids", []), size)
    shards = [model(run=run, number=n, example_ids=chunk) for n, chunk in enumerate(slices, start=1)]
    for shard in shards:
        shard.full_clean(exclude=["run"])
    return model.objects.bulk_create(shards)


def example_slices(ids: list[int], size: int) -> list[list[int]]:
    """Cut example ids, in order, into slices of whole shared-context groups of about ``size`` examples."""
    keys = dict(Example.objects.filter(pk__in=ids).values_list("pk", "group_key"))
    groups: list[list[int]] = []
    previous = None
    for example_id in ids:
        key = keys.get(example_id) or f"#{example_id}"
        if key != previous:
            groups.append([])
            previous = key
        groups[-1].append(example_id)
    slices: list[list[int]] = []
    for group in groups:
        if not slices or len(slices[-1]) >= size:
            slices.append([])
        slices[-1].extend(group)
    return slices


def shard_claim(*, shard_id: int, worker: str, model: type[LeasedShard] = EvaluationShard) -> Any:
    """Take a queued shard under a fresh lease; return None when it is not queued (someone has it, or done)."""
    now = timezone.now()
    claimed = model.objects.filter(pk=shard_id, status=model.Status.QUEUED).update(  # type: ignore[attr-defined]
        status=model.Status.RUNNING, worker=worker, attempts=F("attempts") + 1,
        lease_expires_at=now + lease_length(), started_at=now, finished_at=None,
    )
    return model.objects.get(pk=shard_id) if claimed else None  # type: ignore[attr-defined]


def _held(shard: Any) -> Any:
    # The same worker and attempt: a shard taken back and claimed again is no longer this holder's.
    return type(shard).objects.filter(
        pk=shard.pk, status=LeasedShard.Status.RUNNING, worker=shard.worker, attempts=shard.attempts
    )


def shard_heartbeat(*, shard: Any) -> str:
    """Renew the shard's lease and return its run's status; raise ShardLost if another worker has it now."""
    if not _held(shard).update(lease_expires_at=timezone.now() + lease_length()):
        raise ShardLost(f"Shard {shard.number} of run {shard.run_id} was taken back from {shard.worker}")
    run_model = type(shard)._meta.get_field("run").related_model
    return run_model.objects.filter(pk=shard.run_id).values_list("status", flat=True).get()


def shard_release(*, shard: Any, status: str, event: str = "", message: str = "") -> bool:
    """End this worker's hold on the shard with ``status``; return False if it no longer held it."""
    with transaction.atomic():
        held = _held(shard).select_for_update().first()
        if held is None:
            return False
        held.status = status
        held.lease_expires_at = None
        held.finished_at = timezone.now()
        if event:
            held.events = [*held.events, _event(event, message)]
        held.save(update_fields=["status", "lease_expires_at", "finished_at", "events"])
    return True


def shards_reclaim(*, run: ShardedRun) -> list[Any]:
    """Queue again every running shard of the run whose lease ran out, saying which worker stopped responding."""
    now = timezone.now()
    reclaimed = []
    with transaction.atomic():
        expired = run.shards.select_for_update(skip_locked=True).filter(
            status=LeasedShard.Status.RUNNING, lease_expires_at__lt=now
        )
        for shard in expired:
            silent_since = shard.lease_expires_at - lease_length()
            message = (
                f"Shard {shard.number} was retried after worker {shard.worker} stopped responding "
                f"(last heartbeat {silent_since:%Y-%m-%d %H:%M:%S} UTC, attempt {shard.attempts})."
            )
            shard.status = LeasedShard.Status.QUEUED
            shard.lease_expires_at = None
            shard.events = [*shard.events, _event("retried", message)]
            shard.save(update_fields=["status", "lease_expires_at", "events"])
            reclaimed.append(shard)
    return reclaimed


def shards_requeue(*, run: ShardedRun, message: str) -> list[Any]:
    """Queue again the run's shards that are not finished and not held under a live lease (resume)."""
    shards = list(
        run.shards.exclude(status=LeasedShard.Status.FINISHED)
        .exclude(status=LeasedShard.Status.RUNNING, lease_expires_at__gte=timezone.now())
        .exclude(status=LeasedShard.Status.QUEUED)
    )
    for shard in shards:
        shard.status = LeasedShard.Status.QUEUED
        shard.lease_expires_at = None
        shard.events = [*shard.events, _event("requeued", message)]
        shard.save(update_fields=["status", "lease_expires_at", "events"])
    return list(run.shards.filter(status=LeasedShard.Status.QUEUED).order_by("number"))


def shards_live(run: ShardedRun) -> bool:
    """Say whether a worker holds one of the run's shards under a lease that has not run out."""
    return run.shards.filter(status=LeasedShard.Status.RUNNING, lease_expires_at__gte=timezone.now()).exists()


def shards_summary(run: ShardedRun) -> dict[str, Any]:
    """Return what the run page says about the shards: counts by status, who holds which, what happened."""
    shards = list(run.shards.order_by("number"))
    counts = {status: 0 for status in LeasedShard.Status.values}
    for shard in shards:
        counts[shard.status] += 1
    return {
        "total": len(shards),
        "counts": counts,
        "running": [s for s in shards if s.status == LeasedShard.Status.RUNNING],
        "events": sorted((event for s in shards for event in s.events), key=lambda e: e["at"]),
    }


class ShardProgress:
    """Passes progress on and renews the shard's lease; stops the shard when its run was cancelled or failed."""

    def __init__(self, inner: JobProgress, shard: LeasedShard) -> None:
        self.inner = inner
        self.shard = shard
        self._last_beat = time.monotonic()
        # Several beats per lease, so one slow decision does not lose it.
        self.interval = min(1.0, settings.PLD_SHARD_LEASE_SECONDS / 4)

    def set_total(self, total: int, message: str = "") -> None:
        self.inner.set_total(total, message)

    def set_done(self, done: int, message: str = "") -> None:
        self.inner.set_done(done, message)

    def advance(self, steps: int = 1, message: str = "") -> None:
        self.inner.advance(steps, message)
        self.beat()

    def note(self, message: str) -> None:
        self.inner.note(message)
        self.beat(force=True)

    def beat(self, *, force: bool = False) -> None:
        """Renew the lease (at most once a second); raise JobCancelled once the run is no longer live."""
        if not force and time.monotonic() - self._last_beat < self.interval:
            return
        self._last_beat = time.monotonic()
        status = shard_heartbeat(shard=self.shard)
        if status not in LIVE:
            raise JobCancelled(f"the run is {status}")


class WorkerLost(Exception):
    """Recorded on a django-tasks result whose worker stopped responding (its shard was queued again)."""


def task_result_abandon(task_result_id: str, message: str) -> None:
    """Record a dead worker's django-tasks result as failed (the database backend leaves it running for ever)."""
    from django_tasks_db.models import DBTaskResult

    if not task_result_id:
        return
    result = DBTaskResult.objects.running().filter(id=task_result_id).first()
    if result is not None:
        result.set_failed(WorkerLost(message))


def _event(event: str, message: str) -> dict[str, str]:
    return {"at": timezone.now().isoformat(timespec="seconds"), "event": event, "message": message}
