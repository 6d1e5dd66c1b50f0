"""Verifying the ledger: recompute the chain, then cross-check every ledgered row against its latest entry.

The chain check finds an edited, inserted or removed entry; the cross-check walks the ledger's own
snapshots and finds a row changed behind the ledger's back (a rewritten ``Decision.reviewer``, rule text
or signer's name) or deleted (an object the ledger knows whose row is gone), even when the ledger itself
is intact. Every delete permit must be one a ``retention.purge`` entry names, and the ledger must still
hold, unchanged, every entry a signed checkpoint vouches for, so a cut tail is found.
``scripts/verify-ledger`` does the chain and checkpoint checks on an export with the standard library alone.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models
from django.db.models import Count, Max

from pldreview.checkpoints import CheckpointError, checkpoint_path, ledger_checkpoint_read, signed_heads
from pldreview.db_triggers import PERMIT_TABLE
from pldreview.ledger import GENESIS_HASH, chain_hash, row_facts
from pldreview.models import LedgerCheckpoint, LedgerEntry, LedgerHead, Signature

# The event that records the one permitted deletion, naming the delete permit it opened.
PURGE_EVENT = "retention.purge"
# A history record's time is taken at the save, its ledger entry's a moment later, in the same transaction:
# entries this close to a purge's cutoff may have lost their history record to it.
PURGE_MARGIN = timedelta(seconds=1)

# Entry columns that the payload repeats, so that the hash covers them.
_COLUMNS = ("sequence", "event", "object_type", "object_id", "actor_id", "actor_name", "payload", "prev_hash", "hash")
_PAYLOAD_KEYS = {"sequence": "sequence", "event": "event", "object_type": "object_type",
                 "object_id": "object_id", "actor_id": "actor_id", "actor": "actor_name"}


@dataclass(frozen=True)
class LedgerProblem:
    """One thing found wrong: at which sequence number, and what differs."""

    sequence: int
    # chain | missing (an entry, or the row of a ledgered object, is gone) | columns | head | row
    # | history (fewer history records than ledgered saves) | permit (a delete permit no retention purge names)
    # | checkpoint (a signed checkpoint's entry is gone or differs)
    kind: str
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

    checkpoints_checked: int = 0
    # The first entry re-hashed when the verification started after a signed checkpoint; 0 for a full one.
    incremental_from: int = 0

    @property
    def message(self) -> str:
        if self.problem is None:
            checkpoints = (f", and the ledger holds the entries of its {self.checkpoints_checked} signed "
                           "checkpoints" if self.checkpoints_checked else "")
            since = (f" (incrementally, from entry #{self.incremental_from}, after the last signed checkpoint)"
                     if self.incremental_from > 1 else "")
            return (f"Intact{since}: {self.entries_checked} entries chain to head #{self.head_sequence} "
                    f"{self.head_hash}, and {self.rows_checked} audited rows match their latest entries"
                    f"{checkpoints}.")
        more = f" ({len(self.problems)} problems; the first:)" if len(self.problems) > 1 else ""
        return f"Broken at #{self.problem.sequence}{more}: {self.problem.detail}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["message"] = self.message
        return data


def audited_models() -> list[type[models.Model]]:
    """Return the models whose rows the ledger vouches for: every model with django-simple-history."""
    return [m for m in apps.get_models() if hasattr(m._meta, "simple_history_manager_attribute")]


def ledgered_models() -> list[type[models.Model]]:
    """Return every model whose rows the ledger holds full snapshots of: the audited models, signatures and
    signed checkpoints (appended as ``signature.created`` and ``ledger.checkpoint`` with the whole row)."""
    return [*audited_models(), Signature, LedgerCheckpoint]


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


def _diff(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    changed = [k for k in sorted(current) if recorded.get(k) != current[k]]
    return "; ".join(f"{k}: ledger {recorded.get(k)!r}, row {current[k]!r}" for k in changed)


def ledger_verify(
    *, start: int = 1, check_rows: bool = True, checkpoints: list[tuple[int, str, str]] | None = None,
    since_checkpoint: bool = False,
) -> LedgerVerdict:
    """Recompute the chain from ``start``; cross-check every ledgered object, the delete permits and checkpoints.

    The chain check stops at its first break (nothing after it can be trusted); every other problem is
    reported, each with its object and entry. ``checkpoints`` are (sequence, hash, where) of signed
    checkpoints to hold the ledger to, besides the stored ones. ``since_checkpoint`` starts after the last
    stored checkpoint whose signed file states its entry's hash (docs/ledger.md, "Incremental verification").
    """
    began = time.perf_counter()
    verdict = LedgerVerdict(ok=False)
    problems: list[LedgerProblem] = []
    if since_checkpoint:
        start, anchor_problems = _incremental_start()
        problems += anchor_problems
        verdict.incremental_from = start
    labels = {m._meta.label_lower: _snapshot_fields(m) for m in ledgered_models()} if check_rows else {}
    latest: dict[tuple[str, str], tuple[int, dict]] = {}
    purged_permits: set[int] = set()
    # Each audited save writes one history record and one entry; those after every purge's cutoff must all
    # still have their record. Counted per object, from the first entry (history is not tied to --from).
    with_history = {m._meta.label_lower for m in audited_models()} if check_rows and start == 1 else set()
    kept_since = _purge_cutoff() if with_history else ""
    saves: dict[tuple[str, str], int] = {}
    expected_hashes: dict[int, list[tuple[str, str]]] = {}
    for sequence, digest, where in [*_stored_checkpoints(), *(checkpoints or [])]:
        expected_hashes.setdefault(sequence, []).append((digest, where))
    verdict.checkpoints_checked = sum(len(v) for v in expected_hashes.values())
    if start > 1:
        # Checkpoints before ``start`` are not walked: each one's entry must still have the signed hash.
        problems += _earlier_checkpoint_problems(start, expected_hashes)

    start = max(start, 1)
    prev_hash = GENESIS_HASH
    chain_broken = False
    if start > 1:
        prev_hash = LedgerEntry.objects.filter(sequence=start - 1).values_list("hash", flat=True).first() or ""
        if not prev_hash:
            problems.append(LedgerProblem(start - 1, "missing", f"entry #{start - 1} is missing"))
            chain_broken = True
    expected = start
    if not chain_broken:
        walk = _walk_chain(start, prev_hash, labels, with_history, kept_since, expected_hashes)
        verdict.entries_checked = walk.checked
        prev_hash, expected, chain_broken = walk.prev_hash, walk.expected, walk.problem is not None
        problems += walk.checkpoint_problems
        if walk.problem is not None:
            problems.append(walk.problem)
        latest, saves, purged_permits = walk.latest, walk.saves, walk.purged_permits
    # Entries before ``start`` still vouch for rows and name purges; read them without re-hashing.
    if check_rows and start > 1 and not chain_broken:
        problems += _read_earlier(start, labels, latest, purged_permits)

    last = expected - 1
    verdict.head_sequence, verdict.head_hash = last, prev_hash
    # A checkpoint beyond the last entry that chains: the tail it vouched for was cut (or is broken).
    # (One before ``--from`` is not re-hashed here, so it is left to a full verification.)
    for sequence in sorted(s for s in expected_hashes if s > last):
        for digest, where in expected_hashes[sequence]:
            why = (f"the chain breaks at #{last + 1}, before it" if chain_broken else
                   f"the ledger ends at #{last}: entries were removed from the ledger's tail")
            problems.append(LedgerProblem(sequence, "checkpoint", f"{where} vouches for entry #{sequence} {digest}, "
                                                                  f"but {why}"))
    head = LedgerHead.objects.filter(pk=1).first()
    if not chain_broken and head is not None and (head.sequence, head.hash) != (last, prev_hash):
        problems.append(LedgerProblem(
            head.sequence, "head",
            f"the head says #{head.sequence} {head.hash} but the last entry is #{last} {prev_hash}",
        ))
    if check_rows:
        # After a break nothing later in the chain can be trusted, so neither can the snapshots read so far.
        if not chain_broken:
            problems += _cross_check(latest, verdict)
            problems += _history_problems(saves, latest)
        problems += _permit_problems(purged_permits, last)
    problems.sort(key=lambda p: p.sequence)
    verdict.problems = problems
    verdict.problem = problems[0] if problems else None
    verdict.ok = not problems
    verdict.seconds = time.perf_counter() - began
    return verdict


# Rows fetched per round trip by the chain walk: big enough that the fetch is not per row, small enough to stay flat.
WALK_CHUNK = 5000
# The columns the hashed payload repeats, in ``_COLUMNS`` order, so one tuple comparison checks them all.
_REPEATED = itemgetter("sequence", "event", "object_type", "object_id", "actor_id", "actor")


@dataclass
class _Walk:
    """What the chain walk found: where it stopped, each object's latest snapshot, saves and purges."""

    prev_hash: str
    expected: int
    checked: int = 0
    problem: LedgerProblem | None = None
    checkpoint_problems: list[LedgerProblem] = field(default_factory=list)
    latest: dict[tuple[str, str], tuple[int, dict]] = field(default_factory=dict)
    saves: dict[tuple[str, str], int] = field(default_factory=dict)
    purged_permits: set[int] = field(default_factory=set)


