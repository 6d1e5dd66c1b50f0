"""Background job plumbing: the handler registry, start, run, report progress, cancel and retry.

A job's handler is a plain function ``handler(job, progress) -> dict | None`` registered under the
kind stored in ``Job.kind``; ``progress`` follows the ``JobProgress`` protocol. Each app registers all of
its handlers in one place, its ``jobs.py`` (``rules/jobs.py``, ``evaluation/jobs.py``), which its
AppConfig.ready imports. The web enqueues a job through django-tasks (worker: ``manage.py db_worker``);
management commands run the same handler in the foreground through ``job_execute``. Handlers must skip
work that is already stored so that a retry resumes instead of repeating.

A job's state is written here and nowhere else. Work that runs outside ``job_execute`` (an evaluation
run's shards, each its own django-tasks task) moves its job through ``job_begin``, ``job_progress_record``,
``job_end``, ``job_stop_request`` and ``job_requeue``.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django_tasks import task

from pldreview.models import Job

logger = logging.getLogger(__name__)

# A running job that has not reported for this long has lost its worker. Progress is written at
# least every step; the slowest step (a teacher call with retries) stays well below it.
STALE_AFTER = timedelta(minutes=15)


class JobCancelled(Exception):
    """Raised inside a handler when someone asked the job to stop."""


class JobProgress(Protocol):
    """What long work reports its progress to: a job's recorder, an adapter that passes it on, or nothing."""

    def set_total(self, total: int, message: str = "") -> None:
        """Declare how many steps the work has."""

    def set_done(self, done: int, message: str = "") -> None:
        """Record how many steps are done."""

    def advance(self, steps: int = 1, message: str = "") -> None:
        """Count steps as done; may raise JobCancelled."""

    def note(self, message: str) -> None:
        """Show a message without changing the count."""


class NoProgress:
    """Stands in for a JobProgress when work runs without a job to report to."""

    def set_total(self, total: int, message: str = "") -> None: ...
    def set_done(self, done: int, message: str = "") -> None: ...
    def advance(self, steps: int = 1, message: str = "") -> None: ...
    def note(self, message: str) -> None: ...


class CountedJobProgress:
    """The JobProgress of a job several workers share (one a shard): the stored count of work done, written at most
    once a second, so every worker's progress shows and none overwrites another's count with its own."""

    MIN_INTERVAL_SECONDS = 1.0

    def __init__(self, job_id: int | None, *, count: Callable[[], int], total: int) -> None:
        self.job_id = job_id
        self.count = count
        self.total = total
        self._last_write = 0.0

    def set_total(self, total: int, message: str = "") -> None: ...
    def set_done(self, done: int, message: str = "") -> None: ...

    def advance(self, steps: int = 1, message: str = "") -> None:
        if time.monotonic() - self._last_write >= self.MIN_INTERVAL_SECONDS:
            self._write()

    def note(self, message: str) -> None:
        self._write(message)

    def _write(self, message: str | None = None) -> None:
        self._last_write = time.monotonic()
        job_progress_record(self.job_id, done=self.count(), total=self.total, message=message)


