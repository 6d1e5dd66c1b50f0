"""Need-to-know per task: who is a member of which task, and the one filter every read goes through.

A Reviewer sees, searches, exports and decides only the tasks they are a member of; an Auditor too when
``PLD_AUDITORS_SCOPED`` is on; Admins see every task (``rules.models.sees_every_task``). Pages reach objects
through ``rules.views.shortcuts`` (404 for a task the user may not see: no leak that it exists); lists,
searches, exports and counts filter with ``visible`` below. Memberships change only through
``task_member_add`` and ``task_member_remove``, each an Admin's e-signature kept as an append-only
``TaskMembershipChange`` on the ledger.
"""
from __future__ import annotations

from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Q

from pldreview.models import Signature
from pldreview.signatures import Meaning, signature_check, task_membership_content_sha256
from rules.audit import audited_save
from rules.models import Task, TaskMembership, TaskMembershipChange, sees_every_task

M = TypeVar("M", bound=models.Model)

# The roles whose sight of tasks is scoped by membership (Reviewers always, Auditors with PLD_AUDITORS_SCOPED).
MEMBER_ROLES = ("Reviewer", "Auditor")


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


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason: it is kept in the audit record."})
    return reason


def membership_content_sha256(*, task: Task, user: User, action: str) -> str:
    """Return the hash the Admin signs to add (``action="add"``) or remove (``"remove"``) the user as a member."""
    return task_membership_content_sha256(task_id=task.pk, task_name=task.name, username=user.get_username(),
                                          action=action)


def _change_record(
    *, task: Task, user: User, by: AbstractBaseUser, reason: str, action: str, signature: Signature | None
) -> TaskMembershipChange:
    meaning = Meaning.TASK_MEMBER_ADDED if action == TaskMembershipChange.Action.ADD else Meaning.TASK_MEMBER_REMOVED
    signature_check(signature, user=by, meanings=meaning,
                    content_sha256=membership_content_sha256(task=task, user=user, action=action))
    change = TaskMembershipChange(task=task, user=user, action=action, by=by, reason=reason, signature=signature)
    verb = "added to" if action == TaskMembershipChange.Action.ADD else "removed from"
    audited_save(change, user=by, reason=f"{user.get_username()} {verb} {task.name}",
                 event=f"task.member_{'added' if action == TaskMembershipChange.Action.ADD else 'removed'}")
    return change


@transaction.atomic
def task_member_add(
    *, task: Task, user: User, by: AbstractBaseUser, reason: str, signature: Signature | None = None
) -> TaskMembership:
    """Make the user a member of the task: an Admin's signing ("Task member added"), kept as an append-only change.

    The signature is over ``membership_content_sha256(action="add")``; the membership row names it.
    """
    _require_manager(by)
    reason = _reason(reason)
    if not user.is_active:
        raise ValidationError({"user": f"{user.get_username()} is deactivated."})
    if TaskMembership.objects.filter(task=task, user=user).exists():
        raise ValidationError({"user": f"{user.get_username()} is already a member of {task.name}."})
    _change_record(task=task, user=user, by=by, reason=reason, action=TaskMembershipChange.Action.ADD,
                   signature=signature)
    membership = TaskMembership(task=task, user=user, added_by=by, reason=reason[:500], signature=signature)
    membership.full_clean()
    membership.save()
    return membership


@transaction.atomic
def task_member_remove(
    *, task: Task, user: User, by: AbstractBaseUser, reason: str, signature: Signature | None = None
) -> TaskMembershipChange:
    """End the user's membership of the task at once: an Admin's signing ("Task member removed").

    The membership row goes; the signed, append-only change that removed it stays.
    """
    _require_manager(by)
    reason = _reason(reason)
    membership = TaskMembership.objects.filter(task=task, user=user).first()
    if membership is None:
        raise ValidationError({"user": f"{user.get_username()} is not a member of {task.name}."})
    change = _change_record(task=task, user=user, by=by, reason=reason, action=TaskMembershipChange.Action.REMOVE,
                            signature=signature)
    membership.delete()
    return change


def membership_changes(task: Task) -> list[TaskMembershipChange]:
    """Return every signed change of the task's members, newest first, with who, whom and the signature."""
    return list(TaskMembershipChange.objects.filter(task=task).select_related("user", "by", "signature"))


def jobs_of_visible_tasks(jobs: models.QuerySet[Any], user: Any) -> models.QuerySet[Any]:
    """Leave out the jobs whose params name a task the user may not see (``pldreview.jobs.job_scope_register``)."""
    if sees_every_task(user):
        return jobs
    names = list(Task.objects.visible_to(user).values_list("name", flat=True))
    return jobs.filter(~Q(params__has_key="task") | Q(params__task__in=names))


def user_tasks_panel(target: Any) -> tuple[str, dict[str, Any]]:
    """The user page's line on which tasks the account sees (every task, or its memberships), and whether an Admin
    may add the account to tasks there (an active Reviewer or Auditor: Admins see every task anyway)."""
    memberships = TaskMembership.objects.filter(user=target).select_related("task").order_by("task__name")
    is_admin = target.has_perm("rules.view_all_tasks")
    scoped_role = target.groups.filter(name__in=MEMBER_ROLES).exists()
    return "rules/user_tasks.html", {
        "target_id": target.pk,
        "sees_every_task": sees_every_task(target),
        "is_admin": is_admin,
        "memberships": list(memberships),
        "can_be_member": target.is_active and scoped_role and not is_admin,
        "task_names": list(Task.objects.order_by("name").values_list("name", flat=True)),
    }
