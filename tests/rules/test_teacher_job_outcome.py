"""A teacher job whose every request failed ends Failed with the reason; one where some failed is partial."""
from __future__ import annotations

from django.test import override_settings

from pldreview.jobs import job_create, job_execute
from pldreview.models import Job
from rules.models import MicroRule, Task
from tests.support.factories import make_examples
from tests.support.fake_teacher import FakeTeacher, fake_endpoints


def _extract(task: Task, fake: FakeTeacher) -> Job:
    job = job_create(kind="extract", title="Extract",
                     params={"task": task.name, "endpoint": "fake", "concurrency": 1})
    with override_settings(**fake_endpoints(("fake", fake))):
        return job_execute(job.pk)


def test_a_job_whose_every_teacher_request_was_refused_fails_with_the_reason(task: Task) -> None:
    make_examples(task, 3)
    with FakeTeacher(default="400") as fake:
        job = _extract(task, fake)
        assert len(fake.requests) == 3
    assert job.state == Job.State.FAILED
    assert "All 3 teacher requests failed" in job.error and "HTTP 400" in job.error
    assert not MicroRule.objects.exists()


def test_a_job_where_some_requests_failed_says_how_many_and_is_partial(task: Task, client, admin_user) -> None:
    make_examples(task, 3)
    with FakeTeacher(["ok", "400", "ok"]) as fake:
        job = _extract(task, fake)
    assert job.state == Job.State.SUCCEEDED
    assert job.result["partial"] is True and job.result["n_teacher_errors"] == 1 and job.result["n_requests"] == 3
    assert "Partial: 1 of 3 teacher requests failed" in job.result["message"]
    client.force_login(admin_user)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'badge-rejected">partial</span>' in page


def test_a_job_where_every_request_was_answered_is_not_partial(task: Task) -> None:
    make_examples(task, 2)
    with FakeTeacher() as fake:
        job = _extract(task, fake)
    assert job.state == Job.State.SUCCEEDED and job.result["partial"] is False
    assert "Partial" not in job.result["message"]
