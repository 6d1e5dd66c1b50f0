"""Task pages: the task list, one task's label distribution and examples, one example, and dataset import."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from pldreview.signatures import Meaning, e_signing, signature_sign_from_form, signing_context
from pldreview.web import HtmxHttpRequest, form_add_service_errors, form_submit
from rules.datasets.dataset_import import dataset_import, import_summary
from rules.forms import DatasetImportForm, TaskMemberForm, UserTaskForm
from rules.membership import (
    membership_changes,
    membership_content_sha256,
    task_member_add,
    task_member_remove,
    user_tasks_panel,
)
from rules.models import DatasetImport, Example, Split, Task, TaskMembership, TaskMembershipChange
from rules.panels import task_banners, task_links, task_panels
from rules.review.evidence import excerpts, highlight
from rules.views.shortcuts import task_object_or_404, task_or_404

EXAMPLES_PER_PAGE = 50
GROUP_PREVIEW_LIMIT = 40


def _example_or_404(example_id: int, user: Any) -> Example:
    return task_object_or_404(Example.objects.select_related("task", "dataset_import"), user=user, pk=example_id)


def _with_preview(task: Task, examples: QuerySet[Example]) -> QuerySet[Example]:
    """Load the example's own fields (not the shared context) without the whole inputs document."""
    # A ContractNLI page of 50 examples would otherwise carry 50 copies of a ~10k-character contract.
    own = [name for name in task.input_fields if name != task.shared_context_field]
    fields = {f"preview_{i}": KeyTextTransform(name, "inputs") for i, name in enumerate(own)}
    return examples.defer("inputs", "evidence").annotate(**fields)


def _preview(example: Example) -> str:
    """Return the example's own fields as one line."""
    parts, i = [], 0
    while hasattr(example, f"preview_{i}"):
        parts.append(getattr(example, f"preview_{i}") or "")
        i += 1
    return " — ".join(parts)


def _distribution(task: Task) -> dict[str, Any]:
    """Return label × split counts with totals, in the task's label order."""
    counts = {
        (row["gold_label"], row["split"]): row["n"]
        for row in task.examples.values("gold_label", "split").annotate(n=Count("id")).order_by()
    }
    labels = list(task.label_names) + sorted({label for label, _ in counts} - set(task.label_names))
    rows = []
    for label in labels:
        cells = [counts.get((label, split), 0) for split in Split.values]
        rows.append({"label": label, "description": task.label_description(label), "cells": cells,
                     "total": sum(cells)})
    totals = [sum(row["cells"][i] for row in rows) for i in range(len(Split.values))]
    return {"splits": Split.labels, "rows": rows, "totals": totals, "total": sum(totals)}


@require_GET
@permission_required("rules.view_task", raise_exception=True)
def task_list(request: HtmxHttpRequest) -> HttpResponse:
    """List every task with its labels, fields and number of examples."""
    tasks = Task.objects.visible_to(request.user).annotate(n_examples=Count("examples")).order_by("name")
    return render(request, "rules/task_list.html", {"tasks": tasks})


