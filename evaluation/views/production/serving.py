"""The serving page of a task: whether production serving is stopped, its stop and resume history, and the
signed forms that stop or resume it (Admins)."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from evaluation.forms import ServingStopForm
from evaluation.production.serving_stops import (
    resume_refusal,
    serving_stop_current,
    task_serving_resume,
    task_serving_stop,
    task_stops,
)
from evaluation.release.promotion import production_prompt_version
from pldreview.signatures import Meaning, e_signing, serving_content_sha256, signature_sign_from_form, signing_context
from pldreview.web import form_add_service_errors
from rules.models import Task
from rules.panels import task_banners
from rules.views.shortcuts import task_or_404


def _task_for_user(request: HttpRequest, task_name: str) -> Task:
    # The one lookup of this module's task (per-task access scopes it here).
    return task_or_404(task_name, user=request.user)


def _page(request: HttpRequest, task: Task, form: ServingStopForm | None = None, *, status: int = 200) -> HttpResponse:
    stop = serving_stop_current(task)
    return render(request, "evaluation/serving.html", {
        "task": task, "stop": stop, "history": list(reversed(task_stops(task))), "form": form or ServingStopForm(),
        "production": production_prompt_version(task), "banners": task_banners([task]),
        "resume_refusal": resume_refusal(stop, request.user) if stop is not None else "",
        "four_eyes": settings.PLD_REQUIRED_APPROVALS > 1,
        "meaning": Meaning.SERVING_RESUMED.label if stop is not None else Meaning.SERVING_STOPPED.label,
        **signing_context(request),
    }, status=status)


@require_GET
@permission_required("evaluation.watch_production", raise_exception=True)
def serving_page(request: HttpRequest, task_name: str) -> HttpResponse:
    """Show whether the task's serving is stopped, every stop and resume with its signature, and the forms."""
    return _page(request, _task_for_user(request, task_name))


@require_POST
@permission_required("evaluation.stop_serving", raise_exception=True)
def stop_serving(request: HttpRequest, task_name: str) -> HttpResponse:
    """Stop the task's production serving at once (a signing with a reason)."""
    task = _task_for_user(request, task_name)
    form = ServingStopForm(request.POST)
    if form.is_valid():
        content = serving_content_sha256(task_id=task.pk, task_name=task.name, action="stop")
        try:
            with e_signing():
                signature = signature_sign_from_form(request, form.cleaned_data, meaning=Meaning.SERVING_STOPPED,
                                                     content_sha256=content)
                task_serving_stop(task=task, user=request.user, reason=form.cleaned_data["reason"],
                                  signature=signature)
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(request, f"Serving of {task.name} is stopped: the API answers 503 from now on.")
            return redirect("pld-serving", task.name)
    return _page(request, task, form, status=400)


@require_POST
@permission_required("evaluation.stop_serving", raise_exception=True)
def resume_serving(request: HttpRequest, task_name: str) -> HttpResponse:
    """Resume the task's production serving after its stop (a signing with a reason; four eyes when configured)."""
    task = _task_for_user(request, task_name)
    form = ServingStopForm(request.POST)
    stop = serving_stop_current(task)
    if form.is_valid():
        content = serving_content_sha256(task_id=task.pk, task_name=task.name, action="resume",
                                         lifts=stop.pk if stop is not None else None)
        try:
            with e_signing():
                signature = signature_sign_from_form(request, form.cleaned_data, meaning=Meaning.SERVING_RESUMED,
                                                     content_sha256=content)
                task_serving_resume(task=task, user=request.user, reason=form.cleaned_data["reason"],
                                    signature=signature)
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(request, f"Serving of {task.name} is resumed: the API decides again.")
            return redirect("pld-serving", task.name)
    return _page(request, task, form, status=400)
