"""Sign a checkpoint of the ledger head (run by a timer; see docs/deploy.md): exit 0 made or not needed, 1 refused."""
from __future__ import annotations

import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pldreview.checkpoints import CheckpointError, ledger_checkpoint_create
from pldreview.ledger import ledger_head
from pldreview.models import LedgerCheckpoint


class Command(BaseCommand):
    help = ("Sign the ledger's head with the reports' identity and store it as a checkpoint, unless nothing "
            "was appended since the last one (--force signs anyway).")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--reason", default="Scheduled checkpoint", help="Why (shown on the ledger page)")
        parser.add_argument("--user", default="", help="Username to record as who made it (default: the system)")
        parser.add_argument("--force", action="store_true", help="Sign even if the head has not moved")

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user {options['user']!r}")
        last = LedgerCheckpoint.objects.order_by("-sequence", "-id").first()
        sequence, _digest = ledger_head()
        # The last checkpoint's own ledger entry is the only one after it: nothing new to vouch for.
        if last is not None and sequence <= last.sequence + 1 and not options["force"]:
            self.stdout.write(f"Nothing appended since checkpoint {last.pk} of entry #{last.sequence}; none made.")
            return
        try:
            checkpoint = ledger_checkpoint_create(user=user, reason=options["reason"])
        except CheckpointError as exc:
            self.stderr.write(f"No checkpoint: {exc}")
            sys.exit(1)
        stamp = "with an RFC 3161 timestamp" if checkpoint.timestamped else "no timestamp authority"
        self.stdout.write(self.style.SUCCESS(
            f"Checkpoint {checkpoint.pk}: entry #{checkpoint.sequence} {checkpoint.hash}, signed ({stamp}); "
            f"file {checkpoint.file}"))
