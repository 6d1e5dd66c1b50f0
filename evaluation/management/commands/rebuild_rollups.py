"""Recount the production page's rollups from the logged calls; with --check, only compare (exit 1 if they differ)."""
from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand

from evaluation.production.rollups import rollups_rebuild


class Command(BaseCommand):
    help = ("Recount the classify-call rollups (per task, prompt version, day and label) from the calls and replace "
            "the stored ones. --check compares without writing: exit 0 equal, 1 different (each difference printed).")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="store_true", help="Compare only; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        result = rollups_rebuild(check=options["check"])
        self.stdout.write(json.dumps({
            "checked_only": options["check"], "rollup_rows": result.rows, "calls": result.calls,
            "differences": len(result.differences), "first_differences": result.differences[:20],
            "rebuilt": not options["check"] and not result.ok,
        }, indent=2, default=str))
        if options["check"] and not result.ok:
            sys.exit(1)
