"""Prompt version pages: the list, one version (text, rules, evaluations, promotions), compare, compile."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from rules.membership import visible
from rules.models import PromptVersion, PromptVersionRule, Rule, Task
from rules.panels import prompt_version_panels
from rules.prompts.compiler import prompt_version_compile, prompt_version_preview
from rules.prompts.diff import prompt_version_diff
from rules.views.shortcuts import prompt_version_or_404, task_or_404


@require_GET
@permission_required("rules.view_promptversion", raise_exception=True)
def prompt_version_list(request: HttpRequest) -> HttpResponse:
    """List prompt versions, newest first, for every task or one (``?task=``)."""
    tasks = list(
        Task.objects.visible_to(request.user).order_by("name").annotate(
            n_approved=Count("rules", filter=Q(rules__status=Rule.Status.APPROVED), distinct=True)
        )
    )
    selected = next((t for t in tasks if t.name == request.GET.get("task")), None)
    versions = (
        visible(PromptVersion.objects.select_related("task", "compiled_by"), request.user)
        .annotate(n_rules=Count("entries", distinct=True), n_runs=Count("evaluation_runs", distinct=True))
        .order_by("task__name", "-number")
    )
    if selected is not None:
        versions = versions.filter(task=selected)
    return render(request, "rules/prompt_version_list.html", {
        "versions": list(versions), "tasks": tasks, "selected": selected,
    })


@require_GET
@permission_required("rules.view_promptversion", raise_exception=True)
def prompt_version_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    """Show a version's text and its rules at their numbers, with what other apps add (evaluations, promotions)."""
    version = prompt_version_or_404(version_id, user=request.user)
    entries = PromptVersionRule.objects.filter(prompt_version=version).select_related("rule", "revision")
    others = PromptVersion.objects.filter(task=version.task).exclude(pk=version.pk).order_by("-number")
    return render(request, "rules/prompt_version_detail.html", {
        "version": version,
        "entries": list(entries.order_by("position")),
        "version_panels": prompt_version_panels(version, request.user),
        "others": list(others),
    })


@require_GET
@permission_required("rules.view_promptversion", raise_exception=True)
def prompt_version_compare(request: HttpRequest) -> HttpResponse:
    """Compare two versions of a task's prompt (``?a=ID&b=ID``): text diff and rules added, removed, changed."""
    versions = visible(PromptVersion.objects.select_related("task"), request.user).order_by("task__name", "-number")
    old = new = None
    error = ""
    try:
        a, b = int(request.GET.get("a", "")), int(request.GET.get("b", ""))
    except ValueError:
        a = b = 0
    if a and b:
        old = get_object_or_404(versions, pk=a)
        new = get_object_or_404(versions, pk=b)
        if old.task_id != new.task_id:
            error = "Those versions belong to different tasks; compare versions of one task."
        elif old.number > new.number:
            old, new = new, old
    diff = prompt_version_diff(old=old, new=new) if old and new and not error else None
    return render(request, "rules/prompt_version_compare.html", {
        "versions": list(versions), "old": old, "new": new, "diff": diff, "error": error,
    })


@require_http_methods(["GET", "POST"])
@permission_required("rules.compile_prompt", raise_exception=True)
def compile_prompt(request: HttpRequest, task_name: str) -> HttpResponse:
    """Show where new rules land in the rule set; compile it once the Admin confirms (or say what blocks it)."""
    task = task_or_404(task_name, user=request.user)
    preview = prompt_version_preview(task=task)
    error = ""
    if request.method == "POST":
        if preview.needs_confirmation and request.POST.get("confirm_placement") != "yes":
            error = "Confirm that the new and revised rules are where they should be, or ask for a reorder first."
        else:
            try:
                version, created = prompt_version_compile(task=task, user=request.user)
            except ValidationError as exc:
                error = " ".join(exc.messages)
            else:
                if created:
                    messages.success(
                        request, f"Compiled {version}: {version.entries.count()} rules, {version.token_count} tokens."
                    )
                else:
                    messages.info(request, f"The approved rule set has not changed since {version}; "
                                  "no new version was made.")
                return redirect(version.get_absolute_url())
    return render(request, "rules/prompt_version_compile.html", {"preview": preview, "task": task, "error": error},
                  status=400 if error else 200)
