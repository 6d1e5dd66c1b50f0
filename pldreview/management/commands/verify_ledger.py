"""Verify the ledger: exit 0 intact, 1 broken (every problem, each with its sequence number), 2 cannot run."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DatabaseError, transaction

from pldreview.checkpoints import CheckpointError, ledger_checkpoint_read
from pldreview.ledger_verify import ledger_verify


class Command(BaseCommand):
    help = ("Recompute the ledger's hash chain, cross-check every ledgered row (changed or deleted) and delete "
            "permit, and hold the ledger to every stored signed checkpoint (and to --checkpoint files).")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="start", type=int, default=1, help="Check the chain from this entry on")
        parser.add_argument("--since-checkpoint", action="store_true",
                            help="Re-hash only the entries after the last signed checkpoint (its file's signature "
                                 "checked); every row, signature, checkpoint and permit is still cross-checked")
        parser.add_argument("--checkpoint", action="append", default=[], metavar="FILE",
                            help="A signed checkpoint PDF kept outside the database (repeatable)")
        parser.add_argument("--json", action="store_true", help="Print the verdict as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoints = []
        for name in options["checkpoint"]:
            try:
                statement = ledger_checkpoint_read(Path(name).read_bytes())
            except (OSError, CheckpointError) as exc:
                self.stderr.write(f"Cannot use the checkpoint {name}: {exc}")
                sys.exit(2)
            checkpoints.append((statement.sequence, statement.hash,
                                f"checkpoint file {Path(name).name} (signed {statement.created_at})"))
        try:
            with transaction.atomic():  # a failed read must not poison the caller's transaction
                verdict = ledger_verify(start=options["start"], checkpoints=checkpoints,
                                        since_checkpoint=options["since_checkpoint"])
        except DatabaseError as exc:
            self.stderr.write(f"Cannot verify the ledger: {exc}")
            sys.exit(2)
        if options["json"]:
            self.stdout.write(json.dumps(verdict.as_dict(), indent=2, default=str))
        elif verdict.ok:
            self.stdout.write(self.style.SUCCESS(f"{verdict.message} ({verdict.seconds:.2f} s)"))
        else:
            for problem in verdict.problems:
                self.stdout.write(f"BROKEN at sequence {problem.sequence} ({problem.kind}): {problem.detail}")
            self.stdout.write(f"{len(verdict.problems)} problem(s) in {verdict.entries_checked} entries and "
                              f"{verdict.rows_checked} rows ({verdict.seconds:.2f} s)")
        if not verdict.ok:
            sys.exit(1)
