"""Services that write rules, revisions and decisions — the only way audited rule state changes.

Every write records a history entry with the acting user and a change reason
(django-simple-history), and never uses ``QuerySet.update()`` on audited models.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from rules.models import ClusteringRun, Decision, Example, MicroRule, Rule, RuleRevision, Task


def _save_audited(instance: Any, *, user: AbstractBaseUser | None, reason: str) -> None:
    """Validate and save an audited model with who and why attached to its history record."""
    instance.full_clean()
    instance._history_user = user
    instance._change_reason = reason[:100] if reason else ""
    instance.save()


@transaction.atomic
def rule_propose(
    *,
    task: Task,
    text: str,
    label: str,
    origin: str,
    topic: str = "",
    precedence_note: str = "",
    proposed_by: AbstractBaseUser | None = None,
    proposed_by_model: str = "",
    teacher_endpoint: str = "",
    support: int = 0,
    label_balance: dict[str, int] | None = None,
    micro_rules: Iterable[MicroRule] = (),
    examples: Iterable[Example] = (),
    clustering_run: ClusteringRun | None = None,
    diagnosis: str = "",
    refines: Rule | None = None,
    proposal: dict[str, Any] | None = None,
    reason: str = "",
) -> Rule:
    """Create a pending candidate rule with its first revision; a person must still decide on it.

    A hand-written rule (``proposed_by`` set) also records a ``create`` decision by its author.
    """
    if label not in task.label_names:
        known = ", ".join(task.label_names)
        raise ValidationError({"label": f"{label!r} is not a label of task {task.name} ({known})"})
    rule = Rule(
        task=task,
        status=Rule.Status.PENDING,
        origin=origin,
        topic=topic,
        label=label,
        text=text,
        precedence_note=precedence_note,
        proposed_by=proposed_by,
        proposed_by_model=proposed_by_model,
        teacher_endpoint=teacher_endpoint,
        support=support,
        label_balance=label_balance or {},
        clustering_run=clustering_run,
        diagnosis=diagnosis,
        refines=refines,
        proposal=proposal or {},
    )
    why = reason or ("Written by hand" if proposed_by else f"Proposed by {proposed_by_model or 'the teacher'}")
    _save_audited(rule, user=proposed_by, reason=why)
    revision = RuleRevision(
        rule=rule,
        number=1,
        text=text,
        label=label,
        topic=topic,
        precedence_note=precedence_note,
        author=proposed_by,
        author_model="" if proposed_by else proposed_by_model,
        reason=why,
    )
    _save_audited(revision, user=proposed_by, reason=why)
    rule.current_revision = revision
    _save_audited(rule, user=proposed_by, reason="First revision")
    rule.micro_rules.add(*micro_rules)
    rule.examples.add(*examples)
    if proposed_by is not None:
        decision = Decision(
            rule=rule,
            revision=revision,
            action=Decision.Action.CREATE,
            reviewer=proposed_by,
            reason=why,
            status_before="",
            status_after=Rule.Status.PENDING,
        )
        _save_audited(decision, user=proposed_by, reason=why)
    return rule
