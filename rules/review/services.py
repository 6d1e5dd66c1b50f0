"""Services that write rules, revisions and decisions: the code path for every change to a rule's audited state.

Other modules go through them: clustering, extraction and refine file candidates with ``rule_propose`` and
record decisions with ``decision_record``; the admin is read-only. Tests hold code to this
(tests/rules/test_audit_trail.py: no other module builds a ``Decision``, none calls ``QuerySet.update()`` or
``delete()`` on audited models). Every write records a history entry with the acting user and a change reason
(django-simple-history) and a ledger entry, in the same transaction. The database itself refuses changes to
decisions, revisions and history rows (append-only triggers, pldreview/db_triggers.py); a rule's own row is
guarded by this code, not by a trigger.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from pldreview.accounts.services import second_person_eligible, second_person_refusal
from pldreview.models import Signature
from pldreview.signatures import rule_content_sha256, ruleset_order_content_sha256, signature_check
from rules.audit import audited_save
from rules.membership import task_is_visible
from rules.models import (
    ClusteringRun,
    Decision,
    Example,
    MicroRule,
    Rule,
    RuleRevision,
    RuleSetReorderApproval,
    RuleSetReorderProposal,
    Task,
)
from rules.review.precedence import placement_index


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
    teacher_endpoint_name: str = "",
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
    by them with the meaning "Written" over the rule's text, label, topic and precedence note.
    """
    if proposed_by is not None:
        _check_signature(signature, user=proposed_by, action=Decision.Action.CREATE,
                         content_sha256=rule_content_sha256(text=text, label=label, topic=topic,
                                                            precedence_note=precedence_note))
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
        teacher_endpoint_name=teacher_endpoint_name,
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
        decision_record(rule=rule, user=proposed_by, action=Decision.Action.CREATE, reason=why, status_before="",
                        revision=revision, signature=signature)
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


def _require_member(task: Task, user: AbstractBaseUser) -> None:
    # Need-to-know: pages answer 404 for a task the user may not see; the service refuses any other caller too.
    if not task_is_visible(task, user):
        raise PermissionDenied(f"{user} is not a member of the task {task.name}.")


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
    """Return the SHA-256 a decision on the rule's current wording (topic included) is signed over."""
    return rule_content_sha256(text=rule.text, label=rule.label, topic=rule.topic, precedence_note=rule.precedence_note)


def _check_signature(
    signature: Signature | None, *, user: AbstractBaseUser, action: str, content_sha256: str
) -> Signature:
    # Part 11 §11.70: the signature must be the actor's, mean this action, and cover exactly this content.
    return signature_check(
        signature, user=user, meanings=Decision.SIGNED_ACTIONS[action], content_sha256=content_sha256
    )


def decision_record(
    *, rule: Rule, user: AbstractBaseUser, action: str, reason: str, status_before: str,
    revision: RuleRevision | None = None, undoes: Decision | None = None, signature: Signature | None = None,
) -> Decision:
    """Record a person's decision on a rule (its current revision unless given) with the rule's status after it.

    The decision is audited (ledger entry in the same transaction); the database refuses a signed action
    without its signature and any change to a decision once written.
    """
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


# Overturning a rejection sets one reviewer's "no" aside, so it always takes at least two other people.
OVERTURN_MIN_APPROVALS = 2

AUTHORING = (Decision.Action.CREATE, Decision.Action.EDIT, Decision.Action.PROMOTE_NOISE)


