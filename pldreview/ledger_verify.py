"""Verifying the ledger: recompute the chain, then cross-check every audited row against its latest entry.

The chain check finds an edited, inserted or removed entry; the cross-check finds a row changed behind
the ledger's back (a rewritten ``Decision.reviewer`` or rule text) even when the ledger itself is intact.
``scripts/verify-ledger`` does the chain check on an export with the standard library alone.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.apps import apps
from django.db import models

from pldreview.ledger import GENESIS_HASH, chain_hash, row_facts
from pldreview.models import LedgerEntry, LedgerHead

# Entry columns that the payload repeats, so that the hash covers them.
_COLUMNS = ("sequence", "event", "object_type", "object_id", "actor_id", "actor_name", "payload", "prev_hash", "hash")
_PAYLOAD_KEYS = {"sequence": "sequence", "event": "event", "object_type": "object_type",
                 "object_id": "object_id", "actor_id": "actor_id", "actor": "actor_name"}


@dataclass(frozen=True)
class LedgerProblem:
    """The first thing found wrong: at which sequence number, and what differs."""

    sequence: int
    kind: str  # chain | missing | columns | head | row
    detail: str
    object_type: str = ""
    object_id: str = ""


@dataclass
class LedgerVerdict:
    """The outcome of verifying the ledger."""

    ok: bool
    entries_checked: int = 0
    rows_checked: int = 0
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    seconds: float = 0.0
    problem: LedgerProblem | None = None
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.problem is None:
            return (f"Intact: {self.entries_checked} entries chain to head #{self.head_sequence} "
                    f"{self.head_hash}, and {self.rows_checked} audited rows match their latest entries.")
        return f"Broken at #{self.problem.sequence}: {self.problem.detail}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["message"] = self.message
        return data


def audited_models() -> list[type[models.Model]]:
    """Return the models whose rows the ledger vouches for: every model with django-simple-history."""
    return [m for m in apps.get_models() if hasattr(m._meta, "simple_history_manager_attribute")]


def _snapshot_fields(model: type[models.Model]) -> frozenset[str]:
    return frozenset(f.attname for f in model._meta.concrete_fields)


def entry_problem(expected_sequence: int, prev_hash: str, row: tuple) -> tuple[LedgerProblem | None, dict]:
    """Check one entry (``_COLUMNS`` order) against the previous hash; return a problem or its payload."""
    sequence, event, object_type, object_id, actor_id, actor_name, payload, stored_prev, stored_hash = row
    if sequence != expected_sequence:
        return LedgerProblem(expected_sequence, "missing",
                             f"entry #{expected_sequence} is missing (the next entry is #{sequence})"), {}
    if stored_prev != prev_hash:
        return LedgerProblem(sequence, "chain",
                             f"prev_hash {stored_prev} is not the hash of entry #{sequence - 1} ({prev_hash})"), {}
    recomputed = chain_hash(prev_hash, payload)
    if recomputed != stored_hash:
        return LedgerProblem(sequence, "chain",
                             f"hash {stored_hash} does not match SHA-256(prev_hash ‖ payload) = {recomputed}: "
                             "the payload was edited", object_type, object_id), {}
    try:
        data = json.loads(payload)
    except ValueError:
        return LedgerProblem(sequence, "chain", "the payload is not JSON"), {}
    columns = dict(zip(("sequence", "event", "object_type", "object_id", "actor_id", "actor_name"),
                       (sequence, event, object_type, object_id, actor_id, actor_name), strict=True))
    for key, column in _PAYLOAD_KEYS.items():
        if data.get(key) != columns[column]:
            return LedgerProblem(sequence, "columns",
                                 f"column {column} is {columns[column]!r} but the hashed payload says "
                                 f"{data.get(key)!r}", object_type, object_id), {}
    return None, data


def _entries(start: int) -> Iterator[tuple]:
    return LedgerEntry.objects.filter(sequence__gte=start).order_by("sequence").values_list(*_COLUMNS).iterator(
        chunk_size=5000
    )


def _diff(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    changed = [k for k in sorted(current) if recorded.get(k) != current[k]]
    return "; ".join(f"{k}: ledger {recorded.get(k)!r}, row {current[k]!r}" for k in changed)


def ledger_verify(*, start: int = 1, check_rows: bool = True) -> LedgerVerdict:
    """Recompute the chain from ``start`` and cross-check every audited row; stop at the first break."""
    began = time.perf_counter()
    verdict = LedgerVerdict(ok=False)
    labels = {m._meta.label_lower: _snapshot_fields(m) for m in audited_models()} if check_rows else {}
    latest: dict[tuple[str, str], tuple[int, dict]] = {}

    start = max(start, 1)
    prev_hash = GENESIS_HASH
    if start > 1:
        prev_hash = LedgerEntry.objects.filter(sequence=start - 1).values_list("hash", flat=True).first() or ""
        if not prev_hash:
            verdict.problem = LedgerProblem(start - 1, "missing", f"entry #{start - 1} is missing")
    expected = start
    if verdict.problem is None:
        # raw_decode skips json.loads' whitespace scans: a third of the time per entry.
        loads, sha256 = json.JSONDecoder().raw_decode, hashlib.sha256
        for row in _entries(start):
            # Fast path for the intact entry; entry_problem explains the first one that is not.
            sequence, event, object_type, object_id, actor_id, actor_name, payload, stored_prev, stored_hash = row
            data: dict = {}
            intact = (sequence == expected and stored_prev == prev_hash
                      and sha256((prev_hash + payload).encode()).hexdigest() == stored_hash)
            if intact:
                try:
                    data = loads(payload)[0]
                    intact = (data["sequence"] == sequence and data["event"] == event
                              and data["object_type"] == object_type and data["object_id"] == object_id
                              and data["actor_id"] == actor_id and data["actor"] == actor_name)
                except (ValueError, KeyError, TypeError):
                    intact = False
            if not intact:
                verdict.problem = entry_problem(expected, prev_hash, row)[0] or LedgerProblem(
                    sequence, "chain", "the payload is not a ledger payload")
                break
            verdict.entries_checked += 1
            prev_hash, expected = stored_hash, expected + 1
            snapshot = labels.get(object_type)
            if snapshot is not None:
                facts = data.get("facts")
                if isinstance(facts, dict) and facts.keys() == snapshot:
                    latest[(object_type, object_id)] = (sequence, facts)
    # Entries before ``start`` still vouch for rows; read their latest snapshots without re-hashing.
    if check_rows and start > 1 and verdict.problem is None:
        earlier = LedgerEntry.objects.filter(sequence__lt=start, object_type__in=labels).order_by("sequence")
        for sequence, object_type, object_id, payload in earlier.values_list(
            "sequence", "object_type", "object_id", "payload"
        ).iterator(chunk_size=5000):
            facts = json.loads(payload).get("facts")
            if isinstance(facts, dict) and facts.keys() == labels[object_type]:
                latest.setdefault((object_type, object_id), (sequence, facts))
                if latest[(object_type, object_id)][0] < sequence:
                    latest[(object_type, object_id)] = (sequence, facts)

    head = LedgerHead.objects.filter(pk=1).first()
    verdict.head_sequence, verdict.head_hash = expected - 1, prev_hash
    if verdict.problem is None and head is not None and (head.sequence, head.hash) != (expected - 1, prev_hash):
        verdict.problem = LedgerProblem(
            head.sequence, "head",
            f"the head says #{head.sequence} {head.hash} but the last entry is #{expected - 1} {prev_hash}",
        )
    if verdict.problem is None and check_rows:
        verdict.problem = _cross_check(latest, verdict)
    verdict.ok = verdict.problem is None
    verdict.problems = [verdict.problem] if verdict.problem else []
    verdict.seconds = time.perf_counter() - began
    return verdict


def _cross_check(latest: dict[tuple[str, str], tuple[int, dict]], verdict: LedgerVerdict) -> LedgerProblem | None:
    found: list[LedgerProblem] = []
    for model in audited_models():
        label = model._meta.label_lower
        for row in model._default_manager.order_by("pk").iterator(chunk_size=2000):
            verdict.rows_checked += 1
            current = row_facts(row)
            recorded = latest.get((label, str(row.pk)))
            if recorded is None:
                found.append(LedgerProblem(verdict.head_sequence + 1, "row",
                                           f"{label} {row.pk} has no ledger entry", label, str(row.pk)))
            elif recorded[1] != current:
                found.append(LedgerProblem(
                    recorded[0], "row",
                    f"{label} {row.pk} differs from its latest ledger entry #{recorded[0]}: "
                    f"{_diff(recorded[1], current)}",
                    label, str(row.pk),
                ))
    return min(found, key=lambda p: p.sequence) if found else None


def ledger_chain_through(sequence: int) -> tuple[str, LedgerProblem | None]:
    """Recompute the chain from the first entry to ``sequence``; return its hash there, or the first break."""
    prev_hash, expected = GENESIS_HASH, 1
    for row in LedgerEntry.objects.filter(sequence__lte=sequence).order_by("sequence").values_list(
        *_COLUMNS
    ).iterator(chunk_size=5000):
        problem, _ = entry_problem(expected, prev_hash, row)
        if problem is not None:
            return "", problem
        prev_hash, expected = row[-1], expected + 1
    if expected - 1 != sequence:
        return "", LedgerProblem(expected, "missing", f"entry #{expected} is missing (the ledger ends before it)")
    return prev_hash, None