def _entry_chunks(start: int) -> Iterator[Iterable[tuple]]:
    """Yield the entries from ``start`` in ``_COLUMNS`` order, WALK_CHUNK rows at a time, as plain tuples.

    Through the database cursor rather than the queryset's iterator: the walk's cost is per row, and the
    queryset's per-row machinery was a tenth of it. ``chunked_cursor`` is a server-side cursor on PostgreSQL,
    so memory stays flat there too.
    """
    sql, params = (LedgerEntry.objects.filter(sequence__gte=start).order_by("sequence").values_list(*_COLUMNS)
                   .query.sql_with_params())
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        if connection.vendor == "sqlite":
            # SQLite steps through the result as it is iterated (flat memory), and iterating its cursor
            # skips fetchmany's lists: a sixth of the fetch.
            yield cursor.cursor
            return
        while rows := cursor.fetchmany(WALK_CHUNK):
            yield rows


def _walk_chain(start: int, prev_hash: str, labels: dict[str, frozenset[str]], with_history: set[str],
                kept_since: str, expected_hashes: dict[int, list[tuple[str, str]]]) -> _Walk:
    """Re-hash every entry from ``start``, stopping at the first that does not chain; gather what it vouches for.

    The hot loop of verification: per entry one SHA-256, one JSON decode and one tuple comparison. An entry
    that fails any check is handed to ``entry_problem``, which explains it.
    """
    walk = _Walk(prev_hash=prev_hash, expected=start)
    latest, saves, purged_permits = walk.latest, walk.saves, walk.purged_permits
    # The scanner itself, not json.loads: loads' whitespace scans and call layers were a third of a decode.
    # It raises StopIteration on text that does not start a JSON value.
    scan, sha256, repeated = json.JSONDecoder().scan_once, hashlib.sha256, _REPEATED
    expected = start
    with closing(_entry_chunks(start)) as chunks:
        for rows in chunks:
            for row in rows:
                sequence, event, object_type, object_id, _, _, payload, stored_prev, stored_hash = row
                data: Any = None
                try:
                    if (sequence == expected and stored_prev == prev_hash
                            and sha256((prev_hash + payload).encode()).hexdigest() == stored_hash):
                        data, end = scan(payload, 0)
                        # Nothing may follow the object, and the columns must be what the hashed payload says.
                        if end != len(payload) or repeated(data) != row[:6]:
                            data = None
                except (ValueError, StopIteration, KeyError, TypeError):
                    data = None
                if data is None:
                    walk.problem = entry_problem(expected, prev_hash, row)[0] or LedgerProblem(
                        sequence, "chain", "the payload is not a ledger payload")
                    break
                prev_hash = stored_hash
                expected += 1
                if sequence in expected_hashes:
                    walk.checkpoint_problems += _checkpoint_mismatches(sequence, stored_hash,
                                                                       expected_hashes.pop(sequence))
                snapshot = labels.get(object_type)
                if snapshot is not None:
                    facts = data.get("facts")
                    if isinstance(facts, dict) and facts.keys() == snapshot:
                        key = (object_type, object_id)
                        latest[key] = (sequence, facts)
                        if object_type in with_history and data["time"] >= kept_since:
                            saves[key] = saves.get(key, 0) + 1
                elif event == PURGE_EVENT:
                    purged_permits.update(_named_permits(data))
            if walk.problem is not None:
                break
    walk.checked = expected - start
    walk.prev_hash, walk.expected = prev_hash, expected
    return walk


