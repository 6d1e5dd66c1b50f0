"""Lookups every rules and evaluation page shares: the object named in the URL, or 404.

Every role that may view a task or a prompt version sees all of them: nothing here scopes by the user.
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404

from rules.models import PromptVersion, Task


def task_or_404(task_name: str) -> Task:
    """Return the task of that name, or raise Http404."""
    return get_object_or_404(Task, name=task_name)


def prompt_version_or_404(version_id: int) -> PromptVersion:
    """Return the prompt version with its task and compiler, or raise Http404."""
    return get_object_or_404(PromptVersion.objects.select_related("task", "compiled_by"), pk=version_id)
