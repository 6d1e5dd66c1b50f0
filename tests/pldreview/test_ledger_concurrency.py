"""Twenty writers at once leave one unbroken chain with no lost entry (PostgreSQL: the head's row lock)."""
from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, transaction

from pldreview.ledger import ledger_append
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry

THREADS, EACH = 20, 10


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite admits one writer at a time (database lock); the row lock on the head is PostgreSQL's path",
)
@pytest.mark.django_db(transaction=True)
def test_twenty_threads_appending_at_once_leave_one_unbroken_chain() -> None:
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append(thread: int) -> None:
        try:
            start.wait()
            for n in range(EACH):
                with transaction.atomic():
                    ledger_append(event="test.concurrent", actor=None, facts={"thread": thread, "n": n})
        except BaseException as exc:  # noqa: BLE001 - reported below, a thread cannot raise into the test
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=append, args=(i,)) for i in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    sequences = list(LedgerEntry.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, THREADS * EACH + 1))
    verdict = ledger_verify(check_rows=False)
    assert verdict.ok, verdict.message
    assert verdict.head_sequence == THREADS * EACH
    facts = [json.loads(payload)["facts"] for payload in LedgerEntry.objects.values_list("payload", flat=True)]
    written = {(f["thread"], f["n"]) for f in facts}
    assert len(written) == THREADS * EACH
