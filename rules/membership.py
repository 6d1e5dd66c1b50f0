"""Need-to-know per task: who is a member of which task, and the one filter every read goes through.

A Reviewer sees, searches, exports and decides only the tasks they are a member of; an Auditor too when
``PLD_AUDITORS_SCOPED`` is on; Admins see every task (``rules.models.sees_every_task``). Pages reach objects
through ``rules.views.shortcuts`` (404 for a task the user may not see: no leak that it exists); lists,
searches, exports and counts filter with ``visible`` below. Memberships change only through
``task_member_add`` and ``task_member_remove``, each on the ledger.
"""
from __future__ import annotations

from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Q

from pldreview.ledger import ledger_append
from rules.models import Task, TaskMembership, sees_every_task

M = TypeVar("M", bound=models.Model)


def visible(queryset: models.QuerySet[M], user: Any, *, task_path: str = "task") -> models.QuerySet[M]:
    """Return the part of a queryset of task objects the user may see (``task_path`` leads to the task).

    No query of its own: for a user who sees every task the queryset comes back as it was, else it gains a
    ``task_path__in`` subquery on the user's memberships.
    """
    if sees_every_task(user):
        return queryset
    return queryset.filter(**{f"{task_path}__in": Task.objects.visible_to(user).values("pk")})


def task_is_visible(task: Task, user: Any) -> bool:
    """Return whether the user may see the task."""
    return sees_every_task(user) or TaskMembership.objects.filter(task=task, user_id=user.pk).exists()


def _require_manager(user: AbstractBaseUser) -> None:
    if not user.has_perm("rules.manage_task_members"):
        raise PermissionDenied("Only Admins add and remove task members.")


def _facts(membership: TaskMembership) -> dict[str, object]:
    return {"task": membership.task.name, "task_id": membership.task_id, "username": membership.user.get_username(),
            "user_id": membership.user_id}


@transaction.atomic
def task_member_add(*, task: Task, user: User, by: AbstractBaseUser, reason: str) -> TaskMembership:
    """Make the user a member of the task (an Admin's act, on the ledger)."""
    _require_manager(by)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason: it is kept in the audit record."})
    if not user.is_active:
        raise ValidationError({"user": f"{user.get_username()} is deactivated."})
    if TaskMembership.objects.filter(task=task, user=user).exists():
        raise ValidationError({"user": f"{user.get_username()} is already a member of {task.name}."})
    membership = TaskMembership(task=task, user=user, added_by=by, reason=reason[:500])
    membership.full_clean()
    membership.save()
    ledger_append(event="task.member_added", actor=by, obj=task, facts=_facts(membership), reason=reason)
    return membership


@transaction.atomic
def task_member_remove(*, task: Task, user: User, by: AbstractBaseUser, reason: str) -> None:
    """End the user's membership of the task at once (an Admin's act, on the ledger)."""
    _require_manager(by)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason: it is kept in the audit record."})
    membership = TaskMembership.objects.select_related("task", "user").filter(task=task, user=user).first()
    if membership is None:
        raise ValidationError({"user": f"{user.get_username()} is not a member of {task.name}."})
    facts = _facts(membership)
    membership.delete()
    ledger_append(event="task.member_removed", actor=by, obj=task, facts=facts, reason=reason)


def jobs_of_visible_tasks(jobs: models.QuerySet[Any], user: Any) -> models.QuerySet[Any]:
    """Leave out the jobs whose params name a task the user may not see (``pldreview.jobs.job_scope_register``)."""
    if sees_every_task(user):
        return jobs
    names = list(Task.objects.visible_to(user).values_list("name", flat=True))
    return jobs.filter(~Q(params__has_key="task") | Q(params__task__in=names))


def user_tasks_panel(target: Any) -> tuple[str, dict[str, Any]]:
    """The user page's line on which tasks the account sees (every task, or its memberships)."""
    memberships = TaskMembership.objects.filter(user=target).select_related("task").order_by("task__name")
    return "rules/user_tasks.html", {
        "sees_every_task": sees_every_task(target),
        "is_admin": target.has_perm("rules.view_all_tasks"),
        "memberships": list(memberships),
    }
