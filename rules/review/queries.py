"""Read-side queries of the review workspace: the queue, its filters, counts and neighbours."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from rules.membership import visible
from rules.models import Decision, Rule, RuleRevision
from rules.review.search import search_rules
from rules.review.services import AUTHORING, rejection_stands, rule_review, standing_approvals

SORTS = {
    "support": ("-support", "id"),
    "newest": ("-created_at", "-id"),
    "oldest": ("created_at", "id"),
}


@dataclass(frozen=True)
class QueueFilters:
    """The reviewer's view of the queue; empty values mean "any"."""

    task: str = ""
    topic: str = ""
    label: str = ""
    origin: str = ""
    status: str = Rule.Status.PENDING
    sort: str = "support"
    q: str = ""

    @classmethod
    def from_query(cls, query: Any, prefix: str = "") -> QueueFilters:
        """Read filters from a QueryDict, ignoring unknown values; decision forms prefix them with ``q_``."""

        def get(name: str, default: str = "") -> str:
            return str(query.get(prefix + name, default))

        status = get("status", Rule.Status.PENDING)
        if status not in {*Rule.Status.values, "all"}:
            status = Rule.Status.PENDING
        origin = get("origin")
        sort = get("sort", "support")
        return cls(
            task=get("task").strip()[:100],
            topic=get("topic").strip()[:200],
            label=get("label").strip()[:100],
            origin=origin if origin in Rule.Origin.values else "",
            status=status,
            sort=sort if sort in SORTS else "support",
            q=get("q").strip()[:200],
        )

    def as_query(self, **override: str) -> str:
        """Return the filters as a query string, keeping only what differs from the defaults."""
        values = {f.name: getattr(self, f.name) for f in fields(self)} | override
        defaults = QueueFilters()
        kept = {k: v for k, v in values.items() if v and v != getattr(defaults, k, None)}
        return urlencode(kept)

    def as_items(self) -> list[tuple[str, str]]:
        """Return the non-default filters as (q_name, value) pairs for the hidden fields of decision forms."""
        defaults = QueueFilters()
        pairs = [(f"q_{f.name}", getattr(self, f.name)) for f in fields(self)]
        return [(name, value) for name, value in pairs if value != getattr(defaults, name[2:])]


def _filtered(filters: QueueFilters, user: Any, *, with_status: bool = True) -> QuerySet[Rule]:
    # Need-to-know: only the rules of tasks the user may see, whatever the filters say.
    rules = visible(Rule.objects.all(), user)
    if filters.task:
        rules = rules.filter(task__name=filters.task)
    if filters.topic:
        rules = rules.filter(topic=filters.topic)
    if filters.label:
        rules = rules.filter(label=filters.label)
    if filters.origin:
        rules = rules.filter(origin=filters.origin)
    if with_status and filters.status != "all":
        rules = rules.filter(status=filters.status)
    if filters.q:
        rules = search_rules(None, filters.q, rules)
    return rules


def approvals_count() -> Coalesce:
    """Annotate a rule with the number of standing approvals of its current revision."""
    standing = (
        Decision.objects.filter(standing_approvals(), rule=OuterRef("pk"))
        .order_by()
        .values("rule")
        .annotate(n=Count("reviewer", distinct=True))
        .values("n")
    )
    return Coalesce(Subquery(standing), 0)


def review_queue(filters: QueueFilters, *, user: Any) -> QuerySet[Rule]:
    """Return the rules matching the filters, with what a queue row shows, in the chosen order."""
    return (
        _filtered(filters, user)
        .select_related("task", "proposed_by", "current_revision", "current_revision__author")
        .annotate(n_approvals=approvals_count(), overturning=rejection_stands())
        .order_by(*(("search_order",) if filters.q else ()), *SORTS[filters.sort])
    )


def queue_counts(filters: QueueFilters, *, user: Any) -> dict[str, int]:
    """Return how many rules are pending, approved and rejected under the other filters (one query)."""
    counts = _filtered(filters, user, with_status=False).aggregate(
        **{status: Count("id", filter=Q(status=status)) for status in Rule.Status.values}, all=Count("id")
    )
    return {key: int(value or 0) for key, value in counts.items()}


