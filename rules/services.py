"""Services that write rules, revisions and decisions — the only way audited rule state changes.

Every write records a history entry with the acting user and a change reason
(django-simple-history), and never uses ``QuerySet.update()`` on audited models.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from pldreview.models import Signature
from pldreview.signatures import rule_content_sha256, rule_move_content_sha256, signature_check
from rules.audit import audited_save
from rules.models import ClusteringRun, Decision, Example, MicroRule, Rule, RuleRevision, Task


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
    signature: Signature | None = None,
) -> Rule:
    """Create a pending candidate rule with its first revision; a person must still decide on it.

    A hand-written rule (``proposed_by`` set) also records a ``create`` decision by its author, signed
    by them with the meaning "Written" over the rule's text, label and precedence note.
    """
    if proposed_by is not None:
        _check_signature(signature, user=proposed_by, action=Decision.Action.CREATE,
                         content_sha256=rule_content_sha256(text=text, label=label, precedence_note=precedence_note))
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
    audited_save(rule, user=proposed_by, reason=why)
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
    audited_save(revision, user=proposed_by, reason=why)
    rule.current_revision = revision
    audited_save(rule, user=proposed_by, reason="First revision")
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
            signature=signature,
        )
        audited_save(decision, user=proposed_by, reason=why)
    return rule


# --- Review decisions -----------------------------------------------------------------------------

_UNDOABLE = (Decision.Action.APPROVE, Decision.Action.EDIT, Decision.Action.REJECT)


class StaleRuleError(ValidationError):
    """The rule changed after the reviewer's page was rendered; nothing was written."""

    def __init__(self, *, rule: Rule, changes: list[dict[str, Any]], seen: dict[str, str]) -> None:
        super().__init__(
            f"Rule {rule.pk} changed while you were reading it, so nothing was saved. "
            "Here is what changed; decide again on the current version."
        )
        self.rule = rule
        self.changes = changes
        self.seen = seen


def _require_perm(user: AbstractBaseUser, perm: str) -> None:
    # Views check permissions too; the service repeats it so no other caller can skip it.
    if not user.has_perm(perm):  # type: ignore[attr-defined]
        raise PermissionDenied(f"{user} lacks the permission {perm}")