def _purge_cutoff() -> str:
    """Return, as ledger time text, the moment after which no retention purge can have deleted history."""
    cutoff = datetime.min.replace(tzinfo=UTC)
    for (payload,) in LedgerEntry.objects.filter(event=PURGE_EVENT).values_list("payload"):
        before = (json.loads(payload).get("facts") or {}).get("before")
        try:
            cutoff = max(cutoff, datetime.fromisoformat(before).astimezone(UTC) + PURGE_MARGIN)
        except (TypeError, ValueError):
            # A purge entry without a readable cutoff: trust no history before it was written.
            cutoff = datetime.max.replace(tzinfo=UTC)
    return "" if cutoff.year == 1 else cutoff.isoformat()


def _history_problems(saves: dict[tuple[str, str], int],
                      latest: dict[tuple[str, str], tuple[int, dict]]) -> list[LedgerProblem]:
    """Name every audited object with fewer history records than ledgered saves no purge can have reached."""
    found: list[LedgerProblem] = []
    for model in audited_models():
        label = model._meta.label_lower
        history = model.history.model  # type: ignore[attr-defined]
        pk = model._meta.pk.attname
        held = {str(row[pk]): row["n"] for row in history.objects.order_by().values(pk).annotate(n=Count("pk"))}
        for (object_type, object_id), count in saves.items():
            if object_type == label and held.get(object_id, 0) < count:
                sequence = latest[(object_type, object_id)][0]
                found.append(LedgerProblem(
                    sequence, "history",
                    f"{label} {object_id}: the ledger records {count} saves that no retention purge reached, but "
                    f"its history table holds {held.get(object_id, 0)} records: history was deleted behind the "
                    "ledger's back", label, object_id))
    return found


