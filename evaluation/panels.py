"""What evaluation shows on the rules app's pages: links from a task, a prompt version's actions, runs, promotions.

rules never imports evaluation (nor names its URLs in templates); these panels are registered in
``EvaluationConfig.ready()`` through rules/panels.py.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.urls import reverse

from evaluation.models import EvaluationRun, Promotion
from rules.models import PromptVersion, Task


def prompt_version_actions(version: PromptVersion, user: Any) -> tuple[str, dict[str, Any]] | None:
    """The buttons to promote or evaluate the version, for those who may."""
    may_promote = user.has_perm("evaluation.promote_prompt") and version.status != "production"
    may_evaluate = user.has_perm("evaluation.run_evaluation")
    if not (may_promote or may_evaluate):
        return None
    return "evaluation/prompt_version_actions.html", {"may_promote": may_promote, "may_evaluate": may_evaluate}


def prompt_version_record(version: PromptVersion, user: Any) -> tuple[str, dict[str, Any]] | None:
    """The version's evaluations and the promotions to or from it, newest first."""
    runs = EvaluationRun.objects.filter(prompt_version=version).order_by("-created_at", "-id")
    promotions = (
        Promotion.objects.filter(task=version.task)
        .filter(Q(prompt_version=version) | Q(from_version=version))
        .select_related(
            "prompt_version", "from_version", "promoted_by", "override_requested_by", "signature",
            "override__request_signature",
        )
        .order_by("-created_at", "-id")
    )
    return "evaluation/prompt_version_record.html", {"runs": list(runs), "promotions": list(promotions)}


def task_production_links(task: Task, user: Any) -> list[tuple[str, str]]:
    """The task's production page, logged decisions and technical file, for those who may see them."""
    links = []
    if user.has_perm("evaluation.watch_production"):
        links.append((reverse("pld-production", args=[task.name]), "Production"))
    if user.has_perm("evaluation.view_classifycall"):
        links.append((reverse("pld-classify-call-list", args=[task.name]), "Logged decisions"))
    if user.has_perm("evaluation.view_report"):
        links.append((reverse("pld-technical-file", args=[task.name]), "Technical file (Annex IV)"))
    return links


def register() -> None:
    """Put the panels on the prompt version page."""
    from rules.panels import register_prompt_version_panel, register_task_links

    register_task_links(task_production_links)
    register_prompt_version_panel(prompt_version_actions, place="actions")
    register_prompt_version_panel(prompt_version_record, place="record")
