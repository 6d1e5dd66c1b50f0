"""Teacher pages: start extraction and clustering as jobs, list micro-rules and noise, read the call log."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pldreview.jobs import jobs_visible_to
from pldreview.models import Job
from pldreview.web import HtmxHttpRequest, job_start_or_form_page
from rules.forms import ClusteringForm, ExtractionForm, PromoteForm
from rules.models import ClusteringRun, MicroRule, Rule, Split, Task, TeacherCall, sees_every_task
from rules.teacher.clustering import JOB_KIND as CLUSTER_JOB_KIND
from rules.teacher.clustering import micro_rule_promote
from rules.teacher.extraction import JOB_KIND as EXTRACT_JOB_KIND
from rules.views.shortcuts import task_object_or_404, task_or_404


def _teacher_calls(user: Any) -> QuerySet[TeacherCall]:
    """Return the teacher calls the user may see: all for who sees every task, else those of jobs of their tasks."""
    if sees_every_task(user):
        return TeacherCall.objects.all()
    return TeacherCall.objects.filter(job__in=jobs_visible_to(Job.objects.filter(params__has_key="task"), user))


def _can_promote(user: Any) -> bool:
    # Reviewers write candidates by hand (add_rule); Admins run the teacher. Either may promote noise.
    return bool(user.has_perm("rules.add_rule") or user.has_perm("rules.run_teacher"))


def _task_page(request: HtmxHttpRequest, task: Task, **forms_: forms.Form) -> dict[str, Any]:
    by_model = (
        MicroRule.objects.filter(task=task).values("teacher_model").annotate(n=Count("id")).order_by("teacher_model")
    )
    runs = (
        ClusteringRun.objects.filter(task=task)
        .annotate(n_candidates=Count("rule", distinct=True))
        .select_related("created_by")
        .order_by("-id")[:10]
    )
    kinds = (EXTRACT_JOB_KIND, CLUSTER_JOB_KIND)
    teacher_jobs = Job.objects.filter(kind__in=kinds, params__task=task.name)  # task seen
    jobs = teacher_jobs.order_by("-id")[:10]
    return {
        "task": task,
        "n_train": task.examples.filter(split=Split.TRAIN).count(),
        "micro_by_model": list(by_model),
        "n_teacher_candidates": task.rules.filter(origin=Rule.Origin.TEACHER).count(),
        "runs": runs,
        "jobs": jobs,
        "extraction_form": forms_.get("extraction_form") or ExtractionForm(),
        "clustering_form": forms_.get("clustering_form") or ClusteringForm(),
    }


@require_GET
@permission_required("rules.view_microrule", raise_exception=True)
def teacher_task(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    task = task_or_404(task_name, user=request.user)
    return render(request, "rules/teacher_task.html", _task_page(request, task))


@require_POST
@permission_required("rules.run_teacher", raise_exception=True)
def start_extraction(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    task = task_or_404(task_name, user=request.user)
    form = ExtractionForm(request.POST)
    return job_start_or_form_page(
        request, form=form, kind=EXTRACT_JOB_KIND, title=f"Extract micro-rules for {task.name}",
        params={"task": task.name, "split": Split.TRAIN}, template="rules/teacher_task.html",
        page=lambda: _task_page(request, task, extraction_form=form),
    )


@require_POST
@permission_required("rules.run_teacher", raise_exception=True)
def start_clustering(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    task = task_or_404(task_name, user=request.user)
    form = ClusteringForm(request.POST)
    if not MicroRule.objects.filter(task=task).exists():
        form.add_error(None, "There are no micro-rules to cluster yet: run an extraction first.")
    return job_start_or_form_page(
        request, form=form, kind=CLUSTER_JOB_KIND, title=f"Cluster micro-rules of {task.name}",
        params={"task": task.name}, template="rules/teacher_task.html",
        page=lambda: _task_page(request, task, clustering_form=form),
    )


def _promoted_ids(micro_ids: list[int]) -> set[int]:
    rows = Rule.objects.filter(proposal__promoted_noise=True, micro_rules__in=micro_ids)
    return set(rows.values_list("micro_rules", flat=True))


@require_GET
@permission_required("rules.view_microrule", raise_exception=True)
def micro_rule_list(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    task = task_or_404(task_name, user=request.user)
    micro = MicroRule.objects.filter(task=task).select_related("example", "clustering_run").order_by("cluster", "id")
    latest_run = ClusteringRun.objects.filter(task=task).order_by("-id").first()
    unmerged = latest_run.unmerged_clusters if latest_run is not None else {}
    # Micro-rules no teacher candidate speaks for: noise, and the clusters the teacher could not merge.
    left_out = Q(cluster=-1) | Q(clustering_run=latest_run, cluster__in=list(unmerged))
    show_noise = request.GET.get("noise") == "1"
    if show_noise:
        micro = micro.filter(left_out)
    page = Paginator(micro, 100).get_page(request.GET.get("page"))
    context = {
        "task": task,
        "page": page,
        "show_noise": show_noise,
        "latest_run": latest_run,
        "promoted": _promoted_ids([m.pk for m in page.object_list]),
        "can_promote": _can_promote(request.user),
        "n_noise": MicroRule.objects.filter(task=task).filter(left_out).count(),
    }
    return render(request, "rules/teacher_micro_rules.html", context)


@require_POST
def promote_micro_rule(request: HtmxHttpRequest, micro_rule_id: int) -> HttpResponse:
    if not _can_promote(request.user):
        raise PermissionDenied
    micro = task_object_or_404(
        MicroRule.objects.select_related("task", "example", "clustering_run"), user=request.user, pk=micro_rule_id
    )
    form = PromoteForm(request.POST)
    back = reverse("pld-teacher-micro-rules", args=[micro.task.name]) + "?noise=1"
    error = ""
    if form.is_valid():
        try:
            rule = micro_rule_promote(micro_rule=micro, user=request.user, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f"Micro-rule {micro.pk} is now candidate rule {rule.pk}, waiting for review.")
    else:
        error = "The reason is too long."
    if request.htmx:
        context = {"m": micro, "promoted": _promoted_ids([micro.pk]), "can_promote": True, "row_error": error}
        return render(request, "rules/teacher_micro_rules.html#micro-row", context)
    if error:
        messages.error(request, error)
    return redirect(back)


@require_GET
@permission_required("rules.view_teachercall", raise_exception=True)
def teacher_call_list(request: HtmxHttpRequest) -> HttpResponse:
    calls = _teacher_calls(request.user).select_related("job").order_by("-created_at", "-id")
    purpose = request.GET.get("purpose", "")
    if purpose:
        calls = calls.filter(purpose=purpose)
    totals = calls.aggregate(n=Count("id"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    page = Paginator(calls.defer("request", "response"), 50).get_page(request.GET.get("page"))
    context = {"page": page, "totals": totals, "purpose": purpose,
               "purposes": ["extract", "consolidate", "refine", "embed"]}
    return render(request, "rules/teacher_calls.html", context)


@require_GET
@permission_required("rules.view_teachercall", raise_exception=True)
def teacher_call_detail(request: HtmxHttpRequest, call_id: int) -> HttpResponse:
    call = get_object_or_404(_teacher_calls(request.user), pk=call_id)
    return render(request, "rules/teacher_call_detail.html", {"call": call})