@dataclass(frozen=True)
class RuleReview:
    """Where four eyes stand on a rule's current revision: who may not approve it and whose approval counts.

    An *author* ever wrote, edited or promoted any revision of the rule (an undone edit still counts: its
    editor has shaped the rule) and never counts toward any of its approvals, whatever happened in between:
    approvals, rejections and undos do not wash authorship out. A *rejecter* rejected it since its last
    approval (the approval, not undone, that made it approved) and has not undone it.
    """

    rule: Rule
    authors: frozenset[int]
    rejecters: frozenset[int]
    approvals: tuple[Decision, ...]
    required: int

    @property
    def approvers(self) -> set[int]:
        """Return the reviewers whose approval of the current revision counts."""
        return {d.reviewer_id for d in self.approvals}

    def refusal(self, user: AbstractBaseUser) -> str:
        """Return why the user may not approve the current revision, or '' when they may."""
        if self.rule.status == Rule.Status.APPROVED:
            return "This rule is already approved."
        if user.pk in self.authors:
            return (
                "You wrote, edited or promoted a revision of this rule, so you never count toward its "
                "approval, whatever happened to it since: another reviewer must approve it (four eyes)."
            )
        if user.pk in self.rejecters:
            return (
                "You rejected this rule; undo your rejection if you changed your mind, or let "
                f"{self.required} other reviewers overturn it."
            )
        if user.pk in self.approvers:
            return "You have already approved this revision; it needs another reviewer."
        if cooldown := second_person_refusal(user):
            return cooldown
        return ""

    @property
    def approvals_missing(self) -> int:
        """Return how many more approvals the current revision needs."""
        return max(0, self.required - len(self.approvers))

    def eligible_approvers(self) -> list[AbstractBaseUser]:
        """Return the active reviewers whose approval would count now: not authors, rejecters, approvers, new."""
        excluded = self.authors | self.rejecters | self.approvers
        reviewers = get_user_model().objects.with_perm(
            "rules.review_rule", backend="django.contrib.auth.backends.ModelBackend"
        ).exclude(pk__in=excluded)
        # Need-to-know: only the task's members (or a superuser, who sees every task) can decide it.
        members = Q(task_memberships__task_id=self.rule.task_id) | Q(is_superuser=True)
        return list(second_person_eligible(reviewers.filter(members).distinct()).order_by("pk"))

    def nobody_may_approve(self) -> str:
        """Say, in plain words, when fewer reviewers may approve the revision than it still needs; else ''."""
        if self.rule.status != Rule.Status.PENDING or not self.approvals_missing:
            return ""
        eligible = self.eligible_approvers()
        if len(eligible) >= self.approvals_missing:
            return ""
        names = ", ".join(user.get_username() for user in eligible) or "none"
        return (
            f"No reviewer can complete this rule's approval: it needs {self.approvals_missing} more, and the "
            f"reviewers who may give one are: {names} (everyone else wrote, edited or rejected it, already "
            "approved it, was given the role too recently, or is no member of the task). It waits for nobody: an "
            "Admin can add a member to the task, ask for the Reviewer role for another person (a two-Admin "
            "account change), or a reviewer can reject it."
        )


def rule_review(rule: Rule) -> RuleReview:
    """Return the four-eyes state of the rule's current revision, read in one query."""
    undone = Decision.objects.filter(undoes=OuterRef("pk"))
    decisions = list(
        Decision.objects.filter(rule=rule).annotate(undone=Exists(undone)).select_related("reviewer").order_by("id")
    )
    standing = [d for d in decisions if not d.undone]
    last_approval = max(
        (d.pk for d in standing if d.action == Decision.Action.APPROVE and d.status_after == Rule.Status.APPROVED),
        default=0,
    )
    since = [d for d in decisions if d.pk > last_approval]
    # Services record every revision a person writes as a create or edit decision, and a promotion as its
    # own decision, so the decisions name every author (the database trigger also checks revision authors).
    # Authorship is counted over the rule's whole life: counting it from the last approval let the writer of a
    # rule that was approved and then rejected count toward overturning that rejection (issue 22).
    authors = frozenset(d.reviewer_id for d in decisions if d.action in AUTHORING)
    rejecters = frozenset(d.reviewer_id for d in since if d.action == Decision.Action.REJECT and not d.undone)
    last_rejection = max((d.pk for d in standing if d.action == Decision.Action.REJECT), default=0)
    approvals = tuple(
        d for d in standing
        if d.action == Decision.Action.APPROVE and d.revision_id == rule.current_revision_id
        and d.pk > last_rejection and d.reviewer_id not in authors | rejecters
    )
    required = required_approvals()
    if rejecters:
        required = max(required, OVERTURN_MIN_APPROVALS)
    return RuleReview(rule=rule, authors=authors, rejecters=rejecters, approvals=approvals, required=required)


