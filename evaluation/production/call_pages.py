"""The logged decisions of a task, one page at a time, at any volume (issue 28).

A page is found from the call it follows (keyset: newest first by ``created_at``, then ``id``), never by counting or
skipping the calls before it, and the total comes from the rollups (``evaluation.production.rollups``), which are
kept per task, day and label as each call is written. So the first page and the ten-thousandth read the same few
rows, whether the task has logged six calls or a million.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet, Sum

from evaluation.models import ClassifyCall, ClassifyCallRollup
from rules.models import Task


@dataclass(frozen=True)
class CallPage:
    """One page of logged decisions, newest first, and the calls its links start from."""

    calls: list[ClassifyCall]
    total: int
    # The first call on this page, for the link to the newer calls (None: this is the newest page).
    newer_than: int | None
    # The last call on this page, for the link to the older calls (None: there are no older calls).
    older_than: int | None


def calls_logged(*, task: Task, label: str = "") -> int:
    """Return how many calls the task has logged (with ``label``, if given), from the rollups, not by counting."""
    rollups = ClassifyCallRollup.objects.filter(task=task)
    if label:
        rollups = rollups.filter(label=label)
    return rollups.aggregate(calls=Sum("calls"))["calls"] or 0


def _cursor(calls: QuerySet[ClassifyCall], call_id: int | None) -> tuple | None:
    # Only a call of this list can be a cursor: another task's call id shows nothing of that call.
    if call_id is None:
        return None
    return calls.filter(pk=call_id).values_list("created_at", "id").first()


def calls_older(calls: QuerySet[ClassifyCall], created_at: datetime, call_id: int) -> QuerySet[ClassifyCall]:
    """Return ``calls`` older than the call at (``created_at``, ``call_id``), newest first."""
    # A range on created_at the (task, created_at) index can start from, not an OR it would have to filter by:
    # the page then reads from the cursor on, not from the newest call down to it.
    return (calls.filter(created_at__lte=created_at).exclude(created_at=created_at, id__gte=call_id)
            .order_by("-created_at", "-id"))


def calls_newer(calls: QuerySet[ClassifyCall], created_at: datetime, call_id: int) -> QuerySet[ClassifyCall]:
    """Return ``calls`` newer than the call at (``created_at``, ``call_id``), oldest first."""
    return (calls.filter(created_at__gte=created_at).exclude(created_at=created_at, id__lte=call_id)
            .order_by("created_at", "id"))


def call_page(calls: QuerySet[ClassifyCall], *, total: int, size: int,
              before: int | None = None, after: int | None = None) -> CallPage:
    """Return the page of ``calls`` just older than call ``before``, or just newer than call ``after``, or the
    newest page; a cursor that is not in ``calls`` (purged, another task's) gives the newest page."""
    after_key = _cursor(calls, after)
    if after_key is not None:
        rows = list(calls_newer(calls, *after_key)[:size + 1])
        if len(rows) > size:
            page = rows[:size][::-1]
            return CallPage(calls=page, total=total, newer_than=page[0].pk, older_than=page[-1].pk)
        # Nothing newer beyond a page: that is the newest page, shown full.
    before_key = _cursor(calls, before) if after_key is None else None
    if before_key is not None:
        rows = list(calls_older(calls, *before_key)[:size + 1])
        if not rows:
            # The older calls went (purged) since the link was made.
            return call_page(calls, total=total, size=size)
    else:
        rows = list(calls.order_by("-created_at", "-id")[:size + 1])
    page = rows[:size]
    return CallPage(
        calls=page, total=total,
        newer_than=page[0].pk if before_key is not None else None,
        older_than=page[-1].pk if len(rows) > size else None,
    )
