"""Phase 3: failures diagnosed by the teacher become measured, pending refine proposals (never approved)."""
from __future__ import annotations

import hashlib

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction
from evaluation.runs.refine import (
    _normalise_patch,
    approved_rules,
    patched_rules,
    refine_proposals_create,
    refine_schema,
    student_rules_text,
)
from evaluation.student import prompts
from rules.models import Decision, Rule, Task, TeacherCall
from rules.review.services import rule_approve, rule_propose
from rules.teacher.client import TeacherConfig
from tests.support.factories import make_examples
from tests.support.fake_teacher import FakeTeacher
from tests.support.prompt_versions import RULES, approve_all, compiled
from tests.support.signatures import sign_approval


def _finished_run(task: Task, split: str = "train") -> EvaluationRun:
    """A finished train run: two Contradictions taken for Entailment, the rest right."""
    examples = make_examples(task, 6)
    make_examples(task, 3, split="dev", start=6)
    run = EvaluationRun.objects.create(task=task, mode="pld", split=split, model_path="m.gguf",
                                       status=EvaluationRun.Status.FINISHED, finished_at=timezone.now())
    for example in examples:
        wrong = example.gold_label == "Contradiction"
        label = "Entailment" if wrong else example.gold_label
        Prediction.objects.create(run=run, example=example, label=label, correct=not wrong, latency_ms=1)
    return run


def _config(fake: FakeTeacher) -> TeacherConfig:
    return TeacherConfig(base_url=fake.base_url, model="fake-teacher", timeout=5.0, max_retries=1, backoff_base=0.01)


def test_it_refuses_runs_that_are_unfinished_or_on_test(task: Task) -> None:
    run = _finished_run(task, split="test")
    with FakeTeacher() as fake:
        with pytest.raises(ValidationError, match="test split stays unseen"):
            refine_proposals_create(run=run, config=_config(fake))
        run.split, run.status = "train", EvaluationRun.Status.RUNNING
        run.save()
        with pytest.raises(ValidationError, match="finished run"):
            refine_proposals_create(run=run, config=_config(fake))


def test_without_approved_rules_only_a_new_rule_can_be_proposed(task: Task) -> None:
    schema = refine_schema(task, [])
    assert schema["properties"]["patch"]["enum"] == ["new"]
    assert schema["properties"]["diagnosis"]["enum"] == ["MISSING"]


def test_an_edit_naming_no_approved_rule_becomes_a_new_rule() -> None:
    data = {"patch": "edit", "rule_id": 999, "diagnosis": "WRONG", "explanation": "x" * 10}
    patch = _normalise_patch(data, [])
    assert patch["patch"] == "new" and patch["refines"] is None and "note" in patch


def test_refine_rules_refuses_an_unknown_run(db: None) -> None:
    with pytest.raises(CommandError, match="No evaluation run"):
        call_command("refine_rules", "--evaluation", "999")


@pytest.mark.slow
def test_failures_become_measured_pending_proposals_and_a_rerun_adds_nothing(task: Task) -> None:
    run = _finished_run(task)
    with FakeTeacher() as fake:
        summary = refine_proposals_create(run=run, config=_config(fake), dev_limit=3)
        assert len(fake.requests) == 1
        again = refine_proposals_create(run=run, config=_config(fake), dev_limit=3)
        assert len(fake.requests) == 1
    assert summary.n_groups == 1 and summary.n_proposed == 1
    assert again.n_proposed == 0 and again.n_existing == 1
    rule = Rule.objects.get()
    assert rule.origin == Rule.Origin.REFINE and rule.status == Rule.Status.PENDING
    assert rule.diagnosis == "MISSING" and rule.proposed_by_model == "fake-teacher"
    proposal = rule.proposal
    failures = set(run.predictions.filter(correct=False).values_list("example_id", flat=True))
    assert set(proposal["failure_example_ids"]) == failures
    assert set(rule.examples.values_list("id", flat=True)) == failures
    assert proposal["patch"] == "new" and proposal["evaluation_run"] == run.pk
    assert proposal["dev_before"]["n"] == 3 and 0 <= proposal["dev_after"]["macro_f1"] <= 1
    assert proposal["dev_before"]["rules_sha256"] != proposal["dev_after"]["rules_sha256"]
    assert set(proposal["flips"]) == {"right_to_wrong", "wrong_to_right"}
    assert not Decision.objects.filter(action=Decision.Action.APPROVE).exists()
    assert TeacherCall.objects.filter(purpose="refine").count() == 1


