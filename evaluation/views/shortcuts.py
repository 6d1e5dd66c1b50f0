"""Lookups the evaluation pages share: the object named in the URL if the user may see its task, or 404.

Built on ``rules.views.shortcuts.task_object_or_404`` (need-to-know, docs/security.md).
"""
from __future__ import annotations

from typing import Any

from evaluation.models import EvaluationRun
from rules.views.shortcuts import task_object_or_404


def run_or_404(run_id: int, *, user: Any) -> EvaluationRun:
    """Return the evaluation run with what its pages show if the user may see its task, or raise Http404."""
    runs = EvaluationRun.objects.select_related("task", "prompt_version", "job", "created_by")
    return task_object_or_404(runs, user=user, pk=run_id)
