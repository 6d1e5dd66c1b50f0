"""Rollups of the decision log: per task, prompt version, day and label, the counts the production page reads.

Each ClassifyCall adds one to its rollup row in the same transaction as its INSERT (``rollup_add``), by one
upsert, so a crash leaves both or neither. The purge subtracts what each batch deletes in that batch's
transaction (``rollup_subtract``). ``rollups_rebuild`` recounts every row from the calls; with ``check`` it only
compares. The page, drift and charts read O(days × labels × versions) rows, never the calls.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from evaluation.models import LATENCY_BUCKETS_MS, LATENCY_FIELDS, ClassifyCall, ClassifyCallRollup

Key = tuple[int, int, date, str]  # task id, prompt version id, day, label
# What a rollup counts for one key: calls, top-probability millionths, then one count per latency bucket.
COUNT_FIELDS = ("calls", "top_probability_micros", *LATENCY_FIELDS)
CALL_FIELDS = ("task_id", "prompt_version_id", "created_at", "label", "top_probability", "latency_ms")


def latency_bucket(latency_ms: float) -> int:
    """Return the index of the latency histogram bucket a call's latency falls in."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def rollup_day(created_at: datetime) -> date:
    """Return the day a call counts for: its date in TIME_ZONE, as the production page's filters read dates."""
    return timezone.localtime(created_at).date() if timezone.is_aware(created_at) else created_at.date()


def _counts(top_probability: float, latency_ms: float) -> list[int]:
    counts = [1, round(top_probability * 1_000_000)] + [0] * len(LATENCY_FIELDS)
    counts[2 + latency_bucket(latency_ms)] = 1
    return counts


@dataclass
class Tally:
    """Rollup counts per key, added up in memory (a rebuild, a purge batch, a bulk load)."""

    rows: dict[Key, list[int]] = field(default_factory=dict)

    def add(self, task_id: int, prompt_version_id: int, created_at: datetime, label: str,
            top_probability: float, latency_ms: float) -> None:
        """Count one call."""
        key = (task_id, prompt_version_id, rollup_day(created_at), label)
        counts = _counts(top_probability, latency_ms)
        held = self.rows.get(key)
        if held is None:
            self.rows[key] = counts
        else:
            for i, n in enumerate(counts):
                held[i] += n

    @classmethod
    def of_calls(cls, calls: QuerySet[ClassifyCall] | Iterable[tuple]) -> Tally:
        """Count calls given as a queryset (read in chunks) or as ``CALL_FIELDS`` tuples."""
        tally = cls()
        if isinstance(calls, QuerySet):
            calls = calls.order_by().values_list(*CALL_FIELDS).iterator(chunk_size=5000)
        for row in calls:
            tally.add(*row)
        return tally


_TABLE = ClassifyCallRollup._meta.db_table
_KEY_COLUMNS = ("task_id", "prompt_version_id", "day", "label")


def _upsert_sql() -> str:
    columns = (*_KEY_COLUMNS, *COUNT_FIELDS)
    updates = ", ".join(f"{c} = {_TABLE}.{c} + excluded.{c}" for c in COUNT_FIELDS)
    return (f"INSERT INTO {_TABLE} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
            f"ON CONFLICT (task_id, day, prompt_version_id, label) DO UPDATE SET {updates}")


def _subtract_sql() -> str:
    sets = ", ".join(f"{c} = {c} - %s" for c in COUNT_FIELDS)
    return (f"UPDATE {_TABLE} SET {sets} WHERE task_id = %s AND prompt_version_id = %s "  # noqa: S608
            "AND day = %s AND label = %s")


def rollup_add(call: ClassifyCall) -> None:
    """Count one newly written call in its rollup row (one upsert); call it in the call's own transaction."""
    tally = Tally()
    tally.add(call.task_id, call.prompt_version_id, call.created_at, call.label, call.top_probability,
              call.latency_ms)
    rollup_add_tally(tally)


def rollup_add_tally(tally: Tally) -> None:
    """Add a tally's counts to the rollups: one upsert per key (SQLite ≥ 3.24 and PostgreSQL)."""
    params = [(*key[:2], key[2].isoformat(), key[3], *counts) for key, counts in tally.rows.items()]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(_upsert_sql(), params)


def rollup_subtract(tally: Tally) -> None:
    """Take a tally of deleted calls off the rollups and drop rows left with no calls."""
    if not tally.rows:
        return
    params = [(*counts, *key[:2], key[2].isoformat(), key[3]) for key, counts in tally.rows.items()]
    with connection.cursor() as cursor:
        cursor.executemany(_subtract_sql(), params)
        cursor.execute(f"DELETE FROM {_TABLE} WHERE calls <= 0")  # noqa: S608 (a constant)


def _stored() -> dict[Key, list[int]]:
    stored: dict[Key, list[int]] = {}
    for row in ClassifyCallRollup.objects.values_list(*_KEY_COLUMNS, *COUNT_FIELDS).iterator(chunk_size=5000):
        stored[(row[0], row[1], row[2], row[3])] = list(row[4:])
    return stored


@dataclass
class RollupCheck:
    """How the stored rollups compare with a recount of the calls."""

    rows: int
    calls: int
    differences: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.differences


def rollups_rebuild(*, check: bool = False) -> RollupCheck:
    """Recount the rollups from the calls; unless ``check``, replace the stored ones with the recount.

    The rollup table is locked first (PostgreSQL; SQLite's IMMEDIATE transaction holds the write lock), so a
    call committed before the lock is in the recount and one still writing adds to the rebuilt row after it.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {_TABLE} IN EXCLUSIVE MODE")  # noqa: S608 (a constant)
        recount = Tally.of_calls(ClassifyCall.objects.all()).rows
        stored = _stored()
        differences = [
            {"task_id": key[0], "prompt_version_id": key[1], "day": key[2].isoformat(), "label": key[3],
             "stored": dict(zip(COUNT_FIELDS, stored.get(key) or [0] * len(COUNT_FIELDS), strict=True)),
             "recount": dict(zip(COUNT_FIELDS, recount.get(key) or [0] * len(COUNT_FIELDS), strict=True))}
            for key in sorted(set(stored) | set(recount), key=lambda k: (k[0], k[2], k[1], k[3]))
            if stored.get(key) != recount.get(key)
        ]
        if not check and differences:
            ClassifyCallRollup.objects.all().delete()
            rollup_add_tally(Tally(recount))
    return RollupCheck(rows=len(recount), calls=sum(c[0] for c in recount.values()), differences=differences)
