"""The tamper-evident ledger: every audited event appended in the same transaction as the change.

Each entry's hash is ``SHA-256(previous hash ‖ canonical payload)``, so changing, removing or inserting
an entry breaks every hash after it. Appending locks the single ``LedgerHead`` row (PostgreSQL: a row
lock; SQLite: the IMMEDIATE transaction already holds the write lock), so two writers never fork the
chain, and costs O(1): nothing is read but the head.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from pldreview.models import LedgerEntry, LedgerHead

GENESIS_HASH = "0" * 64
# How a signed report states the ledger head it is anchored to (in the PDF text and signature reason).
LEDGER_ANCHOR_LABEL = "ledger head"
_ANCHOR = re.compile(LEDGER_ANCHOR_LABEL + r" #(\d+) ([0-9a-f]{64})")


def canonical_json(data: Any) -> str:
    """Return the canonical JSON text of the data: sorted keys, no spaces, UTF-8 characters kept."""
    return json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, payload: str) -> str:
    """Return SHA-256(previous hash ‖ payload) as hex, both taken as UTF-8 text."""
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def object_ref(obj: models.Model | None) -> tuple[str, str]:
    """Return the (``app_label.model``, primary key) reference of a model instance, or two empty strings."""
    if obj is None:
        return "", ""
    return obj._meta.label_lower, str(obj.pk)


def row_facts(obj: models.Model) -> dict[str, Any]:
    """Return the row's concrete field values as JSON-ready data: what the ledger holds for the object."""
    facts: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        value = field.value_from_object(obj)
        if isinstance(field, models.FileField):
            value = value.name if value else ""
        facts[field.attname] = value
    # Through JSON and back, so stored facts and a fresh read compare equal (dates become ISO text).
    return json.loads(canonical_json(facts))


# No savepoint of its own: an append that fails must fail the caller's whole transaction anyway, and the
# SAVEPOINT / RELEASE round trips were a third of an append's statements.
@transaction.atomic(savepoint=False)
def ledger_append(
    *,
    event: str,
    actor: AbstractBaseUser | None,
    obj: models.Model | None = None,
    facts: dict[str, Any] | None = None,
    reason: str = "",
) -> LedgerEntry:
    """Append one event to the ledger, chained to the head, inside the caller's transaction."""
    head, _ = LedgerHead.objects.select_for_update().get_or_create(pk=1)
    object_type, object_id = object_ref(obj)
    now = timezone.now()
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    actor_name = actor.get_username() if actor_id is not None else ""
    sequence = head.sequence + 1
    payload = canonical_json(
        {
            "sequence": sequence,
            "time": now.isoformat(),
            "actor_id": actor_id,
            "actor": actor_name,
            "event": event,
            "object_type": object_type,
            "object_id": object_id,
            "reason": reason,
            "facts": facts or {},
        }
    )
    entry = LedgerEntry.objects.create(
        sequence=sequence,
        created_at=now,
        actor_id=actor_id,
        actor_name=actor_name,
        event=event,
        object_type=object_type,
        object_id=object_id,
        payload=payload,
        prev_hash=head.hash,
        hash=chain_hash(head.hash, payload),
    )
    head.sequence, head.hash = sequence, entry.hash
    head.save(update_fields=["sequence", "hash"])
    return entry


def ledger_head() -> tuple[int, str]:
    """Return the ledger's current head: its last sequence number and hash (0 and the genesis hash if empty)."""
    head = LedgerHead.objects.filter(pk=1).values_list("sequence", "hash").first()
    return head if head is not None else (0, GENESIS_HASH)


def ledger_anchor_parse(text: str) -> tuple[int, str] | None:
    """Return the (sequence, hash) anchor a text states as ``ledger head #N <hash>``, or None."""
    match = _ANCHOR.search(text or "")
    return (int(match.group(1)), match.group(2)) if match else None


def ledger_event_names() -> list[str]:
    """Return the event names on the ledger, sorted: one index seek per name, not a read of every entry.

    ``SELECT DISTINCT event`` reads the whole ``event`` index, which grows with every action; this walks it from
    one name to the next (a "loose index scan"), in the same SQL on SQLite and PostgreSQL.
    """
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE names(event) AS ("  # noqa: S608 - the table name is the model's, not input
            f" SELECT MIN(event) FROM {table}"
            f" UNION ALL"
            f" SELECT (SELECT MIN(event) FROM {table} WHERE event > names.event) FROM names"
            f" WHERE names.event IS NOT NULL"
            f") SELECT event FROM names WHERE event IS NOT NULL"
        )
        return [row[0] for row in cursor.fetchall()]
