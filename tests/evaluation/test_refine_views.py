"""The refine page of an evaluation run: start phase 3 as a job, see the proposals with their evidence."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from evaluation.models import EvaluationRun
from pldreview.models import Job
from rules.models import Rule, Task
from rules.review.services import rule_propose


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _run(task: Task, split: str = "train") -> EvaluationRun:
    return EvaluationRun.objects.create(task=task, mode="zero-shot", split=split, model_path="m.gguf",
                                        status=EvaluationRun.Status.FINISHED, finished_at=timezone.now())


def test_the_page_shows_each_proposal_with_its_dev_evidence(task: Task, reviewer: User) -> None:
    run = _run(task)
    rule_propose(task=task, text="If only one person may see it, then Contradiction.", label="Contradiction",
                 origin=Rule.Origin.REFINE, diagnosis="MISSING", proposed_by_model="gemma-3-270m-q4_k_m",
                 proposal={"evaluation_run": run.pk, "patch": "new", "failure_example_ids": [1, 2],
                           "dev_before": {"macro_f1": 0.5, "n": 8}, "dev_after": {"macro_f1": 0.625, "n": 8},
                           "flips": {"right_to_wrong": [3], "wrong_to_right": [4, 5]}})
    response = _client(reviewer).get(f"/evaluations/{run.pk}/refine/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "0.500 → 0.625" in body and "2 fixed, 1 broken" in body
    assert "gemma-3-270m-q4_k_m (teacher model)" in body
    assert "Start refine" not in body  # reviewers read; Admins start


def test_an_admin_starts_refine_as_a_job(task: Task, admin_user: User, django_capture_on_commit_callbacks) -> None:
    run = _run(task)
    with django_capture_on_commit_callbacks(execute=False):
        response = _client(admin_user).post(f"/evaluations/{run.pk}/refine/start/",
                                            {"max_groups": 2, "dev_limit": 5, "endpoint": "local"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == "refine"
    assert job.params == {"evaluation": run.pk, "max_groups": 2, "dev_limit": 5, "endpoint": "local",
                          "include_feedback": False}


def test_a_test_split_run_is_refused_with_a_reason(task: Task, admin_user: User) -> None:
    run = _run(task, split="test")
    response = _client(admin_user).post(f"/evaluations/{run.pk}/refine/start/", {"max_groups": 2, "dev_limit": 5})
    assert response.status_code == 400 and b"test split stays unseen" in response.content
    assert not Job.objects.exists()


def test_a_reviewer_cannot_start_refine(task: Task, reviewer: User) -> None:
    run = _run(task)
    assert _client(reviewer).post(f"/evaluations/{run.pk}/refine/start/", {}).status_code == 403
