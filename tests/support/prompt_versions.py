"""Build approved rule sets, compiled prompt versions and finished evaluation runs for prompt tests."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction
from rules.datasets.frozen_split import split_sha256
from rules.models import Example, PromptVersion, Rule, Task
from rules.prompts.compiler import prompt_version_compile
from rules.review.services import rule_approve, rule_propose
from rules.student_model import student_model_sha256
from tests.support.factories import ExampleFactory
from tests.support.signatures import sign_approval, sign_override_confirmation, sign_override_request

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
    """Record a finished evaluation of a version plainly, as if the student had run (no model needed).

    On the test split it is a run of the whole split as it is now, unless ``split_sha256``, ``limit`` or
    ``seed`` say otherwise.
    """
    if split == "test":
        extra.setdefault("split_sha256", split_sha256(task=version.task)[0])
    run = EvaluationRun(
        task=version.task, mode=EvaluationRun.Mode.PLD, prompt_version=version, prompt_text=version.text,
        split=split, model_path="/models/student.gguf",
        model_sha256=student_model_sha256() if model_sha256 is None else model_sha256,
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


GATE_EXAMPLES = 18


def gate_examples(task: Task, n: int = GATE_EXAMPLES) -> list[Example]:
    """Return the task's test examples, first adding balanced ones (labels in turn) until there are ``n``."""
    existing = list(Example.objects.filter(task=task, split="test").order_by("id"))
    labels = task.label_names
    for i in range(len(existing), n):
        inputs = {"premise": f"Gate clause {i}", "hypothesis": f"Gate hypothesis {i}"}
        gold = labels[i % len(labels)]
        existing.append(ExampleFactory(task=task, inputs=inputs, gold_label=gold, split="test"))
    return existing


def scored_run(
    task: Task, examples: list[Example], *, version: PromptVersion | None = None, wrong: int = 0,
    constant: str = "", adherence: tuple[int, int] | None = (18, 20), model_sha256: str | None = None,
    **extra: Any,
) -> EvaluationRun:
    """Record a finished run whose metrics are computed from the predictions it stores (no model needed).

    The first ``wrong`` examples get the next label instead of the gold one; ``constant`` predicts one
    label for every example (a majority-class or an ignoring model); ``adherence`` is (followed, n). It is
    drawn from the test split as it is now; ``extra`` sets other fields (``limit``, ``seed``, ``finished_at``).
    """
    from evaluation.runs.metrics import classification_metrics

    labels = task.label_names

    def predicted(i: int, example: Example) -> str:
        if constant:
            return constant
        if i < wrong:
            return labels[(labels.index(example.gold_label) + 1) % len(labels)]
        return example.gold_label

    y_pred = [predicted(i, e) for i, e in enumerate(examples)]
    metrics = classification_metrics(y_true=[e.gold_label for e in examples], y_pred=y_pred, labels=labels)
    measured: dict[str, Any] = {}
    if version is not None and adherence is not None:
        followed, n = adherence
        score = round(followed / n, 4)
        measured = {"rule_adherence": score,
                    "adherence": {"n": n, "rule_adherence": score, "chance": round(1 / len(labels), 4)}}
    run = EvaluationRun(
        task=task, mode=EvaluationRun.Mode.PLD if version else EvaluationRun.Mode.ZERO_SHOT, prompt_version=version,
        prompt_text=version.text if version else "zero-shot", split="test", model_path="/models/student.gguf",
        model_sha256=student_model_sha256() if model_sha256 is None else model_sha256,
        n_examples=len(examples), data_sha256="d" * 64, metrics=metrics,
        options={"example_ids": [e.pk for e in examples]}, **measured,
        **{"status": EvaluationRun.Status.FINISHED, "finished_at": timezone.now(),
           "split_sha256": split_sha256(task=task)[0], **extra},
    )
    run.full_clean()
    run.save()
    for example, label in zip(examples, y_pred, strict=True):
        Prediction.objects.create(run=run, example=example, label=label, correct=label == example.gold_label,
                                  latency_ms=10.0)
    return run


def gate_passing_run(version: PromptVersion, *, wrong: int = 0) -> EvaluationRun:
    """Record the evidence a passing gate needs: a zero-shot run that always says the first label and a
    pld run of the version that is right on all but ``wrong`` of the same examples, following its rules."""
    from evaluation.release.promotion import zero_shot_baseline

    task = version.task
    examples = gate_examples(task)
    run = scored_run(task, examples, version=version, wrong=wrong)
    if zero_shot_baseline(run=run) is None:
        scored_run(task, examples, constant=task.label_names[0])
    return run


def promote_by_override(version: PromptVersion, *, admin: User, second_admin: User, reason: str = "Go") -> None:
    """Put a version whose gate fails into production the recorded way: one Admin asks, another confirms."""
    from evaluation.release.promotion import promotion_override_confirm, promotion_override_request

    override = promotion_override_request(
        prompt_version=version, user=admin, reason=reason, justification="Test story: the gate's evidence is not built",
        signature=sign_override_request(admin, version),
    )
    promotion_override_confirm(override=override, user=second_admin,
                               signature=sign_override_confirmation(second_admin, version))
    version.refresh_from_db()


def in_production(task: Task, *, admin: User, reviewer: User, reason: str = "Go") -> PromptVersion:
    """Approve the task's usual rules, compile them and promote the version through a passing gate."""
    from evaluation.release.promotion import prompt_version_promote
    from tests.support.signatures import sign_promotion

    approve_all(task, reviewer)
    version = compiled(task, admin)
    gate_passing_run(version)
    prompt_version_promote(prompt_version=version, user=admin, reason=reason, signature=sign_promotion(admin, version))
    version.refresh_from_db()
    return version
