"""The demo step of the student: evaluations on the fixture tasks, reused on a second run."""
from __future__ import annotations

from io import StringIO

import pytest

from evaluation.demo.prompts import seed_prompt_versions
from evaluation.demo.review import seed_review_decisions
from evaluation.demo.student import seed_evaluations
from evaluation.demo.users import seed_users_and_tasks
from evaluation.models import EvaluationRun
from evaluation.runs.rule_stats import rule_accuracy
from evaluation.student.in_process import Student
from rules.models import Rule


@pytest.mark.slow
def test_the_demo_evaluates_the_fixture_tasks_once(db: None, student_settings: Student) -> None:
    seed_users_and_tasks(StringIO())
    out = StringIO()
    seed_evaluations(out)
    text = out.getvalue()
    assert "nda-demo has no prompt version yet; skipping its pld evaluation." in text
    runs = list(EvaluationRun.objects.order_by("pk"))
    assert [(r.task.name, r.mode) for r in runs] == [
        ("nda-demo", "zero-shot"), ("escalation", "zero-shot"), ("escalation", "pld")
    ]
    assert all(r.status == EvaluationRun.Status.FINISHED for r in runs)
    assert runs[2].rule_adherence is not None and runs[2].created_by.username == "adam"

    again = StringIO()
    seed_evaluations(again)
    assert EvaluationRun.objects.count() == 3
    assert again.getvalue() == text  # the same runs, reported the same way


def test_the_demo_explains_a_missing_task(db: None) -> None:
    out = StringIO()
    seed_evaluations(out)
    assert "nda-demo is not imported" in out.getvalue()
    assert not EvaluationRun.objects.exists()


@pytest.mark.slow
def test_the_demo_runs_the_prompt_version_on_train_so_rule_pages_have_statistics(
    db: None, student_settings: Student
) -> None:
    seed_users_and_tasks(StringIO())
    seed_review_decisions(StringIO())
    seed_prompt_versions(StringIO())
    out = StringIO()
    seed_evaluations(out)
    train = EvaluationRun.objects.get(task__name="nda-demo", mode="pld", split="train")
    assert train.status == EvaluationRun.Status.FINISHED and train.prompt_version is not None
    covered = [rule for rule in Rule.objects.filter(task__name="nda-demo") if rule.examples.exists()]
    assert covered, "the demo's rules cite the training examples they came from"
    assert any(rule_accuracy(rule)["run"]["id"] == train.pk for rule in covered)
    assert f"run {train.pk}" in out.getvalue()


@pytest.mark.slow
def test_the_gate_judges_the_demos_whole_test_split_run_and_fails_honestly(
    db: None, student_settings: Student
) -> None:
    from django.contrib.auth.models import User

    from evaluation.release.promotion import promotion_gate
    from rules.models import FrozenTestSplit, PromptVersion

    seed_users_and_tasks(StringIO())
    seed_review_decisions(StringIO())
    seed_prompt_versions(StringIO())
    seed_evaluations(StringIO())
    version = PromptVersion.objects.get(task__name="nda-demo")
    test_run = EvaluationRun.objects.get(task__name="nda-demo", mode="pld", split="test")
    assert (test_run.limit, test_run.seed) == (None, 0)
    gate = promotion_gate(prompt_version=version, user=User.objects.get(username="adam"))
    # The demo's one run of the whole test split is the evidence; the 270M student does not clear the gate.
    assert gate.candidate_run == test_run and not gate.passed
    assert FrozenTestSplit.objects.get(task=version.task).sha256 == test_run.split_sha256
    assert [row.judged for row in gate.runs] == [True]
