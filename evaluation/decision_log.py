"""The decision log: one ClassifyCall per production decision, its input kept as the task's policy says.

Input retention (docs/production.md): ``full`` keeps the text, ``hash`` keeps only the SHA-256 of the
canonical JSON of the inputs, ``redact`` keeps the text with every match of PLD_DECISION_REDACT_PATTERNS
replaced by ``[REDACTED]``. A task's DecisionLogPolicy overrides PLD_DECISION_INPUT_RETENTION and
PLD_DECISION_RETENTION_DAYS; ``purge_decisions`` removes calls older than a number of days, as a ledger event.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from evaluation.models import ApiToken, ClassifyCall, DecisionFeedback, DecisionLogPolicy, InputRetention
from evaluation.serving import Classification, serving_stop_check
from pldreview.ledger import canonical_json, ledger_append, row_facts
from rules.audit import audited_save
from rules.models import Example, Split, Task

REDACTED = "[REDACTED]"
# Written into a feedback example's fields when its call is purged: the label and provenance stay.
PURGED = "[PURGED with its call]"


def decision_policy(task: Task) -> tuple[str, int]:
    """Return the task's input retention (full, hash or redact) and retention period in days."""
    policy = DecisionLogPolicy.objects.filter(task=task).first()
    retention = policy.input_retention if policy else settings.PLD_DECISION_INPUT_RETENTION
    days = policy.retention_days if policy and policy.retention_days else settings.PLD_DECISION_RETENTION_DAYS
    return retention, int(days)


@transaction.atomic
def decision_policy_set(
    *, task: Task, input_retention: str, retention_days: int | None, user: AbstractBaseUser, reason: str
) -> DecisionLogPolicy:
    """Set how the task's logged inputs are kept from the next call on, and for how long; audited."""
    if not user.has_perm("evaluation.set_decision_retention"):
        raise PermissionDenied("Only Admins set a task's decision log retention.")
    if not reason.strip():
        raise ValidationError({"reason": "Say why the retention changes."})
    policy = DecisionLogPolicy.objects.select_for_update().filter(task=task).first() or DecisionLogPolicy(task=task)
    policy.input_retention = input_retention
    policy.retention_days = retention_days
    audited_save(policy, user=user, reason=reason.strip())
    return policy


@lru_cache(maxsize=8)
def _patterns(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(pattern) for pattern in patterns]


def redact(text: str) -> str:
    """Return the text with every match of the configured redaction patterns replaced by [REDACTED]."""
    for pattern in _patterns(tuple(settings.PLD_DECISION_REDACT_PATTERNS)):
        text = pattern.sub(REDACTED, text)
    return text


def inputs_sha256(inputs: dict[str, str]) -> str:
    """Return the SHA-256 of the inputs' canonical JSON (sorted keys, UTF-8), as a hash-only call keeps it."""
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


def kept_inputs(inputs: dict[str, str], retention: str) -> dict[str, str]:
    """Return what the log keeps of the inputs under a retention mode."""
    if retention == InputRetention.FULL:
        return dict(inputs)
    if retention == InputRetention.REDACT:
        return {name: redact(value) for name, value in inputs.items()}
    return {}


def classify_call_record(
    *, task: Task, result: Classification, inputs: dict[str, str], source: str, request_id: uuid.UUID,
    latency_ms: float, api_token: ApiToken | None = None,
) -> ClassifyCall:
    """Write the decision log's record of one classify call; raise ``ServingStopped`` if the task was stopped meanwhile.

    The stop is read again in the record's transaction, after a lock on the task's row that a stop also takes
    (PostgreSQL; SQLite's writes are serialised anyway): a call is either logged before the stop commits, and
    answered, or sees the stop and is neither logged nor answered with a decision.
    """
    retention, _days = decision_policy(task)
    with transaction.atomic():
        Task.objects.select_for_update(no_key=True).filter(pk=task.pk).values_list("pk", flat=True).first()
        serving_stop_check(task)
        return _classify_call_insert(task=task, result=result, inputs=inputs, source=source, request_id=request_id,
                                     latency_ms=latency_ms, api_token=api_token, retention=retention)


