"""Exporting the ledger as JSON Lines: one entry per line, checkable by ``scripts/verify-ledger`` alone."""
from __future__ import annotations

import json
from collections.abc import Iterator

from pldreview.models import LedgerEntry

EXPORT_FIELDS = ("sequence", "created_at", "actor_id", "actor_name", "event", "object_type", "object_id",
                 "payload", "prev_hash", "hash")


def ledger_export_lines() -> Iterator[str]:
    """Yield the ledger as JSON Lines, oldest entry first, each line ending in a newline."""
    rows = LedgerEntry.objects.order_by("sequence").values_list(*EXPORT_FIELDS).iterator(chunk_size=5000)
    for row in rows:
        data = dict(zip(EXPORT_FIELDS, row, strict=True))
        data["created_at"] = data["created_at"].isoformat()
        yield json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n"
