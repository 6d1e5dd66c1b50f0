"""Job lifecycle: run, fail, retry that resumes, cancel; the real worker; the live progress page."""
from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from pldreview.jobs import (
    STALE_AFTER,
    UnknownJobKind,
    job_cancel,
    job_create,
    job_execute,
    job_handler,
    job_handlers_register,
    job_retry,
    job_start,
    run_job,
)
from pldreview.models import Job
from tests.support.processes import dead_pid
from tests.support.shared_database import shared_database

pytestmark = pytest.mark.django_db
HANDLER = "tests.pldreview.handlers.count_to"


def _job(tmp_path: Path, **params) -> Job:
    return job_create(kind=HANDLER, title="Count to four", params={"n": 4, "dir": str(tmp_path), **params})


def test_a_job_runs_to_success_with_its_progress_and_result(tmp_path, admin_user) -> None:
    job = job_create(kind=HANDLER, title="Count", params={"n": 4, "dir": str(tmp_path)}, user=admin_user)
    assert job.state == Job.State.QUEUED and job.created_by == admin_user
    job = job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert (job.done, job.total, job.percent) == (4, 4, 100)
    assert job.result == {"counted": 4, "url": "/tasks/"}
    assert job.attempts == 1 and job.started_at <= job.finished_at and job.error == ""


def test_an_unknown_handler_is_refused_when_the_job_is_created() -> None:
    with pytest.raises(UnknownJobKind):
        job_create(kind="tests.pldreview.handlers.no_such_handler", title="x", params={})


def test_every_kind_the_apps_start_has_a_registered_handler() -> None:
    for kind in ("extract", "cluster", "evaluation_run", "refine", "report", "student_state_save",
                 "rule_impact", "decision_explain"):
        assert callable(job_handler(kind)), kind


def test_every_kind_ever_stored_resolves_after_the_short_kinds_migration() -> None:
    # A row written under an old dotted kind is rewritten by the migration to a kind that still has a handler.
    migration = importlib.import_module("pldreview.migrations.0014_short_job_kinds")
    for old, new in migration.KIND_RENAMES.items():
        job = Job.objects.create(kind=old, title=old, params={})
        migration.kinds_shorten(django_apps, schema_editor=None)
        job.refresh_from_db()
        assert job.kind == new
        assert callable(job_handler(job.kind)), old


def test_the_short_kinds_migration_can_be_undone() -> None:
    migration = importlib.import_module("pldreview.migrations.0014_short_job_kinds")
    job = Job.objects.create(kind="report", title="x", params={})
    migration.kinds_lengthen(django_apps, schema_editor=None)
    job.refresh_from_db()
    assert job.kind == "evaluation.report_jobs.generate_report"


def test_a_second_handler_for_a_registered_kind_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured):
        job_handlers_register({HANDLER: lambda job, progress: None})


def test_a_failure_is_recorded_with_the_error_and_how_far_it_got(tmp_path) -> None:
    job = job_execute(_job(tmp_path, fail_at=2).pk)
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and job.can_retry
    assert job.error == "RuntimeError: step 2 broke"
    assert "Traceback" in job.result["traceback"]
    assert job.done == 2 and job.finished_at is not None


def test_a_retry_resumes_where_the_job_stopped(tmp_path, django_capture_on_commit_callbacks) -> None:
    job = job_execute(_job(tmp_path, fail_at=2).pk)
    with django_capture_on_commit_callbacks() as callbacks:
        job_retry(job=job)
    assert len(callbacks) == 1  # handed to the worker once the transaction commits
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and "resuming" in job.message.lower()
    job = job_execute(job.pk)
    assert job.state == Job.State.SUCCEEDED and job.attempts == 2
    # Steps 0 and 1 were stored by the first attempt and not repeated by the second.
    assert [(tmp_path / str(step)).read_text() for step in range(4)] == ["1", "1", "2", "2"]


def test_only_failed_or_cancelled_jobs_can_be_retried(tmp_path) -> None:
    job = job_execute(_job(tmp_path).pk)
    with pytest.raises(ValueError, match="only failed or cancelled jobs can be retried"):
        job_retry(job=job)