def _classify_call_insert(
    *, task: Task, result: Classification, inputs: dict[str, str], source: str, request_id: uuid.UUID,
    latency_ms: float, api_token: ApiToken | None, retention: str,
) -> ClassifyCall:
    # One INSERT, no full_clean: the values come from the serving code, and this runs on every call.
    return ClassifyCall.objects.create(
        request_id=request_id,
        source=source,
        api_token=api_token,
        task=task,
        prompt_version_id=result.prompt_version_id,
        prompt_sha256=result.prompt_version_sha256,
        model_sha256=result.model_sha256,
        label=result.label,
        probabilities=result.probabilities,
        top_probability=max(result.probabilities.values(), default=0.0),
        latency_ms=round(latency_ms, 3),
        input_retention=retention,
        inputs=kept_inputs(inputs, retention),
        input_sha256=inputs_sha256(inputs),
        student_backend=result.backend,
        student_base_url=result.student_base_url,
        student_model=result.student_model,
        approximation=result.approximation,
    )


@transaction.atomic
def decisions_purge(
    *, older_than_days: int, actor: AbstractBaseUser | None, task: Task | None = None
) -> dict[str, Any]:
    """Delete logged calls older than the given days; blank their feedback examples' text; record it in the ledger."""
    if older_than_days < 0:
        raise ValidationError("--older-than must be zero or more days.")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    calls = ClassifyCall.objects.filter(created_at__lt=cutoff)
    if task is not None:
        calls = calls.filter(task=task)
    feedback_examples = Example.objects.filter(feedback__call__in=calls, split=Split.FEEDBACK)
    n_examples = 0
    for example in feedback_examples:
        # The example keeps its label and provenance; its text follows its call's retention.
        example.inputs = {name: PURGED for name in example.inputs}
        example.save(update_fields=["inputs"])
        n_examples += 1
    by_task = {row["task__name"]: row["n"] for row in calls.order_by().values("task__name").annotate(n=Count("id"))}
    # The feedback outlives its call. It lets go of it by a save with history and a ledger entry carrying the
    # row as it now is, as audited_save would (whose full_clean refuses the empty call the purge leaves), rather
    # than by the deletion's SET NULL, after which verify_ledger would find the row differing from its entry.
    reason = "Its logged call was purged (retention)"
    for feedback in DecisionFeedback.objects.filter(call__in=calls).order_by("pk"):
        feedback.call = None
        feedback._history_user = actor
        feedback._change_reason = reason
        feedback.save(update_fields=["call"])
        ledger_append(event="decisionfeedback.changed", actor=actor, obj=feedback, facts=row_facts(feedback),
                      reason=reason)
    n_calls, _ = calls.delete()
    facts = {
        "older_than_days": older_than_days,
        "cutoff": cutoff.isoformat(),
        "task": task.name if task else None,
        "calls_deleted": n_calls,
        "calls_by_task": by_task,
        "feedback_examples_blanked": n_examples,
    }
    ledger_append(event="classify_call.purged", actor=actor, facts=facts,
                  reason=f"Retention: calls older than {older_than_days} days")
    return facts


@transaction.atomic
def decision_feedback_give(
    *, call: ClassifyCall, correct_label: str, reason: str, user: AbstractBaseUser
) -> DecisionFeedback:
    """Record that a logged decision was wrong; file its input as a labelled example in the feedback split."""
    if not user.has_perm("evaluation.give_feedback"):
        raise PermissionDenied("Only Reviewers mark logged decisions wrong.")
    call = ClassifyCall.objects.select_for_update().select_related("task").get(pk=call.pk)
    task = call.task
    if DecisionFeedback.objects.filter(call=call).exists():
        raise ValidationError("This decision already has feedback; it is on the record and is not changed.")
    if correct_label not in task.label_names:
        raise ValidationError({"correct_label": f"Choose one of {', '.join(task.label_names)}."})
    if correct_label == call.label:
        raise ValidationError({"correct_label": "That is the label the student gave; feedback names the right one."})
    if not reason.strip():
        raise ValidationError({"reason": "Say why the decision was wrong."})
    if not call.inputs_kept:
        raise ValidationError(
            "This call kept only a hash of its input (the task's retention rule), so it cannot become an example."
        )
    example = Example(
        task=task, inputs=dict(call.inputs), gold_label=correct_label, split=Split.FEEDBACK,
        source_file="decision-log", source_ref=str(call.request_id),
        content_hash=Example.hash_content({**call.inputs, "_call": str(call.request_id)}, correct_label),
    )
    example.full_clean()
    example.save()
    feedback = DecisionFeedback(
        call=call, request_id=call.request_id, prompt_version_id=call.prompt_version_id, logged_label=call.label,
        correct_label=correct_label, reason=reason.strip(), example=example, given_by=user,
    )
    audited_save(feedback, user=user, reason=reason.strip(), event="decision_feedback.created")
    return feedback
