"""The technical file (Annex IV) page of a task: provider statements, generate, download."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from evaluation.forms import ProviderInformationForm
from evaluation.models import ProviderInformation, TechnicalFile
from evaluation.release.technical_file import provider_information_save, technical_file_generate, technical_file_path
from pldreview.web import HtmxHttpRequest
from rules.models import Task
from rules.views.shortcuts import task_object_or_404, task_or_404

FILES_SHOWN = 50


def _task_or_404(request: HtmxHttpRequest, task_name: str) -> Task:
    """Return the task by name if the user may see it, or 404 (need-to-know)."""
    return task_or_404(task_name, user=request.user)


def _page(request: HtmxHttpRequest, task: Task, form: ProviderInformationForm | None = None,
          status: int = 200) -> HttpResponse:
    info = ProviderInformation.objects.filter(task=task).select_related("updated_by").first()
    if form is None:
        form = ProviderInformationForm(instance=info)
    files = TechnicalFile.objects.filter(task=task).select_related("prompt_version", "generated_by")[:FILES_SHOWN]
    context: dict[str, Any] = {"task": task, "form": form, "info": info, "files": list(files)}
    return render(request, "evaluation/technical_file.html", context, status=status)


@require_GET
@permission_required("evaluation.view_report", raise_exception=True)
def technical_file_page(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    return _page(request, _task_or_404(request, task_name))


@require_POST
@permission_required("rules.add_task", raise_exception=True)
def save_provider_information(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    task = _task_or_404(request, task_name)
    form = ProviderInformationForm(request.POST)
    if not form.is_valid():
        return _page(request, task, form, status=400)
    provider_information_save(task=task, user=request.user, values=form.cleaned_data)
    messages.success(request, "The provider's statements are recorded; the next technical file carries them.")
    return redirect("pld-technical-file", task_name=task.name)


@require_POST
@permission_required("evaluation.generate_report", raise_exception=True)
def generate_technical_file(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    task = _task_or_404(request, task_name)
    try:
        record, _pdf, _json = technical_file_generate(task=task, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Technical file {record.pk} is signed and ready to download.")
    return redirect("pld-technical-file", task_name=task.name)


@require_GET
@permission_required("evaluation.view_report", raise_exception=True)
def download_technical_file(request: HtmxHttpRequest, technical_file_id: int, kind: str) -> FileResponse:
    record = task_object_or_404(TechnicalFile.objects.select_related("task"), user=request.user, pk=technical_file_id)
    try:
        handle = technical_file_path(record, kind=kind).open("rb")
    except OSError as exc:  # missing, or a record without a file name (the path is the media directory)
        raise Http404("The technical file is missing from storage.") from exc
    name = f"{record.task.name}-technical-file-{record.pk}.{kind}"
    content_type = "application/json" if kind == "json" else "application/pdf"
    return FileResponse(handle, as_attachment=True, filename=name, content_type=content_type)