def rejection_stands() -> Exists:
    """Match a rule rejected since its last approval (and not undone): its return needs OVERTURN_MIN_APPROVALS."""
    last_approval = (
        Decision.objects.filter(
            rule=OuterRef("rule"), action=Decision.Action.APPROVE, status_after=Rule.Status.APPROVED,
            undone_by__isnull=True,
        )
        .order_by("-id")
        .values("id")[:1]
    )
    return Exists(
        Decision.objects.filter(
            rule=OuterRef("pk"), action=Decision.Action.REJECT, undone_by__isnull=True,
            id__gt=Coalesce(Subquery(last_approval), 0),
        )
    )


def rule_authors(rule: Rule) -> set[int]:
    """Return the ids of everyone who ever wrote, edited or promoted a revision of the rule."""
    return set(rule_review(rule).authors)


def rule_required_approvals(rule: Rule) -> int:
    """Return how many distinct approvals the rule's current revision needs: more when it overturns a rejection."""
    return rule_review(rule).required


def rule_approve_refusal(rule: Rule, *, user: AbstractBaseUser) -> str:
    """Return why the user may not approve the rule's current revision, or '' when they may."""
    return rule_review(rule).refusal(user)


def _ruleset_join(rule: Rule, *, user: AbstractBaseUser) -> None:
    """Give a newly approved rule its place: in its topic's group, never after a "use last" rule (review.precedence).

    The rules are numbered 1..n again around it, each one whose number changes saved with its history; the
    order between them is the reviewers' and stays theirs.
    """
    rules = [r for r in Rule.objects.select_for_update().filter(task=rule.task, status=Rule.Status.APPROVED)
             .exclude(pk=rule.pk).order_by(F("position").asc(nulls_last=True), "id")]
    rules.insert(placement_index(rules, rule), rule)
    for number, member in enumerate(rules, start=1):
        if member.pk == rule.pk:
            rule.position = number
        elif member.position != number:
            member.position = number
            audited_save(member, user=user, reason=f"Rule set order: now number {number}, as rule {rule.pk} "
                         "joins the set (the reviewed order is kept)", update_fields=["position", "updated_at"])


@transaction.atomic
def rule_approve(
    *, rule: Rule, user: AbstractBaseUser, lock_version: int | None, reason: str = "",
    signature: Signature | None = None,
) -> Decision:
    """Approve the rule's current revision; the rule becomes approved once enough distinct reviewers agree.

    Nobody who ever wrote, edited or promoted a revision of the rule may approve it, nor may the reviewer
    who rejected it; overturning a rejection takes at least two approvals (four eyes).
    The approval is a signing: it needs the reviewer's signature meaning "Approved" over the revision's
    text, label and precedence note.
    """
    _require_perm(user, "rules.review_rule")
    _require_member(rule.task, user)
    rule = _lock_rule(rule, lock_version=lock_version)
    _check_signature(signature, user=user, action=Decision.Action.APPROVE, content_sha256=rule_signed_content(rule))
    review = rule_review(rule)
    refusal = review.refusal(user)
    if refusal:
        raise ValidationError(refusal)
    n_approvals = len(review.approvers) + 1
    before = rule.status
    needed = review.required
    if n_approvals >= needed:
        rule.status = Rule.Status.APPROVED
        if rule.position is None:
            _ruleset_join(rule, user=user)
    rule.lock_version += 1
    why = reason.strip()
    summary = f"Approved ({n_approvals} of {needed})" + (f": {why}" if why else "")
    audited_save(rule, user=user, reason=summary)
    return decision_record(rule=rule, user=user, action=Decision.Action.APPROVE, reason=why, status_before=before,
                   signature=signature)


