"""Production pages: the watch page per task (Auditors, Admins), its export, the logged calls and feedback."""
from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from evaluation.forms import FeedbackForm, OverrideForm, PolicyForm, WatchFilter
from evaluation.models import ClassifyCall, DecisionFeedback, DecisionLogPolicy, DecisionOverride
from evaluation.production.call_pages import call_page, calls_logged
from evaluation.production.decision_log import (
    decision_feedback_give,
    decision_override,
    decision_override_signed_content,
    decision_policy,
    decision_policy_set,
)
from evaluation.production.dossier import decision_dossier
from evaluation.production.drift import Watch, production_watch
from evaluation.production.exports import call_export_csv, call_export_rows, calls_in_range, json_pieces
from evaluation.release import charts
from evaluation.runs.impact import latest_explanation
from pldreview.roles import role_names
from pldreview.signatures import Meaning, e_signing, signature_sign_from_form, signing_context
from pldreview.web import form_submit
from rules.models import PromptVersion, Split, Task
from rules.panels import task_banners
from rules.views.shortcuts import task_object_or_404, task_or_404

DEFAULT_DAYS = 30
CALLS_PER_PAGE = 50


def _calls() -> models.QuerySet[ClassifyCall]:
    # The one place production pages fetch logged calls from, scoped to the tasks the user may see.
    return ClassifyCall.objects.select_related("task", "prompt_version", "api_token__user")


def _call_id(value: str | None) -> int | None:
    # A page link's cursor; anything else (absent, typed wrong) means the newest page.
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 18 else None


def _call_or_404(call_id: int, user: Any) -> ClassifyCall:
    return task_object_or_404(_calls(), user=user, pk=call_id)


def _call_by_request_id_or_404(request_id: uuid.UUID, user: Any) -> ClassifyCall:
    return task_object_or_404(_calls(), user=user, request_id=request_id)


def _filter(request: HttpRequest, task: Task) -> tuple[WatchFilter, date, date, PromptVersion | None]:
    form = WatchFilter(request.GET or None, task=task)
    today = timezone.localdate()
    start, end, version = today - timedelta(days=DEFAULT_DAYS - 1), today, None
    if form.is_bound and form.is_valid():
        start = form.cleaned_data["start"] or start
        end = form.cleaned_data["end"] or end
        version = form.cleaned_data["version"]
    return form, start, end, version


def _watch(request: HttpRequest, task: Task) -> tuple[WatchFilter, Watch]:
    form, start, end, version = _filter(request, task)
    return form, production_watch(task=task, start=start, end=end, version=version)


def _charts(watch: Watch) -> dict[str, Any]:
    names = [day.day.strftime("%d %b") for day in watch.days]
    columns = [("Gate", watch.reference)] if watch.reference else []
    columns += [(name, day.shares) for name, day in zip(names, watch.days, strict=True)]
    return {
        "calls": charts.bar_chart(
            title="Calls per day", summary=f"Calls per day: {watch.calls} calls over {len(watch.days)} days.",
            bars=[(name, day.calls) for name, day in zip(names, watch.days, strict=True)],
        ),
        "labels": charts.stacked_shares(
            title="Label shares per day against the gating evaluation",
            summary="Share of each label per day; the first column is the gating evaluation's predictions. "
                    "The table below has the same numbers.",
            columns=columns, labels=watch.labels,
        ),
        "confidence": charts.line_chart(
            title="Mean top probability per day",
            summary="Mean probability of the chosen label per day, from 0 to 1.",
            points=[(name, day.mean_top_probability) for name, day in zip(names, watch.days, strict=True)],
        ),
        "latency": charts.bar_chart(
            title="Calls per latency bucket",
            summary="How many of the calls shown took how long, from arrival to decision. "
                    "The table below has the same numbers.",
            bars=watch.latency,
        ),
    }


@require_GET
@permission_required("evaluation.watch_production", raise_exception=True)
def production_page(request: HttpRequest, task_name: str) -> HttpResponse:
    """Show a task's production calls per day, label shares against the gate, confidence and the drift alert."""
    return _production(request, task_or_404(task_name, user=request.user))


def _production(request: HttpRequest, task: Task, policy_form: PolicyForm | None = None,
                status: int = 200) -> HttpResponse:
    form, watch = _watch(request, task)
    retention, days = decision_policy(task)
    policy = DecisionLogPolicy.objects.filter(task=task).first()
    initial = {"input_retention": retention, "retention_days": policy.retention_days if policy else None}
    return render(request, "evaluation/production.html", {
        "task": task, "form": form, "watch": watch, "charts": _charts(watch),
        "retention": retention, "retention_days": days, "query": request.GET.urlencode(),
        "feedback_waiting": task.examples.filter(split=Split.FEEDBACK).count(),
        "policy_form": policy_form or PolicyForm(initial=initial), "banners": task_banners([task]),
    }, status=status)


@require_POST
@permission_required("evaluation.set_decision_retention", raise_exception=True)
def set_decision_policy(request: HttpRequest, task_name: str) -> HttpResponse:
    """Set the task's input retention and retention period for calls from now on."""
    task = task_or_404(task_name, user=request.user)
    form = PolicyForm(request.POST)
    if form_submit(form, lambda data: decision_policy_set(task=task, user=request.user, **data)) is not None:
        messages.success(request, "The decision log's retention for this task is changed from the next call on.")
        return redirect("pld-production", task.name)
    return _production(request, task, form, status=400)


