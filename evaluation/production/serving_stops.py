"""Stopping a task's production serving, and resuming it: the "stop button" of EU AI Act Art. 14(4)(e).

A stop and a resume are each an Admin's electronic signature and one append-only ``ServingStop`` row; the task
is stopped while its latest row is a stop. The state lives in the database and nowhere else: every classify
call reads it (one indexed query, ``serving_stop_current``) before deciding and again in the transaction that
writes its record (``evaluation.production.serving.serving_stop_check``), so every API process refuses from the moment
the stop commits, whatever it had loaded before. A resume is signed by a different Admin than the stop's when
``PLD_REQUIRED_APPROVALS`` > 1.
"""
from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import OuterRef, Subquery

from evaluation.models import ServingStop
from evaluation.production.webhooks import webhook_events_announce
from pldreview.accounts.services import second_person_refusal
from pldreview.models import Signature
from pldreview.signatures import Meaning, serving_content_sha256, signature_check
from rules.audit import audited_save
from rules.models import Task


def serving_stop_current(task: Task | int) -> ServingStop | None:
    """Return the stop in force for the task (its latest row, when that is a stop), read fresh from the database."""
    task_id = task if isinstance(task, int) else task.pk
    # Every classify call asks this twice, and almost always the answer is "none": the narrow read costs a
    # refusal of a full queue about half a millisecond less than loading the row with its signer and signature.
    latest = ServingStop.objects.filter(task_id=task_id).order_by("-id").values_list("pk", "action").first()
    if latest is None or latest[1] != ServingStop.Action.STOP:
        return None
    return ServingStop.objects.select_related("by", "signature").get(pk=latest[0])


def serving_stop_message(stop: ServingStop) -> str:
    """Return the sentence a refused call reads: the task, since when, by whom and why."""
    return (f"Serving of task {stop.task.name} is stopped since {stop.created_at.isoformat()} by "
            f"{stop.signature.full_name}: {stop.reason} No decision was given; an Admin resumes it.")


def serving_stop_body(stop: ServingStop, *, request_id: uuid.UUID | str | None = None) -> dict[str, Any]:
    """Return the API's 503 body for a stopped task."""
    return {
        "error": serving_stop_message(stop),
        "code": "serving_stopped",
        "stop": {
            "id": stop.pk,
            "task": stop.task.name,
            "since": stop.created_at.isoformat(),
            "by": stop.signature.full_name,
            "username": stop.signature.username,
            "reason": stop.reason,
        },
        "request_id": str(request_id) if request_id is not None else None,
    }


def stopped_serving(tasks: list[Task] | None = None) -> list[ServingStop]:
    """Return the stops in force, for the given tasks or all of them, oldest task name first (for the banners)."""
    # One query, whatever the number of tasks: each task's latest row, kept when it is a stop.
    latest = ServingStop.objects.filter(task=OuterRef("task")).order_by("-id").values("pk")[:1]
    stops = ServingStop.objects.filter(action=ServingStop.Action.STOP, pk=Subquery(latest))
    if tasks is not None:
        stops = stops.filter(task__in=tasks)
    return list(stops.select_related("task", "by", "signature").order_by("task__name"))


def serving_stop_banners(tasks: list[Task] | None) -> list[tuple[str, dict[str, Any]]]:
    """Return the red banner of each stopped task among ``tasks`` (None: all), for the task pages and the overview."""
    return [("evaluation/serving_stop_banner.html", {"stop": stop}) for stop in stopped_serving(tasks)]


def task_stops(task: Task) -> list[ServingStop]:
    """Return the task's stop and resume history, oldest first, each with its signature (reports, technical file)."""
    return list(ServingStop.objects.filter(task=task).select_related("by", "signature", "lifts")
                .order_by("created_at", "id"))


def _require_stopper(user: AbstractBaseUser) -> None:
    if not user.has_perm("evaluation.stop_serving"):
        raise PermissionDenied("Only Admins stop or resume a task's serving.")


def _lock(task: Task) -> Task:
    # One stop or resume of a task at a time: the second waits, then sees the first's row.
    return Task.objects.select_for_update().get(pk=task.pk)


def _reason(reason: str, what: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": f"Say why {what}."})
    return reason


@transaction.atomic
def task_serving_stop(
    *, task: Task, user: AbstractBaseUser, reason: str, signature: Signature | None = None
) -> ServingStop:
    """Stop the task's production serving at once: every API process refuses its classify calls from the commit on.

    It is a signing: the Admin's signature means "Serving stopped", over the task and the action
    (``serving_content_sha256``). Stopping a stopped task is refused (the first stop stands).
    """
    _require_stopper(user)
    reason = _reason(reason, "serving stops")
    task = _lock(task)
    if serving_stop_current(task) is not None:
        raise ValidationError(f"Serving of task {task.name} is already stopped.")
    signature_check(signature, user=user, meanings=Meaning.SERVING_STOPPED,
                    content_sha256=serving_content_sha256(task_id=task.pk, task_name=task.name, action="stop"))
    stop = ServingStop(task=task, action=ServingStop.Action.STOP, reason=reason, by=user, signature=signature)
    audited_save(stop, user=user, reason=f"Serving of {task.name} stopped", event="servingstop.stopped")
    webhook_events_announce(task=task, event="task.stopped", body=_stop_facts(stop))
    return stop


def _stop_facts(row: ServingStop) -> dict[str, Any]:
    """What integrators hear of a stop or resume: when, by whom (the printed name as signed), why."""
    return {"since": row.created_at.isoformat(), "by": row.signature.full_name, "reason": row.reason,
            "stop_id": row.lifts_id if row.action == ServingStop.Action.RESUME else row.pk}


def resume_refusal(stop: ServingStop, user: AbstractBaseUser) -> str:
    """Return why the user may not resume serving after this stop, or '' when they may."""
    if not user.has_perm("evaluation.stop_serving"):
        return "Only Admins resume a task's serving."
    if settings.PLD_REQUIRED_APPROVALS > 1:
        if stop.by_id == user.pk:
            return (f"You stopped this task's serving; with PLD_REQUIRED_APPROVALS = {settings.PLD_REQUIRED_APPROVALS} "
                    "a different Admin resumes it (four eyes).")
        return second_person_refusal(user)
    return ""


@transaction.atomic
def task_serving_resume(
    *, task: Task, user: AbstractBaseUser, reason: str, signature: Signature | None = None
) -> ServingStop:
    """Resume the task's production serving after its stop; return the resume's row (it names the stop it lifts).

    It is a signing: the signature means "Serving resumed", over the task, the action and the stop lifted. With
    ``PLD_REQUIRED_APPROVALS`` > 1 the Admin who stopped cannot resume (a second person, past the cooldown).
    """
    _require_stopper(user)
    reason = _reason(reason, "serving resumes")
    task = _lock(task)
    stop = serving_stop_current(task)
    if stop is None:
        raise ValidationError(f"Serving of task {task.name} is not stopped.")
    if refusal := resume_refusal(stop, user):
        raise ValidationError(refusal)
    signature_check(signature, user=user, meanings=Meaning.SERVING_RESUMED,
                    content_sha256=serving_content_sha256(task_id=task.pk, task_name=task.name, action="resume",
                                                          lifts=stop.pk))
    resume = ServingStop(task=task, action=ServingStop.Action.RESUME, lifts=stop, reason=reason, by=user,
                         signature=signature)
    audited_save(resume, user=user, reason=f"Serving of {task.name} resumed", event="servingstop.resumed")
    webhook_events_announce(task=task, event="task.resumed", body=_stop_facts(resume))
    return resume