@pytest.mark.slow
def test_an_edit_proposal_points_at_the_approved_rule_and_leaves_it_alone(
    task: Task, reviewer: User, admin_user: User
) -> None:
    run = _finished_run(task)
    approved = rule_propose(task=task, text="If the clause forbids disclosure, then Entailment.", label="Entailment",
                            origin=Rule.Origin.TEACHER, proposed_by_model="fake-teacher")
    rule_approve(rule=approved, user=reviewer, lock_version=approved.lock_version,
        signature=sign_approval(reviewer, approved))
    approved.refresh_from_db()
    assert approved.status == Rule.Status.APPROVED
    shipped = prompts.pld_rules(task=task, prompt_text=compiled(task, admin_user).text)
    reply = {"diagnosis": "WRONG", "patch": "edit", "rule_id": approved.pk, "label": "Contradiction"}
    with FakeTeacher(overrides=reply) as fake:
        refine_proposals_create(run=run, config=_config(fake), dev_limit=3)
    proposal = Rule.objects.get(origin=Rule.Origin.REFINE)
    assert proposal.refines == approved and proposal.diagnosis == "WRONG"
    assert proposal.label == "Contradiction" and proposal.status == Rule.Status.PENDING
    assert proposal.proposal["patch"] == "edit"
    # "Before" is measured on exactly the text a compiled prompt version of the approved set gives the student.
    assert proposal.proposal["dev_before"]["rules_sha256"] == hashlib.sha256(shipped.encode()).hexdigest()
    approved.refresh_from_db()
    assert approved.status == Rule.Status.APPROVED and approved.label == "Entailment"


def test_a_new_rule_for_a_failure_group_must_imply_its_gold_label(task: Task) -> None:
    schema = refine_schema(task, [], "Contradiction")
    assert schema["properties"]["label"]["enum"] == ["Contradiction"]


def test_the_before_text_is_the_compilers_text_for_the_approved_set(
    task: Task, second_reviewer: User, admin_user: User
) -> None:
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    assert student_rules_text(task=task, rules=approved_rules(task)) == prompts.pld_rules(
        task=task, prompt_text=version.text
    )


def test_each_kind_of_patch_is_measured_in_the_compilers_layout(task: Task, second_reviewer: User) -> None:
    first, second, _third = approve_all(task, second_reviewer)
    rules = approved_rules(task)
    patch = {"topic": "Scope", "label": "Contradiction", "refines": None}
    new = student_rules_text(task=task, rules=patched_rules(task, rules, {
        **patch, "patch": "new", "text": "If only one named person may see it, then Contradiction"}))
    assert "## Scope\nRule 4 [Contradiction]: If only one named person may see it, then Contradiction" in new
    edit = student_rules_text(task=task, rules=patched_rules(task, rules, {
        **patch, "patch": "edit", "refines": first.pk, "text": "If employees may never see it, then Contradiction"}))
    assert "Rule 1 [Contradiction]: If employees may never see it, then Contradiction" in edit
    assert RULES[0][0] not in edit and f"Rule 2 [Contradiction]: {RULES[1][0]}" in edit
    precedence = student_rules_text(task=task, rules=patched_rules(task, rules, {
        **patch, "patch": "precedence", "refines": second.pk, "text": "Wins over Rule 3 when both apply."}))
    assert f"Rule 2 [Contradiction]: {RULES[1][0]}\n  Precedence: Wins over Rule 3 when both apply." in precedence
    first.refresh_from_db()
    assert first.text == RULES[0][0] and first.label == "Entailment"
