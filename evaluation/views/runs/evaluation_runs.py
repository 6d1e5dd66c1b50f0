"""Evaluation run pages: the list, starting a run, its live progress and results, cancel/resume, compare."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evaluation.forms import RunStartForm
from evaluation.models import EvaluationRun, Prediction
from evaluation.runs.metrics import confusion_rows, correctness_flips
from evaluation.runs.provenance import run_prompt_provenance
from evaluation.runs.services import (
    evaluation_run_cancel,
    evaluation_run_resume,
    evaluation_run_start,
    run_is_stale,
)
from evaluation.runs.shards import shards_summary
from evaluation.views.shortcuts import run_or_404
from pldreview.web import HtmxHttpRequest, form_submit, stop_polling_and_refresh
from rules.membership import visible
from rules.models import PromptVersion, Task

LIST_SIZE = 100
FAILURES_PAGE_SIZE = 20
FLIPS_SHOWN = 50




def _progress(run: EvaluationRun) -> dict[str, Any]:
    done = run.predictions.count()
    total = run.n_examples or 1
    job = run.job
    return {
        "done": done,
        "total": run.n_examples,
        "percent": min(100, round(100 * done / total)),
        "eta": job.eta if job is not None else None,
        "message": job.message if job is not None else "",
        "stale": run_is_stale(run),
        "shards": shards_summary(run),
    }


@require_GET
@permission_required("evaluation.view_evaluationrun", raise_exception=True)
def run_list(request: HtmxHttpRequest) -> HttpResponse:
    runs = visible(EvaluationRun.objects.select_related("task", "prompt_version", "created_by"), request.user)
    task_name = request.GET.get("task", "")
    if task_name:
        runs = runs.filter(task__name=task_name)
    runs = list(runs[:LIST_SIZE])
    context = {
        "runs": runs,
        "tasks": Task.objects.visible_to(request.user).order_by("name"),
        "task_name": task_name,
    }
    return render(request, "evaluation/run_list.html", context)


@require_http_methods(["GET", "POST"])
@permission_required("evaluation.run_evaluation", raise_exception=True)
def run_start(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = RunStartForm(request.POST)
        run = form_submit(form, lambda data: evaluation_run_start(
            task=data["task"],
            mode=data["mode"],
            split=data["split"],
            prompt_version=data["prompt_version"],
            prompt_text=data["prompt_text"] or "",
            limit=data["limit"],
            seed=data["seed"],
            k_shot=data["k_shot"],
            calibrate=data["calibrate"],
            user=request.user,
        ))
        if run is not None:
            messages.success(request, f"Evaluation run {run.pk} started: {run.n_examples} examples.")
            return redirect(run)
    else:
        initial: dict[str, Any] = {}
        if request.GET.get("task"):
            initial["task"] = Task.objects.filter(name=request.GET["task"]).first()
        if request.GET.get("prompt_version", "").isdigit():
            version = PromptVersion.objects.filter(pk=int(request.GET["prompt_version"])).first()
            if version is not None:
                initial.update(prompt_version=version, task=version.task, mode=EvaluationRun.Mode.PLD)
        if request.GET.get("mode") in EvaluationRun.Mode.values:
            initial["mode"] = request.GET["mode"]
        form = RunStartForm(initial=initial)
    return render(request, "evaluation/run_start.html", {"form": form})


@require_GET
@permission_required("evaluation.view_evaluationrun", raise_exception=True)
def run_detail(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = run_or_404(run_id, user=request.user)
    live = run.status in {EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING}
    if request.htmx and request.GET.get("part") == "progress":
        context = {"run": run, "progress": _progress(run), "oob": True}
        response = render(request, "evaluation/run_detail.html#run-progress", context)
        return response if live else stop_polling_and_refresh(response)
    failures = (
        Prediction.objects.filter(run=run, correct=False).select_related("example").order_by("id")
    )
    page = Paginator(failures, FAILURES_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "run": run,
        "live": live,
        "progress": _progress(run) if live or run.status != EvaluationRun.Status.FINISHED else None,
        "confusion": confusion_rows(run.metrics.get("labels") or run.task.label_names, run.metrics["confusion"])
        if run.metrics.get("confusion") else [],
        "per_class": [
            {"label": label, **run.metrics.get("per_class", {}).get(label, {})}
            for label in run.metrics.get("labels", [])
        ],
        "failures": page,
        "prompt_provenance": run_prompt_provenance(run),
        "shards": shards_summary(run),
        "label_names": run.task.label_names,
        "other_runs": EvaluationRun.objects.filter(task=run.task, status=EvaluationRun.Status.FINISHED)
        .exclude(pk=run.pk)
        .order_by("-created_at")[:20],
    }
    if request.htmx and request.GET.get("part") == "failures":
        return render(request, "evaluation/run_detail.html#run-failures", context)
    return render(request, "evaluation/run_detail.html", context)


@require_POST
@permission_required("evaluation.run_evaluation", raise_exception=True)
def run_cancel(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = run_or_404(run_id, user=request.user)
    evaluation_run_cancel(run=run)
    messages.info(request, "Cancellation requested; the run stops after its current example. Resume continues it.")
    return redirect(run)


@require_POST
@permission_required("evaluation.run_evaluation", raise_exception=True)
def run_resume(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = run_or_404(run_id, user=request.user)
    try:
        evaluation_run_resume(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "The run is queued again; it skips the examples already predicted.")
    return redirect(run)


def _flips(a: EvaluationRun, b: EvaluationRun) -> dict[str, Any]:
    before = {p.example_id: p for p in a.predictions.select_related("example")}
    after = {p.example_id: p for p in b.predictions.all()}
    flips = correctness_flips({i: p.correct for i, p in before.items()}, {i: p.correct for i, p in after.items()})
    return {
        "n_common": flips.n_common,
        "right_to_wrong": [(before[i], after[i]) for i in flips.right_to_wrong[:FLIPS_SHOWN]],
        "wrong_to_right": [(before[i], after[i]) for i in flips.wrong_to_right[:FLIPS_SHOWN]],
        "n_right_to_wrong": len(flips.right_to_wrong),
        "n_wrong_to_right": len(flips.wrong_to_right),
    }


COMPARED_METRICS = [
    ("macro_f1", "Macro-F1", True),
    ("accuracy", "Accuracy", True),
    ("latency_ms_p50", "Latency p50 (ms)", False),
    ("latency_ms_p95", "Latency p95 (ms)", False),
    ("prompt_tokens_mean", "Prompt tokens per example", False),
    ("tokens_processed_mean", "Tokens processed per example", False),
]


@require_GET
@permission_required("evaluation.view_evaluationrun", raise_exception=True)
def run_compare(request: HtmxHttpRequest) -> HttpResponse:
    runs = visible(EvaluationRun.objects.select_related("task", "prompt_version"), request.user).order_by("-created_at")
    a_id, b_id = request.GET.get("a", ""), request.GET.get("b", "")
    context: dict[str, Any] = {"choices": runs[:LIST_SIZE], "a_id": a_id, "b_id": b_id}
    if a_id.isdigit() and b_id.isdigit():
        a = get_object_or_404(runs, pk=int(a_id))
        b = get_object_or_404(runs, pk=int(b_id))
        rows = []
        for key, title, higher_is_better in COMPARED_METRICS:
            va, vb = a.metrics.get(key), b.metrics.get(key)
            delta = round(vb - va, 4) if va is not None and vb is not None else None
            better = None if not delta else (delta > 0) == higher_is_better
            rows.append({"title": title, "a": va, "b": vb, "delta": delta, "better": better})
        if a.rule_adherence is not None or b.rule_adherence is not None:
            va, vb = a.rule_adherence, b.rule_adherence
            delta = round(vb - va, 4) if va is not None and vb is not None else None
            rows.append({"title": "Rule adherence", "a": va, "b": vb, "delta": delta, "better": delta and delta > 0})
        context.update(a=a, b=b, rows=rows, same_task=a.task_id == b.task_id, **_flips(a, b))
    elif a_id or b_id:
        context["error"] = "Pick two runs to compare."
    return render(request, "evaluation/run_compare.html", context)


def compare_url(a: EvaluationRun, b: EvaluationRun) -> str:
    """Return the URL comparing run a (before) with run b (after)."""
    return f"{reverse('pld-evaluation-compare')}?a={a.pk}&b={b.pk}"