@require_GET
@permission_required("rules.view_task", raise_exception=True)
def task_detail(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    """Show a task: labels, label counts per split, filtered examples (htmx fragment), imports."""
    task = task_or_404(task_name, user=request.user)
    split = request.GET.get("split", "")
    label = request.GET.get("label", "")
    examples = task.examples.order_by("id")
    if split in Split.values:
        examples = examples.filter(split=split)
    if label:
        examples = examples.filter(gold_label=label)
    page = Paginator(_with_preview(task, examples), EXAMPLES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "task": task,
        "page": page,
        "rows": [{"example": e, "preview": _preview(e)} for e in page.object_list],
        "split": split,
        "label": label,
        "split_choices": Split.choices,
        "filter_query": f"split={split}&label={label}",
    }
    if request.htmx:
        return render(request, "rules/task_detail.html#examples", context)
    context["distribution"] = _distribution(task)
    context["imports"] = DatasetImport.objects.filter(task=task).select_related("imported_by")[:20]
    context["feedback_waiting"] = task.examples.filter(split=Split.FEEDBACK).count()
    context["task_panels"] = task_panels(task, request.user)
    context["task_links"] = task_links(task, request.user)
    context["banners"] = task_banners([task])
    return render(request, "rules/task_detail.html", context)


@require_GET
@permission_required("rules.view_example", raise_exception=True)
def example_detail(request: HtmxHttpRequest, example_id: int) -> HttpResponse:
    """Show one example with its evidence marked and the other examples of its group."""
    example = _example_or_404(example_id, request.user)
    task = example.task
    fields = []
    # The example's own fields (the hypothesis) first; the long shared document after them.
    for name in sorted(task.input_fields, key=lambda n: n == task.shared_context_field):
        text = str(example.inputs.get(name, ""))
        shared = name == task.shared_context_field
        fields.append({
            "name": name,
            "shared": shared,
            "html": highlight(text, example.evidence if shared else []),
            "excerpts": excerpts(text, example.evidence) if shared and example.evidence else "",
            "n_chars": len(text),
        })
    siblings = []
    if example.group_key:
        siblings = list(
            task.examples.filter(group_key=example.group_key).exclude(pk=example.pk).order_by("id")
            .values("pk", "gold_label", "split", "source_ref")[:GROUP_PREVIEW_LIMIT]
        )
    same_split = task.examples.filter(split=example.split)
    context = {
        "example": example,
        "task": task,
        "fields": fields,
        "label_description": task.label_description(example.gold_label),
        "siblings": siblings,
        "previous": same_split.filter(pk__lt=example.pk).order_by("-pk").values_list("pk", flat=True).first(),
        "next": same_split.filter(pk__gt=example.pk).order_by("pk").values_list("pk", flat=True).first(),
    }
    if request.user.has_perm("rules.view_rule"):
        context["rules"] = example.rules.order_by("id")[:20]
    return render(request, "rules/example_detail.html", context)


@require_http_methods(["GET", "POST"])
@permission_required("rules.import_dataset", raise_exception=True)
def import_dataset(request: HtmxHttpRequest) -> HttpResponse:
    """Import an uploaded dataset file into a task; a refused file comes back as a form error."""
    if request.method == "POST":
        form = DatasetImportForm(request.POST, request.FILES)
        record = form_submit(form, lambda data: dataset_import(
            task_name=data["task"],
            fmt=data["fmt"],
            path_or_file=data["file"],
            split=data["split"] or None,
            split_seed=None if data["split"] else data["split_seed"],
            field_map=data["field_map"],
            user=request.user,
        ))
        if record is not None:
            summary = import_summary(record)
            by_label = ", ".join(f"{name} {n:,}" for name, n in summary["labels"].items()) or "nothing new"
            messages.success(
                request,
                f"Imported {record.source_name}: {record.n_records:,} records, {record.n_added:,} added "
                f"({by_label}), {record.n_skipped:,} already present.",
            )
            return redirect(record.task)
    else:
        form = DatasetImportForm(initial={"task": request.GET.get("task", "")})
    tasks = Task.objects.order_by("name").values_list("name", flat=True)
    return render(request, "rules/dataset_import.html", {"form": form, "task_names": list(tasks)})


def _member_change_signed(request: HtmxHttpRequest, form: TaskMemberForm | UserTaskForm, *, task: Task,
                          user: User) -> bool:
    """Sign and make the form's membership change; put a refusal on the form and return whether it was made."""
    data = form.cleaned_data
    adding = data["action"] == "add"
    meaning = Meaning.TASK_MEMBER_ADDED if adding else Meaning.TASK_MEMBER_REMOVED
    content = membership_content_sha256(task=task, user=user, action=data["action"])
    try:
        with e_signing():
            signature = signature_sign_from_form(request, data, meaning=meaning, content_sha256=content)
            act = task_member_add if adding else task_member_remove
            act(task=task, user=user, by=request.user, reason=data["reason"], signature=signature)
    except ValidationError as exc:
        form_add_service_errors(form, exc)
        return False
    verb = "added to" if adding else "removed from"
    messages.success(request, f"{user.username} {verb} {task.name}, signed.")
    return True


# What the signing fields say the signature means: one form makes either change, the action decides which.
_MEMBER_MEANING = (f"{Meaning.TASK_MEMBER_ADDED.label} or {Meaning.TASK_MEMBER_REMOVED.label.lower()}, "
                   "as the action says")


@require_http_methods(["GET", "POST"])
@permission_required("rules.manage_task_members", raise_exception=True)
def task_members(request: HtmxHttpRequest, task_name: str) -> HttpResponse:
    """List who may see and decide the task (need-to-know) and every signed change; an Admin adds or removes a
    member by signing ("Task member added" / "Task member removed"), with a reason."""
    task = task_or_404(task_name, user=request.user)
    form = TaskMemberForm(request.POST or None, task=task)
    status = 200
    if request.method == "POST":
        if form.is_valid() and _member_change_signed(request, form, task=task, user=form.cleaned_data["user"]):
            return redirect("pld-task-members", task_name=task.name)
        status = 400
    members = list(TaskMembership.objects.filter(task=task).select_related("user", "added_by"))
    context = {"task": task, "members": members, "changes": membership_changes(task), "form": form,
               "auditors_scoped": settings.PLD_AUDITORS_SCOPED, "meaning": _MEMBER_MEANING,
               **signing_context(request)}
    return render(request, "rules/task_members.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required("rules.manage_task_members", raise_exception=True)
def user_tasks(request: HtmxHttpRequest, user_id: int) -> HttpResponse:
    """The tasks one person is a member of; an Admin adds them to a task or removes them, by signing.

    The user page carries the same form; a refused change comes back here with its errors and the text kept.
    """
    target = get_object_or_404(User, pk=user_id)
    form = UserTaskForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid() and _member_change_signed(request, form, task=form.cleaned_data["task"], user=target):
            return redirect("pld-user-detail", user_id=target.pk)
        status = 400
    panel = user_tasks_panel(target)[1]
    changes = TaskMembershipChange.objects.filter(user=target).select_related("task", "signature")[:50]
    context = {"target": target, "panel": panel, "changes": list(changes), "form": form,
               "meaning": _MEMBER_MEANING, **signing_context(request)}
    return render(request, "rules/user_task_members.html", context, status=status)
