"""Lookups every rules and evaluation page shares: the object named in the URL, if the user may see its task.

Need-to-know (``rules.membership``): a task the user is not a member of answers 404, exactly like a task that
does not exist, so a non-member learns nothing. Every task-scoped page fetches its object through one of these;
the permission walk (tests/pldreview/test_permission_walk.py) fails for a page that does not.
"""
from __future__ import annotations

from typing import Any, TypeVar

from django.db import models
from django.shortcuts import get_object_or_404

from rules.membership import visible
from rules.models import PromptVersion, Task

M = TypeVar("M", bound=models.Model)


def task_or_404(task_name: str, *, user: Any) -> Task:
    """Return the task of that name if the user may see it, or raise Http404."""
    return get_object_or_404(Task.objects.visible_to(user), name=task_name)


def task_object_or_404(
    queryset: models.QuerySet[M] | type[M], *, user: Any, task_path: str = "task", **lookup: Any
) -> M:
    """Return the object of a task the user may see (``task_path`` leads from it to its task), or raise Http404."""
    if isinstance(queryset, type):
        queryset = queryset._default_manager.all()
    return get_object_or_404(visible(queryset, user, task_path=task_path), **lookup)


def prompt_version_or_404(version_id: int, *, user: Any) -> PromptVersion:
    """Return the prompt version with its task and compiler if the user may see its task, or raise Http404."""
    versions = PromptVersion.objects.select_related("task", "compiled_by")
    return task_object_or_404(versions, user=user, pk=version_id)