def _stored_checkpoints() -> list[tuple[int, str, str]]:
    stored = [(sequence, digest, f"signed checkpoint {pk} (of {created:%Y-%m-%d %H:%M} UTC)")
              for pk, sequence, digest, created in LedgerCheckpoint.objects.order_by("sequence").values_list(
                  "pk", "sequence", "hash", "created_at")]
    return stored + signed_heads()


def _checkpoint_mismatches(sequence: int, stored_hash: str, wanted: list[tuple[str, str]]) -> list[LedgerProblem]:
    return [LedgerProblem(sequence, "checkpoint",
                          f"{where} vouches for entry #{sequence} {digest}, but the ledger's entry #{sequence} "
                          f"has hash {stored_hash}: the ledger was rewritten after the checkpoint")
            for digest, where in wanted if digest != stored_hash]


def _named_permits(data: dict) -> list[int]:
    facts = data.get("facts")
    permit = facts.get("permit") if isinstance(facts, dict) else None
    return [permit] if isinstance(permit, int) else []


def _read_earlier(start: int, labels: dict[str, frozenset[str]], latest: dict[tuple[str, str], tuple[int, dict]],
                  purged_permits: set[int]) -> list[LedgerProblem]:
    """Read, from the entries before ``start``, each object's latest full-row snapshot and every purge's permit.

    Found through the (object_type, object_id, sequence) index, one entry per object, so the cost follows the
    number of objects, not the ledger's length. The chain before ``start`` is not re-hashed, so each entry read
    is checked where it stands: its hash is SHA-256(prev_hash ‖ payload) and the next entry's prev_hash is that
    hash. Changing it therefore means recomputing every hash up to ``start``, which a signed checkpoint there
    catches.
    """
    earlier = LedgerEntry.objects.filter(sequence__lt=start)
    last_per_object = (earlier.filter(object_type__in=list(labels)).order_by().values("object_type", "object_id")
                       .annotate(last=Max("sequence")).values_list("last", flat=True))
    wanted = [*last_per_object.iterator(chunk_size=5000),
              *earlier.filter(event=PURGE_EVENT).values_list("sequence", flat=True)]
    problems: list[LedgerProblem] = []
    fields = ("sequence", "event", "object_type", "object_id", "payload", "prev_hash", "hash")
    for i in range(0, len(wanted), 1000):
        chunk = wanted[i:i + 1000]
        links = dict(LedgerEntry.objects.filter(sequence__in=[n + 1 for n in chunk]).values_list("sequence",
                                                                                                 "prev_hash"))
        for row in LedgerEntry.objects.filter(sequence__in=chunk).values_list(*fields):
            problem = _entry_in_place(row, links.get(row[0] + 1))
            if problem is not None:
                problems.append(problem)
                continue
            sequence, event, object_type, object_id, payload = row[:5]
            data = json.loads(payload)
            if event == PURGE_EVENT:
                purged_permits.update(_named_permits(data))
                continue
            facts = data.get("facts")
            if (object_type, object_id) in latest:
                continue  # the walk from ``start`` found a later snapshot
            if isinstance(facts, dict) and facts.keys() == labels.get(object_type):
                latest[(object_type, object_id)] = (sequence, facts)
            else:
                # Its last entry is not a snapshot (e.g. a signing event): its last snapshot is further back.
                problems += _older_snapshot(earlier, row, labels, latest)
    return problems


