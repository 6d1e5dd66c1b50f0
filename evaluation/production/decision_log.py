"""The decision log: one ClassifyCall per production decision, its input kept as the task's policy says.

Input retention (docs/production.md): ``full`` keeps the text, ``hash`` keeps only the SHA-256 of the
canonical JSON of the inputs, ``redact`` keeps the text with every match of PLD_DECISION_REDACT_PATTERNS
replaced by ``[REDACTED]``. A task's DecisionLogPolicy overrides PLD_DECISION_INPUT_RETENTION and
PLD_DECISION_RETENTION_DAYS; ``purge_decisions`` removes calls older than a number of days, as a ledger event.
"""
from __future__ import annotations

import hashlib
import re
import time
import uuid
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from evaluation.models import (
    ApiToken,
    ClassifyCall,
    DecisionFeedback,
    DecisionLogPolicy,
    DecisionOverride,
    InputRetention,
)
from evaluation.production.rollups import CALL_FIELDS, Tally, rollup_add, rollup_subtract
from evaluation.production.serving import Classification, serving_stop_check
from evaluation.production.webhooks import webhook_events_announce
from pldreview.ledger import canonical_json, ledger_append, row_facts
from pldreview.models import Signature
from pldreview.signatures import Meaning, decision_override_content_sha256, signature_check
from rules.audit import audited_save
from rules.membership import task_is_visible
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
        call = _classify_call_insert(task=task, result=result, inputs=inputs, source=source, request_id=request_id,
                                     latency_ms=latency_ms, api_token=api_token, retention=retention)
        # EU AI Act Art. 12: the decision is on the tamper-evident ledger too, without its input (the ledger is
        # kept forever; the input follows the task's retention). The dossier names this entry.
        ledger_append(event="classify_call.logged", actor=api_token.user if api_token else None, obj=call,
                      facts=classify_call_ledger_facts(call), reason=f"Decision {call.request_id}")
    return call


def classify_call_ledger_facts(call: ClassifyCall) -> dict[str, Any]:
    """Return what the ledger keeps of a logged call: everything but the input itself (its SHA-256 is kept)."""
    facts = row_facts(call)
    facts.pop("inputs", None)
    return facts


