"""Verify the ledger: exit 0 intact, 1 broken (first sequence number and what differs), 2 cannot run."""
from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DatabaseError, transaction

from pldreview.ledger_verify import ledger_verify


class Command(BaseCommand):
    help = "Recompute the ledger's hash chain and cross-check every audited row against its latest entry."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="start", type=int, default=1, help="Check the chain from this entry on")
        parser.add_argument("--json", action="store_true", help="Print the verdict as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():  # a failed read must not poison the caller's transaction
                verdict = ledger_verify(start=options["start"])
        except DatabaseError as exc:
            self.stderr.write(f"Cannot verify the ledger: {exc}")
            sys.exit(2)
        if options["json"]:
            self.stdout.write(json.dumps(verdict.as_dict(), indent=2, default=str))
        elif verdict.ok:
            self.stdout.write(self.style.SUCCESS(f"{verdict.message} ({verdict.seconds:.2f} s)"))
        else:
            problem = verdict.problem
            self.stdout.write(f"BROKEN at sequence {problem.sequence} ({problem.kind}): {problem.detail}")
        if not verdict.ok:
            sys.exit(1)
