"""Background job plumbing: the handler registry, start, run, report progress, cancel and retry.

A job's handler is a plain function ``handler(job, progress) -> dict | None`` registered under the
kind stored in ``Job.kind``. Each app registers all of its handlers in one place, its ``jobs.py``
(``rules/jobs.py``, ``evaluation/jobs.py``), which its AppConfig.ready imports. The web enqueues a job
through django-tasks (worker: ``manage.py db_worker``); management commands run the same handler in the
foreground through ``job_execute``. Handlers must skip work that is already stored so that a retry
resumes instead of repeating.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_tasks import task

from pldreview.models import Job

logger = logging.getLogger(__name__)

# A running job that has not reported for this long has lost its worker. Progress is written at
# least every step; the slowest step (a teacher call with retries) stays well below it.
STALE_AFTER = timedelta(minutes=15)


class JobCancelled(Exception):
    """Raised inside a handler when someone asked the job to stop."""


class JobProgress:
    """What a handler uses to report progress; also where it learns it was cancelled."""

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
    progress = JobProgress(job)
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
    job.state = Job.State.QUEUED
    job.cancel_requested = False
    job.message = "Queued again; resuming from stored work."
    job.save()
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
