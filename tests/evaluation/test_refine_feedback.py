"""Feedback examples (production decisions marked wrong) are refine inputs: on the page and in the teacher's groups."""
from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction
from evaluation.production.decision_log import decision_feedback_give
from evaluation.runs.refine import refine_groups, refine_proposals_create
from rules.models import Rule
from rules.teacher.client import TeacherConfig
from tests.support.factories import ClassifyCallFactory, make_examples
from tests.support.fake_teacher import FakeTeacher
from tests.support.prompt_versions import approve_all, compiled

INPUTS = {"premise": "The Recipient may keep one archival copy.", "hypothesis": "The party must destroy all copies."}


@pytest.fixture
def feedback(task, admin_user, second_reviewer, reviewer):
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    call = ClassifyCallFactory(prompt_version=version, top_probability=0.6, latency_ms=5, inputs=INPUTS)
    return decision_feedback_give(call=call, correct_label="Contradiction", reason="Keeping a copy contradicts it",
                                  user=reviewer)


def _run(task) -> EvaluationRun:
    examples = make_examples(task, 3)
    run = EvaluationRun.objects.create(task=task, mode="pld", split="train", model_path="m.gguf",
                                       status=EvaluationRun.Status.FINISHED, finished_at=timezone.now())
    for example in examples:
        Prediction.objects.create(run=run, example=example, label=example.gold_label, correct=True, latency_ms=1)
    return run


def test_the_refine_page_lists_feedback_examples_among_its_inputs(task, admin_user, feedback) -> None:
    run = _run(task)
    client = Client()
    client.force_login(admin_user)
    body = client.get(f"/evaluations/{run.pk}/refine/").content.decode()
    inputs = body[body.index('id="refine-inputs"'):]
    assert f"/examples/{feedback.example_id}/" in inputs and "Keeping a copy contradicts it" in inputs
    assert 'name="include_feedback"' in body


def test_feedback_forms_its_own_failure_group(task, feedback) -> None:
    run = _run(task)
    assert refine_groups(run) == []
    [(name, failures, correct)] = refine_groups(run, include_feedback=True)
    assert name == "feedback:Contradiction->Entailment" and correct == []
    assert [(p.example_id, p.label) for p in failures] == [(feedback.example_id, "Entailment")]


@pytest.mark.slow
def test_a_refine_run_with_feedback_files_a_proposal_citing_it(task, feedback) -> None:
    run = _run(task)
    with FakeTeacher() as fake:
        config = TeacherConfig(base_url=fake.base_url, model="fake-teacher", timeout=5.0, max_retries=1,
                               backoff_base=0.01)
        summary = refine_proposals_create(run=run, config=config, dev_limit=3, include_feedback=True)
        assert "archival copy" in str(fake.requests[0])
    assert summary.n_proposed == 1
    rule = Rule.objects.get(origin=Rule.Origin.REFINE)
    assert rule.proposal["group"] == "feedback:Contradiction->Entailment"
    assert rule.proposal["feedback_example_ids"] == [feedback.example_id]