class JobProgressRecorder:
    """The JobProgress of a job run by ``job_execute``: writes it on the job; also where it learns it was cancelled."""

    # Writing progress on every example would make a fast loop database-bound.
    MIN_INTERVAL_SECONDS = 0.5

    def __init__(self, job: Job) -> None:
        self.job = job
        self._last_write = 0.0

    def set_total(self, total: int, message: str = "") -> None:
        """Declare how many steps the job has."""
        self.job.total = total
        # A resumed job may count fewer steps than it had done (the database refuses done > total).
        self.job.done = min(self.job.done, total) if total else self.job.done
        if message:
            self.job.message = message[:500]
        self._save(force=True)

    def set_done(self, done: int, message: str = "") -> None:
        """Record how many steps are done (e.g. after resuming with stored work)."""
        self.job.done = min(done, self.job.total) if self.job.total else done
        if message:
            self.job.message = message[:500]
        self._save(force=bool(message))

    def advance(self, steps: int = 1, message: str = "") -> None:
        """Count steps as done; raise JobCancelled if someone asked the job to stop."""
        self.set_done(self.job.done + steps, message)

    def note(self, message: str) -> None:
        """Show a message without changing the count."""
        self.job.message = message[:500]
        self._save(force=True)

    def _save(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.MIN_INTERVAL_SECONDS:
            return
        self._last_write = now
        Job.objects.filter(pk=self.job.pk).update(
            done=self.job.done, total=self.job.total, message=self.job.message, updated_at=timezone.now()
        )
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled(f"Job {self.job.pk} was cancelled")


Handler = Callable[[Job, JobProgress], "dict[str, Any] | None"]

FINISHED_STATES = (Job.State.SUCCEEDED, Job.State.FAILED, Job.State.CANCELLED)

_HANDLERS: dict[str, Handler] = {}


JobScope = Callable[[QuerySet[Job], Any], QuerySet[Job]]
_JOB_SCOPES: list[JobScope] = []


def job_scope_register(scope: JobScope) -> None:
    """Register a filter that leaves out the jobs of tasks a user may not see (rules and evaluation call it).

    pldreview knows no tasks: each app that puts a task's object into a job's params says which jobs are whose.
    """
    if scope not in _JOB_SCOPES:
        _JOB_SCOPES.append(scope)


def jobs_visible_to(jobs: QuerySet[Job], user: Any) -> QuerySet[Job]:
    """Return the jobs the user may see: every registered scope applied (need-to-know, docs/security.md)."""
    for scope in _JOB_SCOPES:
        jobs = scope(jobs, user)
    return jobs


class UnknownJobKind(LookupError):
    """Raised for a job kind no app has registered a handler for."""


def job_handlers_register(handlers: Mapping[str, Handler]) -> None:
    """Register job handlers by kind; each app calls it once, from its jobs.py."""
    for kind, handler in handlers.items():
        # Kinds are stored in Job rows: one kind must always mean the same handler.
        if _HANDLERS.setdefault(kind, handler) is not handler:
            raise ImproperlyConfigured(f"Two handlers registered for job kind {kind!r}")


def job_handler(kind: str) -> Handler:
    """Return the handler registered for a job kind, or raise UnknownJobKind."""
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise UnknownJobKind(
            f"No handler for job kind {kind!r}: register it in its app's jobs.py with job_handlers_register"
        ) from None


def job_create(*, kind: str, title: str, params: dict[str, Any], user: Any = None) -> Job:
    """Create a queued job record without enqueueing it (commands then call job_execute)."""
    job_handler(kind)  # fail now, not in the worker, if the handler does not exist
    job = Job(kind=kind, title=title[:200], params=params, created_by=user if user and user.pk else None)
    job.full_clean()
    job.save()
    return job


def job_start(*, kind: str, title: str, params: dict[str, Any], user: Any = None) -> Job:
    """Create a job and hand it to the background worker once the transaction commits."""
    job = job_create(kind=kind, title=title, params=params, user=user)
    transaction.on_commit(lambda: _enqueue(job))
    return job


def job_execute_for_command(command: BaseCommand, *, kind: str, title: str, params: dict[str, Any]) -> Job:
    """Run a job in the foreground for a management command; turn a failed job into a CommandError."""
    job = job_execute(job_create(kind=kind, title=title, params=params).pk)
    if job.state != Job.State.SUCCEEDED:
        raise CommandError(f"Job {job.pk} {job.state}: {job.error or job.message} (run the command again to resume)")
    command.stdout.write(job.result.get("message", ""))
    if job.result.get("stopped"):
        command.stdout.write(command.style.WARNING(f"Stopped early: {job.result['stopped']}"))
    return job


def job_start_from_form(*, form: Any, kind: str, title: str, params: dict[str, Any], user: Any = None) -> Job | None:
    """Start a job with the form's filled-in values added to ``params``; return None when the form has errors."""
    if not form.is_valid():
        return None
    # Blank optional fields stay out, so the handler falls back to its settings instead of an empty value.
    filled = {name: value for name, value in form.cleaned_data.items() if value is not None and value != ""}
    return job_start(kind=kind, title=title, params={**params, **filled}, user=user)


def _enqueue(job: Job) -> None:
    result = run_job.enqueue(job.pk)
    Job.objects.filter(pk=job.pk).update(task_result_id=str(result.id))


def job_execute(job_id: int) -> Job:
    """Run a job's handler now, in this process, recording state, result and any error."""
    job = Job.objects.get(pk=job_id)
    if job.state in {Job.State.SUCCEEDED, Job.State.RUNNING}:
        logger.info("Job %s is %s; not running it again", job.pk, job.state)
        return job
    handler = job_handler(job.kind)
    job.state = Job.State.RUNNING
    job.started_at = timezone.now()
    job.finished_at = None
    job.error = ""
    job.attempts += 1
    job.worker_host, job.worker_pid = socket.gethostname(), os.getpid()
    job.save(update_fields=[
        "state", "started_at", "finished_at", "error", "attempts", "worker_host", "worker_pid", "updated_at",
    ])
    progress = JobProgressRecorder(job)
    try:
        result = handler(job, progress)
    except JobCancelled:
        job.state = Job.State.CANCELLED
        job.message = "Cancelled; retry to resume where it stopped."
    except Exception as exc:  # the job record is where the failure is reported
        logger.exception("Job %s failed", job.pk)
        job.state = Job.State.FAILED
        job.error = f"{type(exc).__name__}: {exc}"
        job.result = {**job.result, "traceback": traceback.format_exc()[-4000:]}
    else:
        job.state = Job.State.SUCCEEDED
        job.result = result or {}
        if job.total and job.done < job.total:
            job.done = job.total
    job.finished_at = timezone.now()
    job.cancel_requested = False
    job.save()
    return job


def job_begin(job_id: int | None, *, message: str = "") -> bool:
    """Mark a queued job running and count an attempt; return False when it was not queued.

    Several workers may begin the same job at once (one a shard): the first one moves it, the others find it
    running already.
    """
    now = timezone.now()
    return bool(Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, started_at=now, attempts=F("attempts") + 1, updated_at=now, message=message[:500],
    ))