def _classify_call_insert(
    *, task: Task, result: Classification, inputs: dict[str, str], source: str, request_id: uuid.UUID,
    latency_ms: float, api_token: ApiToken | None, retention: str,
) -> ClassifyCall:
    # One INSERT, no full_clean: the values come from the serving code, and this runs on every call.
    call = ClassifyCall(
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
    return classify_call_save(call)


@transaction.atomic
def classify_call_save(call: ClassifyCall) -> ClassifyCall:
    """Insert a logged call and count it in its rollup, in one transaction: both are written or neither."""
    call.save(force_insert=True)
    rollup_add(call)
    return call


# Calls deleted per transaction: each batch holds its locks (SQLite: the database's write lock) for tens of
# milliseconds, so classify calls written meanwhile wait at most that long (docs/production.md, "Purge").
PURGE_BATCH_SIZE = 500
# The least pause between batches, outside any transaction: a writer waiting in SQLite's busy handler (which
# sleeps up to 100 ms between tries) gets a window to take the write lock.
PURGE_PAUSE_SECONDS = 0.05
# SQLite: after each batch, pause this many times as long as the batch held the write lock, so the purge holds
# it at most 1/(1 + this) of the time and a classify call's record rarely finds it taken (a record that does
# waits out the batch). PostgreSQL's batches lock only their own rows: no pause is needed (0).
PURGE_SQLITE_YIELD = 30.0


def decisions_purge(
    *, older_than_days: int, actor: AbstractBaseUser | None, task: Task | None = None,
    batch_size: int = PURGE_BATCH_SIZE, pause_seconds: float = PURGE_PAUSE_SECONDS, yield_ratio: float | None = None,
) -> dict[str, Any]:
    """Delete logged calls older than the given days in short batches; each batch is its own ledger entry.

    Feedback examples of the deleted calls lose their text; their feedback lets go of the call on the record;
    the rollups lose the deleted calls' counts. Between batches it pauses ``pause_seconds``, or ``yield_ratio``
    times the batch's own time if longer (default: PURGE_SQLITE_YIELD on SQLite, 0 on PostgreSQL). Returns the
    totals over every batch.
    """
    if older_than_days < 0:
        raise ValidationError("--older-than must be zero or more days.")
    if batch_size < 1:
        raise ValidationError("The batch size must be at least one call.")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    totals: dict[str, Any] = {
        "older_than_days": older_than_days, "cutoff": cutoff.isoformat(), "task": task.name if task else None,
        "calls_deleted": 0, "calls_by_task": {}, "feedback_examples_blanked": 0, "batches": 0, "ledger_entries": [],
    }
    if yield_ratio is None:
        yield_ratio = PURGE_SQLITE_YIELD if connection.vendor == "sqlite" else 0.0
    while True:
        began = time.perf_counter()
        facts, sequence = _purge_batch(cutoff=cutoff, older_than_days=older_than_days, actor=actor, task=task,
                                       batch_size=batch_size, batch=totals["batches"] + 1)
        held = time.perf_counter() - began
        if sequence is None:
            break
        totals["batches"] += 1
        totals["ledger_entries"].append(sequence)
        totals["calls_deleted"] += facts["calls_deleted"]
        totals["feedback_examples_blanked"] += facts["feedback_examples_blanked"]
        for name, n in facts["calls_by_task"].items():
            totals["calls_by_task"][name] = totals["calls_by_task"].get(name, 0) + n
        if facts["calls_deleted"] < batch_size:
            break
        # Outside any transaction: the classify calls waiting for the write lock take it now.
        time.sleep(max(pause_seconds, held * yield_ratio))
    return totals


def purge_batch_calls(*, cutoff: Any, task: Task | None, batch_size: int) -> QuerySet[ClassifyCall, tuple]:
    """Return the next batch of calls to purge, oldest first, as (id, *CALL_FIELDS) tuples."""
    calls = ClassifyCall.objects.filter(created_at__lt=cutoff)
    if task is not None:
        calls = calls.filter(task=task)
    # Oldest first along (task, created_at) or created_at: an index range, never a scan of the table
    # (tests/evaluation/test_records_indexes.py reads the plan).
    return calls.order_by("created_at", "id").values_list("id", *CALL_FIELDS)[:batch_size]


@transaction.atomic
def _purge_batch(
    *, cutoff: Any, older_than_days: int, actor: AbstractBaseUser | None, task: Task | None, batch_size: int,
    batch: int,
) -> tuple[dict[str, Any], int | None]:
    rows = list(purge_batch_calls(cutoff=cutoff, task=task, batch_size=batch_size))
    if not rows and batch > 1:
        return {}, None  # the previous batch took the last ones; a purge of nothing is recorded once
    ids = [row[0] for row in rows]
    n_examples = 0
    for example in Example.objects.filter(feedback__call_id__in=ids, split=Split.FEEDBACK):
        # The example keeps its label and provenance; its text follows its call's retention.
        example.inputs = {name: PURGED for name in example.inputs}
        example.save(update_fields=["inputs"])
        n_examples += 1
    # The feedback outlives its call. It lets go of it by a save with history and a ledger entry carrying the
    # row as it now is, as audited_save would (whose full_clean refuses the empty call the purge leaves), rather
    # than by the deletion's SET NULL, after which verify_ledger would find the row differing from its entry.
    reason = "Its logged call was purged (retention)"
    for feedback in DecisionFeedback.objects.filter(call_id__in=ids).order_by("pk"):
        feedback.call = None
        feedback._history_user = actor
        feedback._change_reason = reason
        feedback.save(update_fields=["call"])
        ledger_append(event="decisionfeedback.changed", actor=actor, obj=feedback, facts=row_facts(feedback),
                      reason=reason)
    names = dict(Task.objects.filter(pk__in={row[1] for row in rows}).values_list("pk", "name"))
    by_task: dict[str, int] = {}
    for row in rows:
        by_task[names[row[1]]] = by_task.get(names[row[1]], 0) + 1
    rollup_subtract(Tally.of_calls(row[1:] for row in rows))
    # only("id"): the deletion collects the calls to null their feedback; their text need not be read.
    deleted = ClassifyCall.objects.filter(id__in=ids).only("id").delete()[1] if ids else {}
    n_calls = deleted.get(ClassifyCall._meta.label, 0)
    facts = {
        "older_than_days": older_than_days,
        "cutoff": cutoff.isoformat(),
        "task": task.name if task else None,
        "batch": batch,
        "calls_deleted": n_calls,
        "calls_by_task": by_task,
        "first_call_id": ids[0] if ids else None,
        "feedback_examples_blanked": n_examples,
    }
    entry = ledger_append(event="classify_call.purged", actor=actor, facts=facts,
                          reason=f"Retention: calls older than {older_than_days} days")
    return facts, entry.sequence


def _require_member(task: Task, user: AbstractBaseUser) -> None:
    # Need-to-know: the pages answer 404 for another task's call; the service refuses any other door too.
    if not task_is_visible(task, user):
        raise PermissionDenied(f"{user} is not a member of the task {task.name}.")


@transaction.atomic
def decision_feedback_give(
    *, call: ClassifyCall, correct_label: str, reason: str, user: AbstractBaseUser
) -> DecisionFeedback:
    """Record that a logged decision was wrong; file its input as a labelled example in the feedback split."""
    if not user.has_perm("evaluation.give_feedback"):
        raise PermissionDenied("Only Reviewers mark logged decisions wrong.")
    call = ClassifyCall.objects.select_for_update().select_related("task").get(pk=call.pk)
    task = call.task
    _require_member(task, user)
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
    return _feedback_file(call=call, correct_label=correct_label, reason=reason.strip(), user=user)


def _feedback_file(
    *, call: ClassifyCall, correct_label: str, reason: str, user: AbstractBaseUser, signature_ref: str = ""
) -> DecisionFeedback:
    task = call.task
    example = Example(
        task=task, inputs=dict(call.inputs), gold_label=correct_label, split=Split.FEEDBACK,
        source_file="decision-log", source_ref=str(call.request_id),
        content_hash=Example.hash_content({**call.inputs, "_call": str(call.request_id)}, correct_label),
    )
    example.full_clean()
    example.save()
    feedback = DecisionFeedback(
        call=call, request_id=call.request_id, prompt_version_id=call.prompt_version_id, logged_label=call.label,
        correct_label=correct_label, reason=reason, example=example, given_by=user, signature_ref=signature_ref,
    )
    audited_save(feedback, user=user, reason=reason, event="decision_feedback.created")
    return feedback


# --- overriding a decision ------------------------------------------------------------------------


def decision_override_signed_content(*, call: ClassifyCall, overridden_label: str) -> str:
    """Return the SHA-256 an override of this call to this label is signed over."""
    return decision_override_content_sha256(
        request_id=str(call.request_id), logged_label=call.label, overridden_label=overridden_label,
        prompt_sha256=call.prompt_sha256, input_sha256=call.input_sha256,
    )


def decision_override_payload(override: DecisionOverride) -> dict[str, Any]:
    """Return what integrators learn of an override (webhook body, decisions API): label, by whom, when, why."""
    return {
        "request_id": str(override.request_id),
        "label": override.logged_label,
        "overridden_label": override.overridden_label,
        "overridden_by": override.signature.full_name,
        "overridden_at": override.created_at.isoformat(),
        "reason": override.reason,
    }


@transaction.atomic
def decision_override(
    *, call: ClassifyCall, overridden_label: str, reason: str, user: AbstractBaseUser, signature: Signature | None
) -> DecisionOverride:
    """Override a logged decision with the right label, signed (meaning "Decision overridden"); append-only.

    The call's kept input becomes a feedback example with that label (unless the call already has feedback,
    which the override then names, or kept only a hash). The integrator's webhooks hear of it after commit.
    """
    if not user.has_perm("evaluation.override_decision"):
        raise PermissionDenied("Only Reviewers and Admins override logged decisions.")
    call = ClassifyCall.objects.select_for_update(of=("self",)).select_related("task", "api_token").get(pk=call.pk)
    _require_member(call.task, user)
    if DecisionOverride.objects.filter(request_id=call.request_id).exists():
        raise ValidationError("This decision is already overridden; the override is on the record and is final.")
    if overridden_label not in call.task.label_names:
        raise ValidationError({"overridden_label": f"Choose one of {', '.join(call.task.label_names)}."})
    if overridden_label == call.label:
        raise ValidationError({"overridden_label": "That is the label the student gave; name the right one."})
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why the decision is overridden."})
    signature_check(signature, user=user, meanings=Meaning.DECISION_OVERRIDDEN,
                    content_sha256=decision_override_signed_content(call=call, overridden_label=overridden_label))
    assert signature is not None  # signature_check refuses a missing one
    feedback = DecisionFeedback.objects.filter(call=call).first()
    if feedback is None and call.inputs_kept:
        feedback = _feedback_file(call=call, correct_label=overridden_label, reason=reason, user=user,
                                  signature_ref=f"pldreview.signature:{signature.pk}")
    override = DecisionOverride(
        request_id=call.request_id, task=call.task, prompt_version_id=call.prompt_version_id,
        api_token=call.api_token, logged_label=call.label, overridden_label=overridden_label, reason=reason,
        overridden_by=user, signature=signature, feedback=feedback,
    )
    audited_save(override, user=user, reason=reason, event="decision_override.created")
    if call.api_token is not None:
        webhook_events_announce(task=call.task, event="decision.overridden",
                                body=decision_override_payload(override), api_token=call.api_token)
    return override