def _entry_in_place(row: tuple, next_prev_hash: str | None) -> LedgerProblem | None:
    sequence, _event, object_type, object_id, payload, _prev_hash, stored_hash = row
    if chain_hash(row[5], payload) != stored_hash:
        return LedgerProblem(sequence, "chain", f"hash {stored_hash} does not match SHA-256(prev_hash ‖ payload): "
                                                "the payload was edited", object_type, object_id)
    if next_prev_hash is None:
        return LedgerProblem(sequence + 1, "missing", f"entry #{sequence + 1} is missing")
    if next_prev_hash != stored_hash:
        return LedgerProblem(sequence + 1, "chain", f"prev_hash {next_prev_hash} is not the hash of entry "
                                                    f"#{sequence} ({stored_hash})", object_type, object_id)
    return None


def _older_snapshot(earlier: models.QuerySet[LedgerEntry], row: tuple, labels: dict[str, frozenset[str]],
                    latest: dict[tuple[str, str], tuple[int, dict]]) -> list[LedgerProblem]:
    object_type, object_id = row[2], row[3]
    older = earlier.filter(object_type=object_type, object_id=object_id, sequence__lt=row[0]).order_by("-sequence")
    fields = ("sequence", "event", "object_type", "object_id", "payload", "prev_hash", "hash")
    for candidate in older.values_list(*fields).iterator(chunk_size=100):
        facts = json.loads(candidate[4]).get("facts")
        if isinstance(facts, dict) and facts.keys() == labels.get(object_type):
            following = LedgerEntry.objects.filter(sequence=candidate[0] + 1).values_list("prev_hash", flat=True)
            problem = _entry_in_place(candidate, following.first())
            if problem is not None:
                return [problem]
            latest[(object_type, object_id)] = (candidate[0], facts)
            return []
    return []


