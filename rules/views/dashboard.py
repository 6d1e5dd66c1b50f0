"""The overview page everyone lands on after login: tasks, rules awaiting review, recent jobs."""
from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from pldreview.models import Job
from rules.models import Rule, Task
from rules.queries import waiting_for


@require_GET
@permission_required("rules.view_task", raise_exception=True)
def home(request: HttpRequest) -> HttpResponse:
    """Show the overview: tasks, rules awaiting review, recent jobs."""
    tasks = Task.objects.order_by("name")
    pending = Rule.objects.filter(status=Rule.Status.PENDING).count()
    jobs = Job.objects.select_related("created_by")[:5]
    n_waiting = waiting_for(request.user).count() if request.user.has_perm("rules.review_rule") else None
    context = {"tasks": tasks, "pending": pending, "jobs": jobs, "n_waiting": n_waiting}
    return render(request, "rules/home.html", context)