def queue_neighbours(rule: Rule, filters: QueueFilters, *, user: Any) -> tuple[Rule | None, Rule | None]:
    """Return the rules before and after this one in the queue (two queries; the rule itself may be gone)."""
    keys = SORTS[filters.sort]
    first, second = keys[0].lstrip("-"), keys[1].lstrip("-")
    value, tiebreak = getattr(rule, first), getattr(rule, second)
    descending = keys[0].startswith("-")
    tie_descending = keys[1].startswith("-")
    after_first = Q(**{f"{first}__lt" if descending else f"{first}__gt": value})
    after_tie = Q(**{first: value, f"{second}__lt" if tie_descending else f"{second}__gt": tiebreak})
    before_first = Q(**{f"{first}__gt" if descending else f"{first}__lt": value})
    before_tie = Q(**{first: value, f"{second}__gt" if tie_descending else f"{second}__lt": tiebreak})
    base = _filtered(filters, user).exclude(pk=rule.pk).only("id", "support", "created_at")
    following = base.filter(after_first | after_tie).order_by(*keys).first()
    reverse = [k[1:] if k.startswith("-") else f"-{k}" for k in keys]
    previous = base.filter(before_first | before_tie).order_by(*reverse).first()
    return previous, following


def queue_topics(filters: QueueFilters, *, user: Any, limit: int = 200) -> list[str]:
    """Return the distinct topics under the task filter, for the topic filter menu."""
    rules = visible(Rule.objects.exclude(topic=""), user)
    if filters.task:
        rules = rules.filter(task__name=filters.task)
    return list(rules.order_by("topic").values_list("topic", flat=True).distinct()[:limit])


def waiting_for(user: AbstractBaseUser) -> QuerySet[Rule]:
    """Return the pending rules the user may decide: of their tasks, no revision ever theirs, no standing approval of
    theirs."""
    own_approval = Decision.objects.filter(standing_approvals(), rule=OuterRef("pk"), reviewer_id=user.pk)
    # The same authors as rules.review.services.rule_review: anyone who ever wrote, edited or promoted a revision.
    authored = Decision.objects.filter(rule=OuterRef("pk"), reviewer_id=user.pk, action__in=AUTHORING)
    wrote = RuleRevision.objects.filter(rule=OuterRef("pk"), author_id=user.pk)
    return (
        visible(Rule.objects.filter(status=Rule.Status.PENDING), user)
        .exclude(Exists(authored))
        .exclude(Exists(wrote))
        .exclude(Exists(own_approval))
    )


def queue_leftovers(filters: QueueFilters, user: AbstractBaseUser) -> dict[str, int]:
    """Count the pending rules under the filters, and how many of them the user may still decide (one query)."""
    pending = _filtered(filters, user, with_status=False).filter(status=Rule.Status.PENDING)
    mine = waiting_for(user).values("pk")
    counts = pending.aggregate(pending=Count("id"), for_you=Count("id", filter=Q(pk__in=mine)))
    counts["for_others"] = counts["pending"] - counts["for_you"]
    return counts


# The overview checks at most this many candidates; a queue with more people-written rules is rare.
STUCK_CANDIDATES = 200


def rules_nobody_may_approve() -> list[tuple[Rule, str]]:
    """Return the pending rules fewer reviewers may approve than they still need, each with why (for Admins).

    Only a rule a person wrote, edited or promoted, or one rejected since its last approval, can run out of
    eligible reviewers (a teacher's rule excludes nobody), so only those are checked, each with rule_review.
    """
    people_wrote = Decision.objects.filter(rule=OuterRef("pk"), action__in=AUTHORING)
    candidates = (
        Rule.objects.filter(status=Rule.Status.PENDING)
        .filter(Exists(people_wrote) | rejection_stands())
        .select_related("task")
        .order_by("id")[:STUCK_CANDIDATES]
    )
    stuck = []
    for rule in candidates:
        why = rule_review(rule).nobody_may_approve()
        if why:
            stuck.append((rule, why))
    return stuck
