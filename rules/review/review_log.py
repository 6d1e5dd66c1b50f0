"""A task's complete review log, for auditors: every reviewer's decision on every rule and on its order, as CSV or JSON.

Not the decision log, which records the classify calls (``evaluation/production/decision_log.py``).
"""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from pldreview.models import Signature
from rules.models import Decision, RuleSetReorderProposal, Task

COLUMNS = [
    "decision_id", "created_at", "task", "rule_id", "rule_origin", "revision", "action", "reviewer",
    "reason", "status_before", "status_after", "undoes", "rule_text", "rule_label", "rule_topic",
    "precedence_note", "revision_author", "revision_reason", "order_proposal",
    # The electronic signature (Part 11 §11.50): printed name, UTC time, meaning, and what it covered.
    "signature", "signed_by", "signed_at", "signature_meaning", "signature_content_sha256",
]
_BLANK = dict.fromkeys(COLUMNS, "")


def _signature_cells(signature: Signature | None) -> dict[str, str]:
    return {
        "signature": signature.manifestation if signature else "",
        "signed_by": signature.full_name if signature else "",
        "signed_at": signature.signed_at.astimezone(UTC).isoformat() if signature else "",
        "signature_meaning": signature.get_meaning_display() if signature else "",
        "signature_content_sha256": signature.content_sha256 if signature else "",
    }


def review_log_rows(*, task: Task) -> list[dict[str, Any]]:
    """Return the task's decisions in the order they were made, each with the revision it concerned."""
    decisions = (
        Decision.objects.filter(rule__task=task)
        .select_related("rule", "revision", "revision__author", "reviewer", "signature")
        .order_by("created_at", "id")
    )
    rows = []
    for d in decisions:
        revision = d.revision
        rows.append(
            {
                "decision_id": d.pk,
                "created_at": d.created_at.isoformat(),
                "task": task.name,
                "rule_id": d.rule_id,
                "rule_origin": d.rule.origin,
                "revision": revision.number if revision else None,
                "action": d.action,
                "reviewer": d.reviewer.get_username(),
                "reason": d.reason,
                "status_before": d.status_before,
                "status_after": d.status_after,
                "undoes": d.undoes_id,
                "rule_text": revision.text if revision else d.rule.text,
                "rule_label": revision.label if revision else d.rule.label,
                "rule_topic": revision.topic if revision else d.rule.topic,
                "precedence_note": revision.precedence_note if revision else d.rule.precedence_note,
                "revision_author": revision.author_display if revision else "",
                "revision_reason": revision.reason if revision else "",
                "order_proposal": None,
                **_signature_cells(d.signature),
            }
        )
    rows.extend(_order_rows(task))
    # Stable: decisions keep their id order among equal times.
    return sorted(rows, key=lambda row: datetime.fromisoformat(row["created_at"]))


def _order_rows(task: Task) -> list[dict[str, Any]]:
    """Return one row per proposal of a rule-set order, per approval of one, and per rejection."""
    proposals = (
        RuleSetReorderProposal.objects.filter(task=task)
        .select_related("proposed_by", "decided_by", "signature", "decision_signature")
        .prefetch_related("approvals__reviewer", "approvals__signature")
    )
    rows = []
    for p in proposals:
        order = "Order: " + ", ".join(f"rule {pk}" for pk in p.order)
        common = {**_BLANK, "task": task.name, "rule_text": order, "order_proposal": p.pk, "decision_id": None,
                  "rule_id": None, "revision": None, "undoes": None}
        rows.append({**common, **_signature_cells(p.signature), "created_at": p.created_at.isoformat(),
                     "action": "propose_order", "reviewer": p.proposed_by.get_username(), "reason": p.reason})
        for approval in p.approvals.all():
            rows.append({**common, **_signature_cells(approval.signature),
                         "created_at": approval.created_at.isoformat(), "action": "approve_order",
                         "reviewer": approval.reviewer.get_username(), "reason": approval.reason})
        if p.status == RuleSetReorderProposal.Status.REJECTED and p.decided_by and p.decided_at:
            rows.append({**common, **_signature_cells(p.decision_signature), "created_at": p.decided_at.isoformat(),
                         "action": "reject_order", "reviewer": p.decided_by.get_username(),
                         "reason": p.decision_reason})
    return rows


def _cell(value: Any) -> Any:
    # Spreadsheet programs run cells starting with = + - @ as formulas; a leading quote keeps them text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def review_log_csv(*, task: Task) -> str:
    """Return the review log as CSV text with a header row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in review_log_rows(task=task):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def review_log_json(*, task: Task) -> str:
    """Return the review log as a JSON document with the task and its decisions."""
    payload = {"task": task.name, "columns": COLUMNS, "decisions": review_log_rows(task=task)}
    return json.dumps(payload, ensure_ascii=False, indent=2)
