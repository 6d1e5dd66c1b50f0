"""Task pages: the list of tasks and one task's examples and label distribution."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.views.decorators.http import require_GET

from rules.models import Task


@require_GET
@login_required
@permission_required("rules.view_task", raise_exception=True)
def task_list(request: HttpRequest) -> HttpResponse:
    return render(request, "rules/task_list.html", {"tasks": Task.objects.order_by("name")})


@require_GET
@login_required
@permission_required("rules.view_task", raise_exception=True)
def task_detail(request: HttpRequest, task_name: str) -> HttpResponse:
    task = get_object_or_404(Task, name=task_name)
    return render(request, "rules/task_detail.html", {"task": task})


urlpatterns = [
    path("tasks/", task_list, name="pld-task-list"),
    path("tasks/<slug:task_name>/", task_detail, name="pld-task-detail"),
]