@transaction.atomic
def rule_reject(
    *, rule: Rule, user: AbstractBaseUser, lock_version: int | None, reason: str, signature: Signature | None = None,
) -> Decision:
    """Reject the rule with a reason, signed by the reviewer; it stays, with its decision, and leaves the rule set."""
    _require_perm(user, "rules.review_rule")
    _require_member(rule.task, user)
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
    return decision_record(rule=rule, user=user, action=Decision.Action.REJECT, reason=why, status_before=before,
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
    _require_member(rule.task, user)
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
                     content_sha256=rule_content_sha256(text=text, label=label, topic=topic,
                                                        precedence_note=precedence_note))
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
    return decision_record(rule=rule, user=user, action=Decision.Action.EDIT, reason=why, status_before=before,
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
    _require_member(task, user)
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
    _require_member(decision.rule.task, user)
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
    return decision_record(
        rule=rule, user=user, action=Decision.Action.UNDO, reason=why, status_before=before, undoes=decision
    )


def ruleset_rules(task: Task) -> list[Rule]:
    """Return the task's approved rules in the order they will be compiled."""
    return list(
        Rule.objects.filter(task=task, status=Rule.Status.APPROVED)
        .select_related("current_revision")
        .order_by(F("position").asc(nulls_last=True), "id")
    )


def ruleset_order_from_numbers(task: Task, numbers: dict[int, int]) -> list[int]:
    """Return the rule ids in the order the typed numbers ask for: each moved rule lands at its number."""
    current = [r.pk for r in ruleset_rules(task)]
    unknown = set(numbers) - set(current)
    if unknown:
        raise ValidationError(f"Rules {sorted(unknown)} are not in the rule set of {task.name}.")
    moved = {pk: n for pk, n in numbers.items() if n != current.index(pk) + 1}
    order = [pk for pk in current if pk not in moved]
    for pk, number in sorted(moved.items(), key=lambda item: (item[1], current.index(item[0]))):
        order.insert(min(max(number, 1), len(order) + 1) - 1, pk)
    return order


def _locked_ruleset_order(task: Task) -> list[int]:
    """Return the rule set's rule ids in compile order, locking the rows so the order cannot change under us."""
    rules = Rule.objects.select_for_update().filter(task=task, status=Rule.Status.APPROVED)
    return list(rules.order_by(F("position").asc(nulls_last=True), "id").values_list("id", flat=True))


def _proposal_decide(proposal: RuleSetReorderProposal, *, status: str, user: AbstractBaseUser, why: str) -> None:
    proposal.status = status
    proposal.decided_by = user
    proposal.decided_at = timezone.now()
    proposal.decision_reason = why


@transaction.atomic
def ruleset_reorder_propose(
    *, task: Task, user: AbstractBaseUser, order: list[int], reason: str, signature: Signature | None = None,
) -> RuleSetReorderProposal:
    """Propose a new order of the task's rule set, signed "Reorder proposed"; it compiles once others approve it."""
    _require_perm(user, "rules.reorder_ruleset")
    _require_member(task, user)
    why = reason.strip()
    if not why:
        raise ValidationError({"reason": "Say why the rules should run in this order."})
    current = _locked_ruleset_order(task)
    if sorted(order) != sorted(current) or len(set(order)) != len(order):
        raise ValidationError("The proposed order must list every rule of the rule set exactly once.")
    if order == current:
        raise ValidationError("Nothing changed: this is already the rule set's order.")
    signature_check(signature, user=user, meanings=Signature.Meaning.REORDER_PROPOSED,
                    content_sha256=ruleset_order_content_sha256(task_id=task.pk, order=list(order)))
    proposal = RuleSetReorderProposal(
        task=task, proposed_by=user, order=list(order), base_order=current, reason=why, signature=signature,
    )
    audited_save(proposal, user=user, reason=f"Proposed a new order: {why}")
    return proposal


def ruleset_reorder_approve_refusal(proposal: RuleSetReorderProposal, *, user: AbstractBaseUser) -> str:
    """Return why the user may not approve the order proposal, or '' when they may."""
    if proposal.status != RuleSetReorderProposal.Status.PENDING:
        return f"This proposal is already {proposal.get_status_display().lower()}."
    if proposal.proposed_by_id == user.pk:
        return "You proposed this order, so another reviewer must approve it (four eyes)."
    if any(a.reviewer_id == user.pk for a in proposal.approvals.all()):
        return "You have already approved this proposal; it needs another reviewer."
    if cooldown := second_person_refusal(user):
        return cooldown
    return ""


def _apply_order(proposal: RuleSetReorderProposal, *, user: AbstractBaseUser, signature: Signature | None) -> None:
    """Write the approved order onto the rules' positions, recording a signed reorder decision on each rule moved."""
    by_id = {r.pk: r for r in Rule.objects.select_for_update().filter(pk__in=proposal.order)}
    why = f"Order proposal {proposal.pk} by {proposal.proposed_by}: {proposal.reason}"
    for number, pk in enumerate(proposal.order, start=1):
        rule = by_id[pk]
        if rule.position == number:
            continue
        rule.position = number
        rule.lock_version += 1
        audited_save(rule, user=user, reason=f"Rule set order: {why}")
        # Every decision of one applied order carries the signature of the approval that applied it.
        decision_record(rule=rule, user=user, action=Decision.Action.REORDER, reason=why, status_before=rule.status,
                signature=signature)


@transaction.atomic
def ruleset_reorder_approve(
    *, proposal: RuleSetReorderProposal, user: AbstractBaseUser, reason: str = "", signature: Signature | None = None,
) -> RuleSetReorderProposal:
    """Approve an order proposal, signed "Reordered"; once enough reviewers besides the proposer agree, it applies."""
    _require_perm(user, "rules.reorder_ruleset")
    _require_member(proposal.task, user)
    proposal = RuleSetReorderProposal.objects.select_for_update().select_related("task", "proposed_by").get(
        pk=proposal.pk
    )
    refusal = ruleset_reorder_approve_refusal(proposal, user=user)
    if refusal:
        raise ValidationError(refusal)
    current = _locked_ruleset_order(proposal.task)
    if current != proposal.base_order:
        raise ValidationError(
            "The rule set changed since this order was proposed (a rule was approved, rejected or moved); "
            "reject this proposal and propose again from the current order."
        )
    signature_check(signature, user=user, meanings=Signature.Meaning.REORDERED,
                    content_sha256=ruleset_order_content_sha256(task_id=proposal.task_id, order=proposal.order))
    why = reason.strip()
    approval = RuleSetReorderApproval(proposal=proposal, reviewer=user, reason=why, signature=signature)
    audited_save(approval, user=user, reason=why or "Approved the order")
    n_approvals = proposal.approvals.count()
    needed = required_approvals()
    if n_approvals >= needed:
        _apply_order(proposal, user=user, signature=signature)
        _proposal_decide(proposal, status=RuleSetReorderProposal.Status.APPROVED, user=user, why=why)
    audited_save(proposal, user=user, reason=f"Approved ({n_approvals} of {needed})" + (f": {why}" if why else ""))
    return proposal


@transaction.atomic
def ruleset_reorder_reject(
    *, proposal: RuleSetReorderProposal, user: AbstractBaseUser, reason: str, signature: Signature | None = None,
) -> RuleSetReorderProposal:
    """Reject (or, for its proposer, withdraw) a pending order proposal, signed, with a reason; the order stays."""
    _require_perm(user, "rules.reorder_ruleset")
    _require_member(proposal.task, user)
    why = reason.strip()
    if not why:
        raise ValidationError({"reason": "Say why you reject this order."})
    proposal = RuleSetReorderProposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.status != RuleSetReorderProposal.Status.PENDING:
        raise ValidationError(f"This proposal is already {proposal.get_status_display().lower()}.")
    signature_check(signature, user=user, meanings=Signature.Meaning.REORDER_REJECTED,
                    content_sha256=ruleset_order_content_sha256(task_id=proposal.task_id, order=proposal.order))
    proposal.decision_signature = signature
    _proposal_decide(proposal, status=RuleSetReorderProposal.Status.REJECTED, user=user, why=why)
    audited_save(proposal, user=user, reason=f"Rejected: {why}")
    return proposal
