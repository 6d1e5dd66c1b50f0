"""The promotion gate and the services that put a prompt version into production (or roll back).

A version may be promoted when it has a finished evaluation on its task's test split with the
current student model, and its macro-F1 is not below the production version's (evaluated the same
way) minus ``PLD_PROMOTION_MARGIN``. An Admin may override a failed gate only with a written
justification. Every promotion is a ``Promotion`` row, never changed or deleted.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from evaluation.models import EvaluationRun, Prediction, Promotion
from evaluation.student import StudentModelError, check_model_file
from pldreview.models import Signature
from pldreview.signatures import Meaning, prompt_version_content_sha256, signature_check
from rules.audit import audited_save
from rules.models import PromptVersion, Split, Task
from rules.tokens import student_model_path

_MODEL_SHA: dict[tuple[str, int, int], str] = {}
_MODEL_SHA_LOCK = threading.Lock()


def current_model_sha256() -> str:
    """Return the SHA-256 of the configured student model file, computed once per file version."""
    path = student_model_path()
    try:
        stat = path.stat()
    except OSError as exc:
        raise StudentModelError(f"The student model file {path} does not exist.") from exc
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _MODEL_SHA_LOCK:
        if key not in _MODEL_SHA:
            _MODEL_SHA[key] = check_model_file(path).sha256
        return _MODEL_SHA[key]


def gate_run(*, prompt_version: PromptVersion, model_sha256: str) -> EvaluationRun | None:
    """Return the latest finished test-split evaluation of a version with the given model, if any."""
    runs = EvaluationRun.objects.filter(
        prompt_version=prompt_version,
        status=EvaluationRun.Status.FINISHED,
        split=Split.TEST,
        model_sha256=model_sha256,
    ).order_by("-finished_at", "-created_at", "-id")
    return next((run for run in runs if run.macro_f1 is not None), None)


@dataclass
class GateResult:
    """The gate's verdict on one version and the evidence it looked at."""

    prompt_version: PromptVersion
    model_sha256: str
    margin: float
    candidate_run: EvaluationRun | None = None
    production: PromptVersion | None = None
    production_run: EvaluationRun | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def candidate_macro_f1(self) -> float | None:
        return self.candidate_run.macro_f1 if self.candidate_run else None

    @property
    def production_macro_f1(self) -> float | None:
        return self.production_run.macro_f1 if self.production_run else None

    def as_dict(self) -> dict[str, Any]:
        """Return the evidence as it is stored on the promotion record."""

        def ci(run: EvaluationRun | None) -> Any:
            return run.metrics.get("macro_f1_ci95") if run else None

        return {
            "passed": self.passed,
            "problems": self.problems,
            "notes": self.notes,
            "margin": self.margin,
            "split": Split.TEST.value,
            "model_sha256": self.model_sha256,
            "candidate_version": self.prompt_version.pk,
            "candidate_run": self.candidate_run.pk if self.candidate_run else None,
            "candidate_macro_f1": self.candidate_macro_f1,
            "candidate_macro_f1_ci95": ci(self.candidate_run),
            "production_version": self.production.pk if self.production else None,
            "production_run": self.production_run.pk if self.production_run else None,
            "production_macro_f1": self.production_macro_f1,
            "production_macro_f1_ci95": ci(self.production_run),
        }


def production_version(task: Task) -> PromptVersion | None:
    """Return the task's prompt version in production, read fresh from the database."""
    return PromptVersion.objects.filter(task=task, status=PromptVersion.Status.PRODUCTION).first()


def promotion_gate(*, prompt_version: PromptVersion) -> GateResult:
    """Check whether a version may go to production without an override, and collect the evidence."""
    sha = current_model_sha256()
    result = GateResult(prompt_version=prompt_version, model_sha256=sha, margin=settings.PLD_PROMOTION_MARGIN)
    result.candidate_run = gate_run(prompt_version=prompt_version, model_sha256=sha)
    if result.candidate_run is None:
        result.problems.append(
            f"Version {prompt_version.number} has no finished evaluation on the test split with the current "
            f"student model (SHA-256 {sha[:12]}…). Run one first."
        )
    production = production_version(prompt_version.task)
    if production is None or production.pk == prompt_version.pk:
        if production is None:
            result.notes.append("No version is in production yet; there is nothing to compare against.")
        return result
    result.production = production
    result.production_run = gate_run(prompt_version=production, model_sha256=sha)
    if result.production_run is None:
        result.problems.append(
            f"The production version {production.number} has no finished evaluation on the test split with the "
            "current student model, so the two cannot be compared. Evaluate it too."
        )
        return result
    if result.candidate_run is None:
        return result
    candidate, current = result.candidate_macro_f1, result.production_macro_f1
    assert candidate is not None and current is not None
    if candidate < current - result.margin:
        result.problems.append(
            f"Macro-F1 {candidate:.3f} is below the production version's {current:.3f}"
            + (f" minus the margin {result.margin:.3f}." if result.margin else ".")
        )
    if result.candidate_run.data_sha256 != result.production_run.data_sha256:
        result.notes.append("The two runs scored different examples (their limit or seed differ).")
    return result


