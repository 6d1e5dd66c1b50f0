"""The overview page everyone lands on after login: tasks, rules awaiting review, recent jobs."""
from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from pldreview.jobs import jobs_visible_to
from pldreview.models import Job
from rules.membership import visible
from rules.models import Rule, Task
from rules.panels import task_banners
from rules.review.queries import rules_nobody_may_approve, waiting_for


@require_GET
@permission_required("rules.view_task", raise_exception=True)
def home(request: HttpRequest) -> HttpResponse:
    """Show the overview: tasks, rules awaiting review, recent jobs."""
    tasks = Task.objects.visible_to(request.user).order_by("name")
    pending = visible(Rule.objects.filter(status=Rule.Status.PENDING), request.user).count()
    jobs = jobs_visible_to(Job.objects.select_related("created_by"), request.user)[:5]
    n_waiting = waiting_for(request.user).count() if request.user.has_perm("rules.review_rule") else None
    # Admins give the Reviewer role, so they are the ones told when a rule has nobody left to approve it.
    stuck = rules_nobody_may_approve() if request.user.has_perm("accounts.manage_users") else []
    context = {"tasks": tasks, "pending": pending, "jobs": jobs, "n_waiting": n_waiting, "stuck": stuck,
               "banners": task_banners(list(tasks))}
    return render(request, "rules/home.html", context)