def _incremental_start() -> tuple[int, list[LedgerProblem]]:
    """Return where an incremental verification starts: after the last checkpoint its signed file vouches for."""
    checkpoint = LedgerCheckpoint.objects.order_by("-sequence", "-id").first()
    if checkpoint is None:
        return 1, []
    where = f"signed checkpoint {checkpoint.pk}"
    try:
        statement = ledger_checkpoint_read(checkpoint_path(checkpoint).read_bytes())
    except (OSError, CheckpointError, ImproperlyConfigured) as exc:
        return 1, [LedgerProblem(checkpoint.sequence, "checkpoint",
                                 f"{where}'s file cannot vouch for the ledger ({exc}); verified from entry #1")]
    if (statement.sequence, statement.hash) != (checkpoint.sequence, checkpoint.hash):
        return 1, [LedgerProblem(checkpoint.sequence, "checkpoint",
                                 f"{where} states #{checkpoint.sequence} {checkpoint.hash} but its signed file "
                                 f"states #{statement.sequence} {statement.hash}; verified from entry #1")]
    return checkpoint.sequence + 1, []


def _earlier_checkpoint_problems(start: int, expected_hashes: dict[int, list[tuple[str, str]]]) -> list[LedgerProblem]:
    before = sorted(s for s in expected_hashes if s < start)
    held = dict(LedgerEntry.objects.filter(sequence__in=before).values_list("sequence", "hash"))
    found: list[LedgerProblem] = []
    for sequence in before:
        wanted = expected_hashes.pop(sequence)
        if sequence not in held:
            found += [LedgerProblem(sequence, "checkpoint", f"{where} vouches for entry #{sequence} {digest}, but "
                                                            "the ledger no longer holds that entry")
                      for digest, where in wanted]
        else:
            found += _checkpoint_mismatches(sequence, held[sequence], wanted)
    return found


def _cross_check(latest: dict[tuple[str, str], tuple[int, dict]], verdict: LedgerVerdict) -> list[LedgerProblem]:
    """Compare each ledgered row with its latest snapshot, then name every snapshot whose row is gone."""
    found: list[LedgerProblem] = []
    seen: set[tuple[str, str]] = set()
    for model in ledgered_models():
        label = model._meta.label_lower
        for row in model._default_manager.order_by("pk").iterator(chunk_size=2000):
            verdict.rows_checked += 1
            key = (label, str(row.pk))
            seen.add(key)
            current = row_facts(row)
            recorded = latest.get(key)
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
    # The retention purge deletes history records only, never these rows: a row the ledger knows and the
    # table lacks was deleted behind the ledger's back, whatever purge ran.
    for (label, pk), (sequence, _facts) in latest.items():
        if (label, pk) not in seen:
            found.append(LedgerProblem(
                sequence, "missing",
                f"{label} {pk} is missing: its latest ledger entry #{sequence} records the row, but the table "
                "no longer holds it (deleted behind the ledger's back)", label, pk))
    return found


def _permit_problems(purged_permits: set[int], last: int) -> list[LedgerProblem]:
    """Name every delete permit no ``retention.purge`` entry names: deletions made outside the purge."""
    if connection.vendor not in ("sqlite", "postgresql"):
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, reason, closed FROM {PERMIT_TABLE} ORDER BY id")  # noqa: S608 (a constant)
        permits = cursor.fetchall()
    return [
        LedgerProblem(last + 1, "permit",
                      f"delete permit {pk} ({reason!r}{'' if closed else ', still open'}) was opened outside "
                      "the retention purge: no retention.purge entry names it, so whatever it let through "
                      "(history records, audited rows) was deleted behind the ledger's back", PERMIT_TABLE, str(pk))
        for pk, reason, closed in permits
        if pk not in purged_permits or not closed
    ]


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
