"""Refine page of an evaluation run: its inputs (failures, feedback examples), the start form, the proposals."""
from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from evaluation.forms import RefineForm
from evaluation.models import EvaluationRun
from evaluation.runs.refine import JOB_KIND as REFINE_JOB_KIND
from evaluation.runs.refine import feedback_examples
from evaluation.views.shortcuts import run_or_404
from pldreview.web import job_start_or_form_page
from rules.models import Rule


def _page(request: HttpRequest, run: EvaluationRun, form: RefineForm | None = None) -> dict:
    proposals = (
        Rule.objects.filter(origin=Rule.Origin.REFINE, proposal__evaluation_run=run.pk)
        .select_related("refines")
        .order_by("id")
    )
    refusal = ""
    if run.status != EvaluationRun.Status.FINISHED:
        refusal = "This run has not finished; refine needs a finished run."
    elif run.split not in {"train", "dev"}:
        refusal = "Refine learns from train or dev runs only; the test split stays unseen."
    return {"run": run, "proposals": proposals, "form": form or RefineForm(), "refusal": refusal,
            "n_failures": run.predictions.filter(correct=False).count(),
            "feedback_examples": feedback_examples(run.task)}


@require_GET
@permission_required("evaluation.view_evaluationrun", raise_exception=True)
def refine_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_or_404(run_id, user=request.user)
    return render(request, "evaluation/refine.html", _page(request, run))


@require_POST
@permission_required("rules.run_teacher", raise_exception=True)
def start_refine(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_or_404(run_id, user=request.user)
    form = RefineForm(request.POST)
    context = _page(request, run, form)
    if context["refusal"]:
        form.add_error(None, context["refusal"])
    return job_start_or_form_page(
        request, form=form, kind=REFINE_JOB_KIND, title=f"Refine rules from evaluation {run.pk}",
        params={"evaluation": run.pk}, template="evaluation/refine.html", page=lambda: context,
    )