def test_a_queued_job_cancelled_before_it_starts_is_never_run(tmp_path) -> None:
    job = job_cancel(job=_job(tmp_path))
    assert job.state == Job.State.CANCELLED and job.finished_at is not None
    run_job.call(job.pk)  # what the worker does with the task enqueued before the cancel
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and job.attempts == 0
    assert not list(tmp_path.glob("[0-9]*"))


def test_a_running_job_stops_at_its_next_step_when_cancelled_and_a_retry_finishes_it(tmp_path) -> None:
    job = job_execute(_job(tmp_path, cancel_at=1).pk)
    assert job.state == Job.State.CANCELLED and not job.cancel_requested
    assert "retry to resume" in job.message
    stored = sorted(p.name for p in tmp_path.glob("[0-9]*"))
    assert stored == ["0", "1"]
    job.params = {**job.params, "cancel_at": None}
    job.save()
    job_retry(job=job)
    job = job_execute(job.pk)
    assert job.state == Job.State.SUCCEEDED and job.done == 4


def test_cancelling_a_finished_job_changes_nothing(tmp_path) -> None:
    job = job_execute(_job(tmp_path).pk)
    assert job_cancel(job=job).state == Job.State.SUCCEEDED


# --- the real worker --------------------------------------------------------------------------

_ENQUEUE = """
import django
django.setup()
from django.db import transaction
from pldreview.jobs import job_start
with transaction.atomic():
    job = job_start(kind="tests.pldreview.handlers.count_to", title="Worker", params={"n": 3, "dir": %r})
print(job.pk)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_db_worker_runs_an_enqueued_job(tmp_path) -> None:
    database_url, read = shared_database(tmp_path)  # the migrated test database, as a file on SQLite
    steps = tmp_path / "steps"
    steps.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
    }
    base = Path(settings.BASE_DIR)
    enqueue = subprocess.run(
        [sys.executable, "-c", _ENQUEUE % str(steps)], cwd=base, env=env, capture_output=True, text=True, timeout=300
    )
    assert enqueue.returncode == 0, enqueue.stderr
    job_id = int(enqueue.stdout.strip().splitlines()[-1])
    worker = subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay"],
        cwd=base, env=env, capture_output=True, text=True, timeout=300,
    )
    assert worker.returncode == 0, worker.stderr
    [(state, done, total, task_result_id)] = read(
        f"SELECT state, done, total, task_result_id FROM pldreview_job WHERE id = {job_id}"
    )
    assert (state, done, total) == ("succeeded", 3, 3)
    assert task_result_id  # the django-tasks result the job was enqueued as
    assert sorted(p.name for p in steps.iterdir()) == ["0", "1", "2"]


def test_job_start_enqueues_through_django_tasks_after_commit(tmp_path, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = job_start(kind=HANDLER, title="Count", params={"n": 1, "dir": str(tmp_path)})
    job.refresh_from_db()
    assert job.task_result_id and job.state == Job.State.QUEUED


# --- the job page -----------------------------------------------------------------------------

def test_the_job_page_shows_progress_and_polls_while_running(client, reviewer, tmp_path) -> None:
    job = _job(tmp_path)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, done=1, total=4, message="Step 1 of 4")
    client.force_login(reviewer)
    response = client.get(f"/jobs/{job.pk}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert '<progress max="100" value="25"' in body and "1 of 4 done (25%)" in body and "Step 1 of 4" in body
    assert 'hx-trigger="every 1s"' in body
    assert "Cancel" not in body  # reviewers may watch but not cancel


def test_the_htmx_poll_returns_the_progress_fragment_without_the_page_shell(client, reviewer, tmp_path) -> None:
    job = _job(tmp_path)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, done=3, total=4)
    client.force_login(reviewer)
    response = client.get(f"/jobs/{job.pk}/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="job-progress"' in body and "3 of 4 done" in body
    assert "<html" not in body and "site-header" not in body


def test_the_poll_stops_when_the_job_has_finished(client, reviewer, tmp_path) -> None:
    job = job_execute(_job(tmp_path, fail_at=1).pk)
    client.force_login(reviewer)
    response = client.get(f"/jobs/{job.pk}/", headers={"HX-Request": "true"})
    assert response.status_code == 286  # htmx stops polling on 286
    body = response.content.decode()
    assert "RuntimeError: step 1 broke" in body and "hx-trigger" not in body and "<html" not in body


def test_an_admin_retries_a_failed_job_from_its_page(client, admin_user, tmp_path) -> None:
    job = job_execute(_job(tmp_path, fail_at=1).pk)
    client.force_login(admin_user)
    page = client.get(f"/jobs/{job.pk}/")
    assert b"Retry (resumes)" in page.content and b"The job failed:" in page.content
    response = client.post(f"/jobs/{job.pk}/retry/", follow=True)
    assert b"queued again" in response.content
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED


def test_a_finished_job_links_to_its_result(client, reviewer, tmp_path) -> None:
    job = job_execute(_job(tmp_path).pk)
    client.force_login(reviewer)
    assert b'href="/tasks/"' in client.get(f"/jobs/{job.pk}/").content


def test_the_job_list_shows_every_job(client, auditor, tmp_path, django_assert_max_num_queries) -> None:
    for n in range(5):
        job_create(kind=HANDLER, title=f"Job {n}", params={"n": 1})
    client.force_login(auditor)
    with django_assert_max_num_queries(8):
        response = client.get("/jobs/")
    assert response.status_code == 200 and all(f"Job {n}".encode() in response.content for n in range(5))


def test_the_job_list_refreshes_itself_only_while_a_job_is_unfinished(client, auditor, tmp_path) -> None:
    job = _job(tmp_path)
    client.force_login(auditor)
    page = client.get("/jobs/")
    assert b'hx-trigger="every 2s"' in page.content
    fragment = client.get("/jobs/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and b'id="job-table"' in fragment.content and b"<html" not in fragment.content
    job_execute(job.pk)
    finished = client.get("/jobs/", headers={"HX-Request": "true"})
    assert finished.status_code == 286 and b"hx-trigger" not in finished.content


def test_cancelling_a_job_whose_worker_died_ends_it_so_it_can_be_retried(tmp_path) -> None:
    job = _job(tmp_path)
    stale = timezone.now() - STALE_AFTER - timedelta(minutes=1)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, started_at=stale, updated_at=stale)
    job.refresh_from_db()
    job = job_cancel(job=job)
    assert job.state == Job.State.CANCELLED and job.can_retry and "worker stopped" in job.message
    job_retry(job=job)
    assert job_execute(job.pk).state == Job.State.SUCCEEDED


def test_cancelling_a_live_running_job_only_asks_it_to_stop(tmp_path) -> None:
    job = _job(tmp_path)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, started_at=timezone.now())
    job.refresh_from_db()
    job = job_cancel(job=job)
    assert job.state == Job.State.RUNNING and job.cancel_requested


def test_a_job_whose_worker_process_is_gone_is_known_at_once_and_ends_on_cancel(client, auditor, tmp_path) -> None:
    job = _job(tmp_path)
    # Updated a moment ago, so only the missing process can tell that nobody runs it any more.
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.RUNNING, started_at=timezone.now(), worker_host=socket.gethostname(), worker_pid=dead_pid()
    )
    job.refresh_from_db()
    assert job.worker_is_gone
    client.force_login(auditor)
    assert b"The worker running this job has stopped" in client.get(f"/jobs/{job.pk}/").content
    job = job_cancel(job=job)
    assert job.state == Job.State.CANCELLED and job.can_retry
    job_retry(job=job)
    assert job_execute(job.pk).state == Job.State.SUCCEEDED


def test_a_live_or_remote_worker_is_not_taken_for_gone(tmp_path) -> None:
    job = _job(tmp_path)
    job_execute(job.pk)
    job.refresh_from_db()
    assert job.worker_host == socket.gethostname() and job.worker_pid == os.getpid()
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING)
    job.refresh_from_db()
    assert not job.worker_is_gone  # this very process
    Job.objects.filter(pk=job.pk).update(worker_host="another-host", worker_pid=dead_pid())
    job.refresh_from_db()
    assert not job.worker_is_gone  # a process elsewhere cannot be checked from here
    assert job_cancel(job=job).state == Job.State.RUNNING
