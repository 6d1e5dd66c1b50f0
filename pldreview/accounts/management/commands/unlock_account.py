"""Lift the waits after failed attempts for a username and/or an address, on the ledger with who ran it and why."""
from __future__ import annotations

import getpass
import socket
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from pldreview.accounts.lockout import lockout_reset
from pldreview.ledger import ledger_append


class Command(BaseCommand):
    help = (
        "Clear the failure counters and waits of a username and/or an address (django-axes' records too); "
        "appends security.unlock to the ledger with the operating-system user and the reason."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username", nargs="?", default="", help="The username to unlock")
        parser.add_argument("--ip", default="", help="An address to unlock")
        parser.add_argument("--reason", required=True, help="Why: kept in the ledger")

    def handle(self, *args: Any, **options: Any) -> None:
        username, address, reason = options["username"].strip(), options["ip"].strip(), options["reason"].strip()
        if not username and not address:
            raise CommandError("Name a username, --ip ADDRESS, or both.")
        if not reason:
            raise CommandError("Give a reason (--reason): it is kept in the ledger.")
        user = get_user_model().objects.filter(username__iexact=username).first() if username else None
        with transaction.atomic():
            cleared = lockout_reset(username=username or None, ip_address=address or None)
            entry = ledger_append(
                event="security.unlock",
                actor=None,
                obj=user,
                facts={
                    "username": username,
                    "ip_address": address,
                    "failures_cleared": cleared,
                    "by": "manage.py unlock_account",
                    "os_user": getpass.getuser(),
                    "host": socket.gethostname(),
                },
                reason=reason,
            )
        self.stdout.write(self.style.SUCCESS(f"Cleared {cleared} records; ledger entry #{entry.sequence}"))
