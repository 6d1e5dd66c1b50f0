"""Build approved rule sets, compiled prompt versions and finished evaluation runs for prompt tests."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction
from evaluation.promotion import current_model_sha256
from rules.compiler import prompt_version_compile
from rules.models import Example, PromptVersion, Rule, Task
from rules.services import rule_approve, rule_propose
from tests.support.signatures import sign_approval

RULES = [
    ("If the clause lets the recipient share information with its employees, then Entailment", "Entailment",
     "Sharing with employees", ""),
    ("If the clause forbids any disclosure to third parties, then Contradiction", "Contradiction",
     "Third parties", "Gives way to Rule 1 when the third party is an employee."),
    ("If the clause says nothing about returning materials, then NotMentioned", "NotMentioned", "", ""),
]


def approve(task: Task, reviewer: User, text: str, label: str, topic: str = "", precedence_note: str = "") -> Rule:
    """Propose a rule as the teacher and approve it as a reviewer."""
    rule = rule_propose(task=task, text=text, label=label, origin=Rule.Origin.TEACHER, topic=topic,
                        precedence_note=precedence_note, proposed_by_model="teacher-model-x")
    rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="Matches the clauses",
        signature=sign_approval(reviewer, rule))
    rule.refresh_from_db()
    return rule


def approve_all(task: Task, reviewer: User, rules: list[tuple[str, str, str, str]] = RULES) -> list[Rule]:
    return [approve(task, reviewer, *spec) for spec in rules]


def compiled(task: Task, admin: User) -> PromptVersion:
    version, _created = prompt_version_compile(task=task, user=admin)
    return version


def finished_run(version: PromptVersion, macro_f1: float, *, split: str = "test", model_sha256: str | None = None,
                 predictions: list[tuple[Example, str]] = (), **extra: Any) -> EvaluationRun:
    """Record a finished evaluation of a version plainly, as if the student had run (no model needed)."""
    run = EvaluationRun(
        task=version.task, mode=EvaluationRun.Mode.PLD, prompt_version=version, prompt_text=version.text,
        split=split, model_path="/models/student.gguf",
        model_sha256=current_model_sha256() if model_sha256 is None else model_sha256,
        status=EvaluationRun.Status.FINISHED, n_examples=max(len(predictions), 10), data_sha256="d" * 64,
        metrics={"macro_f1": macro_f1, "macro_f1_ci95": [round(macro_f1 - 0.05, 3), round(macro_f1 + 0.05, 3)],
                 "accuracy": macro_f1},
        finished_at=timezone.now(), **extra,
    )
    run.full_clean()
    run.save()
    for example, label in predictions:
        Prediction.objects.create(run=run, example=example, label=label, correct=label == example.gold_label,
                                  latency_ms=10.0)
    return run
