"""Lookups the evaluation pages share: the object named in the URL, or 404 (nothing here scopes by the user)."""
from __future__ import annotations

from django.shortcuts import get_object_or_404

from evaluation.models import EvaluationRun


def run_or_404(run_id: int) -> EvaluationRun:
    """Return the evaluation run with what its pages show, or raise Http404; every role that views runs sees all."""
    runs = EvaluationRun.objects.select_related("task", "prompt_version", "job", "created_by")
    return get_object_or_404(runs, pk=run_id)
