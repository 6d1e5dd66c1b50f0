"""Verify a report file: exit 0 only when it is signed, unmodified, issued here (and, with --ledger, anchored)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from evaluation.release.verification import report_verify

MARKS = {True: "pass", False: "FAIL", None: "skip"}


class Command(BaseCommand):
    help = "Verify a signed report: signature valid, unmodified since signing, and issued by this instance."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="The PDF to verify")
        parser.add_argument(
            "--ledger", action="store_true",
            help="Also check that the ledger still holds, unchanged, the entry the report was anchored to",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        verdict = report_verify(data=path.read_bytes(), ledger=options["ledger"], require_anchor=True)
        self.stdout.write(f"File: {path} (SHA-256 {verdict.sha256})")
        for check in verdict.checks:
            line = f"  [{MARKS[check.passed]}] {check.title}"
            if check.detail:
                line += f": {check.detail}"
            self.stdout.write(line)
        if not verdict.ok:
            raise CommandError(verdict.message)
        self.stdout.write(self.style.SUCCESS(verdict.message))
