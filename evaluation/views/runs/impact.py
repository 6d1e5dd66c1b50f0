"""Rule impact pages (a version's runs, one run's results, start, cancel, resume) and "Why this label?"."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from evaluation.models import ClassifyCall, Prediction, RuleImpactRun
from evaluation.runs.impact import decision_explain_start, latest_prediction_explanation
from evaluation.runs.impact_runs import rule_impact_cancel, rule_impact_resume, rule_impact_start
from evaluation.runs.shards import shards_summary
from rules.models import PromptVersion, Split
from rules.views.shortcuts import prompt_version_or_404, task_object_or_404

SPLITS = [Split.DEV, Split.TEST, Split.TRAIN]


# Every lookup is scoped to the tasks the user may see (need-to-know): 404 otherwise, as for a missing object.
def _version_or_404(request: HttpRequest, version_id: int) -> PromptVersion:
    return prompt_version_or_404(version_id, user=request.user)


def _impact_run_or_404(request: HttpRequest, run_id: int) -> RuleImpactRun:
    runs = RuleImpactRun.objects.select_related("prompt_version", "task", "job", "created_by")
    return task_object_or_404(runs, user=request.user, pk=run_id)


def _call_or_404(request: HttpRequest, call_id: int) -> ClassifyCall:
    calls = ClassifyCall.objects.select_related("task", "prompt_version")
    return task_object_or_404(calls, user=request.user, pk=call_id)


def _prediction_or_404(request: HttpRequest, run_id: int, prediction_id: int) -> Prediction:
    predictions = Prediction.objects.select_related("run__task", "run__prompt_version", "example")
    return task_object_or_404(predictions, user=request.user, task_path="run__task", pk=prediction_id, run_id=run_id)


@require_GET
@permission_required("evaluation.view_evaluationrun", raise_exception=True)
def rule_impact_list(request: HttpRequest, version_id: int) -> HttpResponse:
    """List a version's rule impact runs, newest first, with the form that starts one."""
    version = _version_or_404(request, version_id)
    runs = RuleImpactRun.objects.filter(prompt_version=version).select_related("created_by", "job")
    return render(request, "evaluation/rule_impact_list.html", {"version": version, "runs": runs, "splits": SPLITS})


@require_POST
@permission_required("evaluation.run_evaluation", raise_exception=True)
def rule_impact_start_view(request: HttpRequest, version_id: int) -> HttpResponse:
    """Queue a rule impact run of the version on the chosen split and sample."""
    version = _version_or_404(request, version_id)
    split = request.POST.get("split", Split.DEV)
    sample_text = request.POST.get("sample", "").strip()
    try:
        if split not in SPLITS:
            raise ValidationError("Choose the dev, test or train split.")
        if sample_text and not sample_text.isdigit():
            raise ValidationError("The sample is a number of examples.")
        run = rule_impact_start(prompt_version=version, split=split, sample=int(sample_text) if sample_text else None,
                                user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("pld-rule-impact-list", version.pk)
    messages.success(request, f"Rule impact {run.pk} is queued; its progress shows on its job.")
    return redirect(run)


@require_GET
@permission_required("evaluation.view_evaluationrun", raise_exception=True)
def rule_impact_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    """Show one impact run: its progress, or its per-rule table ordered by effect and the set summary."""
    run = _impact_run_or_404(request, run_id)
    return render(request, "evaluation/rule_impact_detail.html",
                  {"run": run, "results": run.results, "shards": shards_summary(run)})


@require_POST
@permission_required("evaluation.run_evaluation", raise_exception=True)
def rule_impact_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Stop an impact run after its current decision; resume continues it."""
    run = rule_impact_cancel(run=_impact_run_or_404(request, run_id))
    messages.info(request, "Cancellation requested; resume continues from the decisions stored.")
    return redirect(run)


@require_POST
@permission_required("evaluation.run_evaluation", raise_exception=True)
def rule_impact_resume_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Queue a cancelled or failed impact run again."""
    run = _impact_run_or_404(request, run_id)
    try:
        rule_impact_resume(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(run)


@require_POST
@permission_required("evaluation.explain_decision", raise_exception=True)
def explain_call(request: HttpRequest, classify_call_id: int) -> HttpResponse:
    """Queue "Why this label?" for a logged call; its job page shows the progress."""
    call = _call_or_404(request, classify_call_id)
    try:
        job = decision_explain_start(user=request.user, call=call)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("pld-classify-call-detail", call.pk)
    return redirect(job)


@require_GET
@permission_required("evaluation.view_prediction", raise_exception=True)
def prediction_detail(request: HttpRequest, run_id: int, prediction_id: int) -> HttpResponse:
    """Show one prediction of an evaluation run and, once computed, why it has its label."""
    prediction = _prediction_or_404(request, run_id, prediction_id)
    return render(request, "evaluation/prediction_detail.html", {
        "prediction": prediction, "explanation": latest_prediction_explanation(prediction),
    })


@require_POST
@permission_required("evaluation.explain_decision", raise_exception=True)
def explain_prediction(request: HttpRequest, run_id: int, prediction_id: int) -> HttpResponse:
    """Queue "Why this label?" for one prediction of a pld run."""
    prediction = _prediction_or_404(request, run_id, prediction_id)
    try:
        job = decision_explain_start(user=request.user, prediction=prediction)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("pld-prediction-detail", run_id, prediction.pk)
    return redirect(job)