@dataclass(frozen=True)
class Flip:
    """An example one version gets right and the other wrong."""

    example_id: int
    gold_label: str
    old_label: str
    new_label: str
    fixed: bool


def flipped_examples(*, old_run: EvaluationRun, new_run: EvaluationRun, limit: int = 50) -> list[Flip]:
    """Return the examples whose correctness differs between two runs (fixed ones first)."""
    old = {p.example_id: p for p in Prediction.objects.filter(run=old_run).only("example_id", "label", "correct")}
    flips = []
    new_predictions = Prediction.objects.filter(run=new_run).select_related("example").order_by("example_id")
    for prediction in new_predictions:
        before = old.get(prediction.example_id)
        if before is None or before.correct == prediction.correct:
            continue
        flips.append(Flip(
            example_id=prediction.example_id, gold_label=prediction.example.gold_label, old_label=before.label,
            new_label=prediction.label, fixed=prediction.correct,
        ))
    flips.sort(key=lambda f: (not f.fixed, f.example_id))
    return flips[:limit]


def _is_rollback(version: PromptVersion, previous: PromptVersion | None) -> bool:
    return previous is not None and (
        version.number < previous.number or Promotion.objects.filter(prompt_version=version).exists()
    )


def promotion_meaning(prompt_version: PromptVersion) -> str:
    """Return what putting this version into production means now: "Promoted to production" or "Rolled back"."""
    rollback = _is_rollback(prompt_version, production_version(prompt_version.task))
    return Meaning.ROLLED_BACK if rollback else Meaning.PROMOTED


def _save_version_status(version: PromptVersion, *, status: str, user: AbstractBaseUser, reason: str) -> None:
    version.status = status
    # Only the status is written: every other column of a prompt version is immutable (database triggers).
    audited_save(version, user=user, reason=reason, update_fields=["status"])


@transaction.atomic
def prompt_version_promote(
    *, prompt_version: PromptVersion, user: AbstractBaseUser, reason: str, override_justification: str = "",
    signature: Signature | None = None,
) -> Promotion:
    """Put a version into production through the gate, retiring the previous one; return the audit record.

    It is a signing: the Admin's signature must mean "Promoted to production" (or "Rolled back") and be
    over the version's text.
    """
    if not user.has_perm("evaluation.promote_prompt"):
        raise PermissionDenied("Only Admins promote prompt versions.")
    reason = reason.strip()
    override_justification = override_justification.strip()
    if not reason:
        raise ValidationError({"reason": "Say why this version should go to production."})
    # One promotion of a task at a time: the second waits, then sees the first's result.
    Task.objects.select_for_update().get(pk=prompt_version.task_id)
    version = PromptVersion.objects.select_related("task").get(pk=prompt_version.pk)
    if version.status == PromptVersion.Status.PRODUCTION:
        raise ValidationError(f"Version {version.number} is already in production.")
    gate = promotion_gate(prompt_version=version)
    if not gate.passed and not override_justification:
        raise ValidationError(
            {"override_justification": [*gate.problems, "An Admin may override the gate with a written justification."]}
        )
    previous = gate.production or production_version(version.task)
    is_rollback = _is_rollback(version, previous)
    signature_check(signature, user=user, meanings=Meaning.ROLLED_BACK if is_rollback else Meaning.PROMOTED,
                    content_sha256=prompt_version_content_sha256(version.text))
    evidence = gate.as_dict()
    evidence["overridden"] = not gate.passed
    what = "Rolled back to" if is_rollback else "Promoted"
    if previous is not None:
        _save_version_status(
            previous, status=PromptVersion.Status.RETIRED, user=user,
            reason=f"Retired: v{version.number} went to production",
        )
    _save_version_status(version, status=PromptVersion.Status.PRODUCTION, user=user, reason=f"{what}: {reason}")
    promotion = Promotion(
        task=version.task,
        prompt_version=version,
        from_version=previous,
        evaluation_run=gate.candidate_run,
        is_rollback=is_rollback,
        reason=reason,
        override_justification=override_justification if not gate.passed else "",
        gate=evidence,
        promoted_by=user,
        signature=signature,
    )
    audited_save(promotion, user=user, reason=f"{what} v{version.number}")
    return promotion
