"""Export the ledger as JSON Lines for ``scripts/verify-ledger`` (standard library only)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from pldreview.ledger_export import ledger_export_lines


class Command(BaseCommand):
    help = "Write every ledger entry, oldest first, as one JSON object per line."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--out", required=True, help="The .jsonl file to write")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["out"])
        count = 0
        with path.open("w", encoding="utf-8") as handle:
            for line in ledger_export_lines():
                handle.write(line)
                count += 1
        self.stdout.write(self.style.SUCCESS(f"Wrote {count} ledger entries to {path}"))
