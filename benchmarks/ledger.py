"""Benchmark the ledger: one append, verifying 100,000 entries, exporting them.

A benchmark, not a test: it prints one JSON object (the last line). It builds a throwaway SQLite
database (production settings: WAL, IMMEDIATE transactions) in a temporary directory, or uses
DATABASE_URL when given. Run it from the project root:

    .venv/bin/python benchmarks/ledger.py [--entries 100000] [--appends 2000]

append_us_p50 times the ledger_append call inside an open transaction; append_with_commit_us_p50
times that transaction's commit too.
Bars (issue 12): append_us_p50 <= 2,000 us; verify_entries_per_s >= 50,000 on the 2-core machine.
The load average before and after is part of the output: on a shared machine the figures are only
as good as the quiet they were taken in.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup(workdir: Path) -> None:
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "x" * 40)
    os.environ.setdefault("PLD_VAR_DIR", str(workdir))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'ledger-bench.sqlite3'}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "pldreview.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _bulk_fill(n: int, *, batch: int = 5000, snapshots: bool = False) -> None:
    """Append n entries fast and correctly chained (bulk insert, the same payload shape and hashes).

    With ``snapshots`` each entry is a full-row snapshot of one of 1,000 rules (rows that do not exist), so
    the verification's snapshot path (latest snapshot, history count per object) runs for every entry.
    """
    from django.db import transaction
    from django.utils import timezone

    from pldreview.ledger import canonical_json, chain_hash
    from pldreview.models import LedgerEntry, LedgerHead
    from rules.models import Rule

    row = {f.attname: "x" for f in Rule._meta.concrete_fields}

    with transaction.atomic():
        head, _ = LedgerHead.objects.select_for_update().get_or_create(pk=1)
        sequence, prev = head.sequence, head.hash
        rows = []
        for _ in range(n):
            sequence += 1
            now = timezone.now()
            object_type, object_id = ("rules.rule", str(sequence % 1000)) if snapshots else ("", "")
            facts = row if snapshots else {
                "i": sequence, "text": "If the clause lets the recipient share with employees, then E"}
            payload = canonical_json({
                "sequence": sequence, "time": now.isoformat(), "actor_id": None, "actor": "", "event": "bench.fill",
                "object_type": object_type, "object_id": object_id, "reason": "benchmark", "facts": facts,
            })
            digest = chain_hash(prev, payload)
            rows.append(LedgerEntry(sequence=sequence, created_at=now, event="bench.fill", payload=payload,
                                    object_type=object_type, object_id=object_id, prev_hash=prev, hash=digest))
            prev = digest
            if len(rows) >= batch:
                LedgerEntry.objects.bulk_create(rows)
                rows = []
        LedgerEntry.objects.bulk_create(rows)
        head.sequence, head.hash = sequence, prev
        head.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=2000)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pld-ledger-bench-") as tmp:
        _setup(Path(tmp))
        from django.db import connection, transaction

        from pldreview.ledger import ledger_append
        from pldreview.ledger_export import ledger_export_lines
        from pldreview.ledger_verify import ledger_verify

        # append: the call inside an open transaction (what ledger_append adds to an audited change);
        # with_commit: the whole transaction of that one append, commit included.
        times, with_commit = [], []
        for i in range(args.appends):
            began = time.perf_counter()
            with transaction.atomic():
                inside = time.perf_counter()
                ledger_append(event="bench.append", actor=None, facts={"i": i, "reason": "one audited change"})
                times.append((time.perf_counter() - inside) * 1e6)
            with_commit.append((time.perf_counter() - began) * 1e6)
        _bulk_fill(args.entries - args.appends)

        began = time.perf_counter()
        verdict = ledger_verify(check_rows=False)
        verify_s = time.perf_counter() - began
        assert verdict.ok, verdict.message
        # The full verification: the chain, every ledgered row and deletion, the permits, and a checkpoint
        # every 1,000 entries to hold the walk to (as if signed hourly on a busy instance).
        from pldreview.models import LedgerEntry

        checkpoints = [(s, h, "bench") for s, h in LedgerEntry.objects.filter(sequence__endswith="000").values_list(
            "sequence", "hash")]
        began = time.perf_counter()
        full = ledger_verify(checkpoints=checkpoints)
        verify_full_s = time.perf_counter() - began
        assert full.ok and full.checkpoints_checked == len(checkpoints), full.message

        out = Path(tmp) / "ledger.jsonl"
        began = time.perf_counter()
        with out.open("w", encoding="utf-8") as handle:
            for line in ledger_export_lines():
                handle.write(line)
        export_s = time.perf_counter() - began
        size_mb = out.stat().st_size / 1e6

        # Then as many entries again, each a full-row snapshot of one of 1,000 rules that have no row: the
        # verdict names those 1,000 as missing; what is measured is the walk with its snapshot path.
        _bulk_fill(args.entries, snapshots=True)
        began = time.perf_counter()
        snap = ledger_verify()
        snapshots_s = time.perf_counter() - began
        assert snap.entries_checked == 2 * args.entries and len(snap.problems) >= 1000, snap.message
        result = {
            "database": connection.vendor,
            "append_us_p50": round(statistics.median(times), 1),
            "append_us_p95": round(statistics.quantiles(times, n=20)[-1], 1),
            "append_with_commit_us_p50": round(statistics.median(with_commit), 1),
            "appends": args.appends,
            "verify_entries": verdict.entries_checked,
            "verify_s": round(verify_s, 3),
            "verify_entries_per_s": round(verdict.entries_checked / verify_s),
            "verify_full_s": round(verify_full_s, 3),
            "verify_full_entries_per_s": round(full.entries_checked / verify_full_s),
            "verify_full_checkpoints": len(checkpoints),
            "verify_with_snapshots_entries": snap.entries_checked,
            "verify_with_snapshots_s": round(snapshots_s, 3),
            "verify_with_snapshots_entries_per_s": round(snap.entries_checked / snapshots_s),
            "export_mb": round(size_mb, 2),
            "export_s": round(export_s, 3),
            "export_mb_per_s": round(size_mb / export_s, 1),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