def _rule_changes_since(rule: Rule, lock_version: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Return who changed the rule after the given lock version and why, and the rule as it was then."""
    records = (
        Rule.history.filter(id=rule.pk, lock_version__gt=lock_version)
        .select_related("history_user")
        .order_by("history_date", "history_id")
    )
    changes = [
        {
            "user": str(record.history_user) if record.history_user else "system",
            "when": record.history_date,
            "reason": record.history_change_reason or "",
            "status": record.status,
        }
        for record in records
    ]
    then = Rule.history.filter(id=rule.pk, lock_version__lte=lock_version).order_by("-history_date").first()
    fields = ("text", "label", "topic", "precedence_note", "status")
    seen = {name: str(getattr(then, name, "") or "") for name in fields}
    return changes, seen


def _lock_rule(rule: Rule, *, lock_version: int | None) -> Rule:
    """Re-read the rule inside the transaction and refuse if it changed since the page was rendered."""
    # SQLite runs transactions in IMMEDIATE mode (settings), so this read already holds the write lock;
    # on PostgreSQL select_for_update() takes the row lock.
    locked = Rule.objects.select_for_update(of=("self",)).select_related("current_revision", "task").get(pk=rule.pk)
    if lock_version is not None and locked.lock_version != lock_version:
        changes, seen = _rule_changes_since(locked, lock_version)
        raise StaleRuleError(rule=locked, changes=changes, seen=seen)
    return locked


def rule_signed_content(rule: Rule) -> str:
    """Return the SHA-256 a decision on the rule's current wording is signed over."""
    return rule_content_sha256(text=rule.text, label=rule.label, precedence_note=rule.precedence_note)


def _check_signature(
    signature: Signature | None, *, user: AbstractBaseUser, action: str, content_sha256: str
) -> Signature:
    # Part 11 §11.70: the signature must be the actor's, mean this action, and cover exactly this content.
    return signature_check(
        signature, user=user, meanings=Decision.SIGNED_ACTIONS[action], content_sha256=content_sha256
    )


def _record(
    *, rule: Rule, user: AbstractBaseUser, action: str, reason: str, status_before: str,
    revision: RuleRevision | None = None, undoes: Decision | None = None, signature: Signature | None = None,
) -> Decision:
    decision = Decision(
        rule=rule,
        revision=revision or rule.current_revision,
        action=action,
        reviewer=user,
        reason=reason,
        status_before=status_before,
        status_after=rule.status,
        undoes=undoes,
        signature=signature,
    )
    audited_save(decision, user=user, reason=reason or Decision.Action(action).label)
    return decision


def standing_approvals() -> Q:
    """Match approvals that still count: of the current revision, not undone, not followed by a rejection."""
    last_rejection = (
        Decision.objects.filter(rule=OuterRef("rule"), action=Decision.Action.REJECT, undone_by__isnull=True)
        .order_by("-id")
        .values("id")[:1]
    )
    return (
        Q(action=Decision.Action.APPROVE, undone_by__isnull=True, revision_id=F("rule__current_revision_id"))
        & Q(id__gt=Coalesce(Subquery(last_rejection), 0))
    )


def rule_approvals(rule: Rule) -> list[Decision]:
    """Return the approvals that count towards the rule's current revision."""
    return list(Decision.objects.filter(standing_approvals(), rule=rule).select_related("reviewer"))


def required_approvals() -> int:
    """Return how many distinct reviewers must approve a revision (PLD_REQUIRED_APPROVALS)."""
    return int(settings.PLD_REQUIRED_APPROVALS)


def _next_position(task: Task) -> int:
    top = Rule.objects.filter(task=task, position__isnull=False).aggregate(top=Max("position"))["top"]
    return (top or 0) + 1


@transaction.atomic
def rule_approve(
    *, rule: Rule, user: AbstractBaseUser, lock_version: int | None, reason: str = "",
    signature: Signature | None = None,
) -> Decision:
    """Approve the rule's current revision; the rule becomes approved once enough distinct reviewers agree.

    The author of the current revision may not approve it (four eyes). The approval is a signing: it needs
    the reviewer's signature meaning "Approved" over the revision's text, label and precedence note.
    """
    _require_perm(user, "rules.review_rule")
    rule = _lock_rule(rule, lock_version=lock_version)
    _check_signature(signature, user=user, action=Decision.Action.APPROVE, content_sha256=rule_signed_content(rule))
    if rule.status == Rule.Status.APPROVED:
        raise ValidationError("This rule is already approved.")
    revision = rule.current_revision
    if revision is not None and revision.author_id == user.pk:
        raise ValidationError(
            "You wrote this revision, so another reviewer must approve it (four eyes)."
        )
    approvals = rule_approvals(rule)
    if any(d.reviewer_id == user.pk for d in approvals):
        raise ValidationError("You have already approved this revision; it needs another reviewer.")
    n_approvals = len({d.reviewer_id for d in approvals}) + 1
    before = rule.status
    needed = required_approvals()
    if n_approvals >= needed:
        rule.status = Rule.Status.APPROVED
        if rule.position is None:
            rule.position = _next_position(rule.task)
    rule.lock_version += 1
    why = reason.strip()
    summary = f"Approved ({n_approvals} of {needed})" + (f": {why}" if why else "")
    audited_save(rule, user=user, reason=summary)
    return _record(rule=rule, user=user, action=Decision.Action.APPROVE, reason=why, status_before=before,
                   signature=signature)


@transaction.atomic
def rule_reject(
    *, rule: Rule, user: AbstractBaseUser, lock_version: int | None, reason: str, signature: Signature | None = None,
) -> Decision:
    """Reject the rule with a reason, signed by the reviewer; it stays, with its decision, and leaves the rule set."""
    _require_perm(user, "rules.review_rule")
    why = reason.strip()
    if not why:
        raise ValidationError({"reason": "Say why you reject this rule."})
    rule = _lock_rule(rule, lock_version=lock_version)
    _check_signature(signature, user=user, action=Decision.Action.REJECT, content_sha256=rule_signed_content(rule))
    if rule.status == Rule.Status.REJECTED:
        raise ValidationError("This rule is already rejected.")
    before = rule.status
    rule.status = Rule.Status.REJECTED
    rule.lock_version += 1
    audited_save(rule, user=user, reason=f"Rejected: {why}")
    return _record(rule=rule, user=user, action=Decision.Action.REJECT, reason=why, status_before=before,
                   signature=signature)


@transaction.atomic
def rule_edit(
    *,
    rule: Rule,
    user: AbstractBaseUser,
    lock_version: int | None,
    reason: str,
    text: str,
    label: str,
    topic: str = "",
    precedence_note: str = "",
    signature: Signature | None = None,
) -> Decision:
    """Write a new revision of the rule; it goes back to pending and needs fresh approvals from others.

    The editor signs the new wording (meaning "Edited", over the new text, label and precedence note).
    """
    _require_perm(user, "rules.review_rule")
    why = reason.strip()
    if not why:
        raise ValidationError({"reason": "Say why you edit this rule."})
    rule = _lock_rule(rule, lock_version=lock_version)
    text, topic, precedence_note = text.strip(), topic.strip(), precedence_note.strip()
    if not text:
        raise ValidationError({"text": "A rule needs a text."})
    if label not in rule.task.label_names:
        raise ValidationError({"label": f"{label!r} is not a label of task {rule.task.name}."})
    if (text, label, topic, precedence_note) == (rule.text, rule.label, rule.topic, rule.precedence_note):
        raise ValidationError("Nothing changed: edit the text, label, topic or precedence note.")
    _check_signature(signature, user=user, action=Decision.Action.EDIT,
                     content_sha256=rule_content_sha256(text=text, label=label, precedence_note=precedence_note))
    last = rule.revisions.aggregate(top=Max("number"))["top"] or 0
    revision = RuleRevision(
        rule=rule, number=last + 1, text=text, label=label, topic=topic, precedence_note=precedence_note,
        author=user, reason=why,
    )
    audited_save(revision, user=user, reason=why)
    before = rule.status
    rule.text, rule.label, rule.topic, rule.precedence_note = text, label, topic, precedence_note
    rule.current_revision = revision
    # Approvals belong to a revision: the new wording needs its own.
    rule.status = Rule.Status.PENDING
    rule.lock_version += 1
    audited_save(rule, user=user, reason=f"Edited (r{revision.number}): {why}")
    return _record(rule=rule, user=user, action=Decision.Action.EDIT, reason=why, status_before=before,
                   revision=revision, signature=signature)


@transaction.atomic
def rule_create(
    *,
    task: Task,
    user: AbstractBaseUser,
    text: str,
    label: str,
    topic: str = "",
    precedence_note: str = "",
    reason: str = "",
    examples: Iterable[Example] = (),
    signature: Signature | None = None,
) -> Rule:
    """Write a rule by hand, signed by its writer, optionally citing examples; it waits for another's approval."""
    _require_perm(user, "rules.add_rule")
    if not text.strip():
        raise ValidationError({"text": "A rule needs a text."})
    cited = list(examples)
    balance: dict[str, int] = {}
    for example in cited:
        balance[example.gold_label] = balance.get(example.gold_label, 0) + 1
    return rule_propose(
        task=task,
        text=text.strip(),
        label=label,
        origin=Rule.Origin.MANUAL,
        topic=topic.strip(),
        precedence_note=precedence_note.strip(),
        proposed_by=user,
        reason=reason.strip() or "Written by hand",
        examples=cited,
        support=len(cited),
        label_balance=balance,
        signature=signature,
    )


def decision_undoable(decision: Decision | None, *, user: AbstractBaseUser) -> bool:
    """Say whether the user may still undo this decision (their own, recent, last on the rule)."""
    try:
        _check_undo(decision, user=user)
    except ValidationError:
        return False
    return True


def _check_undo(decision: Decision | None, *, user: AbstractBaseUser) -> None:
    if decision is None:
        raise ValidationError("There is no decision to undo.")
    if decision.reviewer_id != user.pk:
        raise ValidationError("Only the reviewer who made a decision can undo it.")
    if decision.action not in _UNDOABLE:
        raise ValidationError("Only an approval, an edit or a rejection can be undone.")
    age = (timezone.now() - decision.created_at).total_seconds()
    if age > settings.PLD_UNDO_WINDOW_SECONDS:
        raise ValidationError(f"Undo is possible for {settings.PLD_UNDO_WINDOW_SECONDS} seconds only.")
    latest = Decision.objects.filter(reviewer_id=user.pk).order_by("-created_at", "-id").only("id").first()
    if latest is None or latest.pk != decision.pk:
        raise ValidationError("Only your last decision can be undone.")


@transaction.atomic
def decision_undo(*, decision: Decision, user: AbstractBaseUser) -> Decision:
    """Undo the user's last decision within the undo window, as a new recorded decision."""
    _require_perm(user, "rules.review_rule")
    decision = Decision.objects.select_related("revision").get(pk=decision.pk)
    _check_undo(decision, user=user)
    rule = _lock_rule(decision.rule, lock_version=None)
    if Decision.objects.filter(rule=rule, id__gt=decision.pk).exists():
        raise ValidationError("Someone acted on this rule after you; undo is no longer possible.")
    if Decision.objects.filter(undoes=decision).exists():
        raise ValidationError("This decision is already undone.")
    before = rule.status
    rule.status = decision.status_before or Rule.Status.PENDING
    if decision.action == Decision.Action.EDIT:
        previous = rule.revisions.filter(number__lt=decision.revision.number).order_by("-number").first()
        if previous is not None:
            rule.current_revision = previous
            rule.text, rule.label = previous.text, previous.label
            rule.topic, rule.precedence_note = previous.topic, previous.precedence_note
    rule.lock_version += 1
    why = f"Undid {decision.get_action_display().lower()} #{decision.pk}"
    audited_save(rule, user=user, reason=why)
    return _record(
        rule=rule, user=user, action=Decision.Action.UNDO, reason=why, status_before=before, undoes=decision
    )


def ruleset_rules(task: Task) -> list[Rule]:
    """Return the task's approved rules in the order they will be compiled."""
    return list(
        Rule.objects.filter(task=task, status=Rule.Status.APPROVED)
        .select_related("current_revision")
        .order_by(F("position").asc(nulls_last=True), "id")
    )


@transaction.atomic
def ruleset_reorder(
    *, rule: Rule, user: AbstractBaseUser, direction: str, lock_version: int | None, reason: str = "",
    signature: Signature | None = None,
) -> Decision:
    """Move an approved rule one place up or down in its task's rule set, as a recorded, signed decision."""
    _require_perm(user, "rules.reorder_ruleset")
    if direction not in ("up", "down"):
        raise ValidationError({"direction": "Move a rule up or down."})
    rule = _lock_rule(rule, lock_version=lock_version)
    if rule.status != Rule.Status.APPROVED:
        raise ValidationError("Only approved rules belong to the rule set.")
    _check_signature(signature, user=user, action=Decision.Action.REORDER, content_sha256=rule_move_content_sha256(
        text=rule.text, label=rule.label, precedence_note=rule.precedence_note, direction=direction))
    ordered = ruleset_rules(rule.task)
    # Positions may have gaps or be missing (rules approved before ordering existed): renumber first.
    index = next(i for i, r in enumerate(ordered) if r.pk == rule.pk)
    other_index = index - 1 if direction == "up" else index + 1
    if other_index < 0 or other_index >= len(ordered):
        raise ValidationError(f"This rule is already at the {'top' if direction == 'up' else 'bottom'}.")
    ordered[index], ordered[other_index] = ordered[other_index], ordered[index]
    other = ordered[index]
    why = reason.strip() or f"Moved {direction}, {'before' if direction == 'up' else 'after'} rule {other.pk}"
    for number, item in enumerate(ordered, start=1):
        if item.pk == rule.pk:
            item = rule
        if item.position == number:
            continue
        item.position = number
        item.lock_version += 1
        audited_save(item, user=user, reason=f"Rule set order: {why}")
    return _record(rule=rule, user=user, action=Decision.Action.REORDER, reason=why, status_before=rule.status,
                   signature=signature)
