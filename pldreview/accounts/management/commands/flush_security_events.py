"""Write the closing ledger entries of the security-event windows that have closed (run it from cron)."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from pldreview.accounts.lockout import failure_counters_prune
from pldreview.accounts.security_log import security_windows_flush


class Command(BaseCommand):
    help = (
        "Write the counts of closed windows of anonymous failed logins to the ledger and delete forgotten failure "
        "counters (run it e.g. every 15 minutes)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        written = security_windows_flush()
        pruned = failure_counters_prune()
        self.stdout.write(f"{written} closing entries written; {pruned} forgotten failure counters deleted.")