@require_GET
@permission_required("evaluation.watch_production", raise_exception=True)
def production_export(request: HttpRequest, task_name: str, fmt: str) -> StreamingHttpResponse:
    """Download the filtered logged calls as CSV, or the calls with the per-day summary as JSON."""
    task = task_or_404(task_name, user=request.user)
    if fmt not in {"csv", "json"}:
        raise Http404("Export as csv or json")
    form, start, end, version = _filter(request, task)
    watch = production_watch(task=task, start=start, end=end, version=version)
    # The range the filter names, read from the calls themselves (not from the rollups' days).
    calls = calls_in_range(task=task, start=start, end=end, version=version)
    # Streamed as read (evaluation/production/exports.py): memory stays flat however many calls the range holds.
    if fmt == "csv":
        response = StreamingHttpResponse(call_export_csv(calls), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(json_pieces(watch.as_dict(), call_export_rows(calls)),
                                         content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{task.name}-production.{fmt}"'
    return response


@require_GET
@permission_required("evaluation.view_classifycall", raise_exception=True)
def classify_call_list(request: HttpRequest, task_name: str) -> HttpResponse:
    """List a task's logged production decisions, newest first, with what feedback they have."""
    task = task_or_404(task_name, user=request.user)
    overridden = DecisionOverride.objects.filter(request_id=models.OuterRef("request_id")).values("overridden_label")
    calls = ClassifyCall.objects.filter(task=task).select_related("prompt_version", "api_token", "feedback").annotate(
        overridden_label=models.Subquery(overridden[:1])
    )
    label = request.GET.get("label", "")
    if label not in task.label_names:
        label = ""
    if label:
        calls = calls.filter(label=label)
    # Keyset pages and a total from the rollups: flat at a million calls (evaluation/production/call_pages.py).
    page = call_page(calls, total=calls_logged(task=task, label=label), size=CALLS_PER_PAGE,
                     before=_call_id(request.GET.get("before")), after=_call_id(request.GET.get("after")))
    return render(request, "evaluation/classify_call_list.html", {
        "task": task, "page": page, "label": label, "banners": task_banners([task]),
        "feedback_waiting": task.examples.filter(split=Split.FEEDBACK).count(),
    })


def _call_page(request: HttpRequest, call: ClassifyCall, form: FeedbackForm | None = None,
               status: int = 200, override_form: OverrideForm | None = None) -> HttpResponse:
    feedback = DecisionFeedback.objects.filter(call=call).select_related("given_by", "example").first()
    override = DecisionOverride.objects.filter(request_id=call.request_id).select_related("signature").first()
    return render(request, "evaluation/classify_call_detail.html", {
        "call": call, "feedback": feedback, "form": form or FeedbackForm(call=call),
        "override": override, "override_form": override_form or OverrideForm(call=call),
        "roles": role_names(request.user), **signing_context(request),
        "explanation": latest_explanation(call),
    }, status=status)


@require_GET
@permission_required("evaluation.view_classifycall", raise_exception=True)
def classify_call_detail(request: HttpRequest, classify_call_id: int) -> HttpResponse:
    """Show one logged decision, its feedback, and the form to mark it wrong."""
    return _call_page(request, _call_or_404(classify_call_id, request.user))


@require_POST
@permission_required("evaluation.give_feedback", raise_exception=True)
def give_call_feedback(request: HttpRequest, classify_call_id: int) -> HttpResponse:
    """Mark a logged decision wrong with the right label and a reason; it becomes a feedback example."""
    call = _call_or_404(classify_call_id, request.user)
    form = FeedbackForm(request.POST, call=call)
    feedback = form_submit(form, lambda data: decision_feedback_give(call=call, user=request.user, **data))
    if feedback is not None:
        messages.success(request, f"Recorded: the right label is {feedback.correct_label}. "
                                  f"It is now feedback example #{feedback.example_id}.")
        return redirect("pld-classify-call-detail", call.pk)
    return _call_page(request, call, form, status=400)


@require_POST
@permission_required("evaluation.override_decision", raise_exception=True)
def override_call(request: HttpRequest, classify_call_id: int) -> HttpResponse:
    """Override a logged decision with the right label and a reason, signed with the password."""
    call = _call_or_404(classify_call_id, request.user)
    form = OverrideForm(request.POST, call=call)

    def override(data: dict[str, Any]) -> DecisionOverride:
        with e_signing():
            signature = signature_sign_from_form(
                request, data, meaning=Meaning.DECISION_OVERRIDDEN,
                content_sha256=decision_override_signed_content(call=call, overridden_label=data["overridden_label"]),
            )
            return decision_override(call=call, overridden_label=data["overridden_label"], reason=data["reason"],
                                     user=request.user, signature=signature)

    done = form_submit(form, override)
    if done is not None:
        messages.success(request, f"Overridden: the outcome of this decision is now {done.overridden_label}. "
                                  "It is signed and on the record.")
        return redirect("pld-classify-call-detail", call.pk)
    return _call_page(request, call, status=400, override_form=form)


def _dossier_call(request: HttpRequest, request_id: uuid.UUID) -> ClassifyCall:
    return _call_by_request_id_or_404(request_id, request.user)


@require_GET
@permission_required("evaluation.watch_production", raise_exception=True)
def decision_dossier_page(request: HttpRequest, request_id: uuid.UUID) -> HttpResponse:
    """Show everything on record about one production decision: who is responsible for it."""
    call = _dossier_call(request, request_id)
    return render(request, "evaluation/decision_dossier.html", {
        "call": call, "dossier": decision_dossier(call), "explanation": latest_explanation(call),
    })


@require_GET
@permission_required("evaluation.watch_production", raise_exception=True)
def decision_dossier_export(request: HttpRequest, request_id: uuid.UUID) -> HttpResponse:
    """Download the decision's dossier as JSON."""
    call = _dossier_call(request, request_id)
    response = JsonResponse(decision_dossier(call), json_dumps_params={"indent": 1, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="decision-{call.request_id}.json"'
    return response