def job_progress_record(job_id: int | None, *, done: int, total: int, message: str | None = None) -> None:
    """Write how far a running job got (done of total, and a message when given); a job that ended keeps its count."""
    fields: dict[str, Any] = {"done": min(done, total) if total else done, "total": total}
    if message is not None:
        fields["message"] = message[:500]
    Job.objects.filter(pk=job_id, state=Job.State.RUNNING).update(updated_at=timezone.now(), **fields)


def job_end(
    job_id: int | None, state: str, *, from_states: tuple[str, ...] | None = None, message: str | None = None,
    error: str | None = None, result: dict[str, Any] | None = None, done: int | None = None, total: int | None = None,
) -> bool:
    """Record how a job ended unless it has ended already (or is not in ``from_states``); return whether it did.

    A conditional update, so that of several workers finishing one job only the first one's ending counts.
    """
    if state not in FINISHED_STATES:
        raise ValueError(f"{state!r} is not a state a job ends in")
    given = {"message": message, "error": error, "result": result, "done": done, "total": total}
    fields = {name: value for name, value in given.items() if value is not None}
    if "message" in fields:
        fields["message"] = fields["message"][:500]
    jobs = Job.objects.filter(pk=job_id).exclude(state__in=FINISHED_STATES)
    if from_states is not None:
        jobs = jobs.filter(state__in=from_states)
    now = timezone.now()
    return bool(jobs.update(state=state, finished_at=now, updated_at=now, **fields))


def job_stop_request(job_id: int | None) -> None:
    """Ask a job's handler to stop at its next progress report (JobProgressRecorder raises JobCancelled)."""
    Job.objects.filter(pk=job_id).update(cancel_requested=True)


def job_requeue(job: Job, *, message: str = "Queued again; resuming from stored work.") -> Job:
    """Put a job back in the queue without enqueueing it: its caller queues the work (``job_retry`` does both)."""
    job.state = Job.State.QUEUED
    job.cancel_requested = False
    job.finished_at = None
    job.message = message[:500]
    job.save()
    return job


def job_cancel(*, job: Job, silent_for: timedelta = STALE_AFTER) -> Job:
    """Ask a queued or running job to stop at its next progress report.

    A job that has lost its worker (``Job.lost_its_worker``, with ``silent_for``) is cancelled at once.
    """
    if job.is_finished:
        return job
    if job.state == Job.State.QUEUED:
        job.state = Job.State.CANCELLED
        job.finished_at = timezone.now()
        job.message = "Cancelled before it started."
        job.save()
        return job
    if job.lost_its_worker(silent_for=silent_for):
        # Nobody is running it any more (the worker was stopped mid-job): nothing would ever act on
        # the request, so end it here and let a retry resume it.
        job.state = Job.State.CANCELLED
        job.finished_at = timezone.now()
        job.message = "The worker stopped (it was probably restarted); retry to resume."
        job.save()
        return job
    job.cancel_requested = True
    job.save(update_fields=["cancel_requested", "updated_at"])
    return job


def job_retry(*, job: Job) -> Job:
    """Queue a failed or cancelled job again; its handler resumes from what is stored."""
    if not job.can_retry:
        raise ValueError(f"Job {job.pk} is {job.state}; only failed or cancelled jobs can be retried")
    job_requeue(job)
    transaction.on_commit(lambda: _enqueue(job))
    return job


@task()
def run_job(job_id: int) -> None:
    """The django-tasks entry point the worker calls; a job cancelled while queued is not run."""
    state = Job.objects.filter(pk=job_id).values_list("state", flat=True).first()
    if state != Job.State.QUEUED:
        logger.info("Job %s is %s, not queued; the worker skips it", job_id, state)
        return
    job_execute(job_id)
