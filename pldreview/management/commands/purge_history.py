"""Purge history records older than a date under the retention policy (a ledger event; superusers only)."""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from pldreview.retention import retention_purge


class Command(BaseCommand):
    help = "Delete django-simple-history records made before a date; appends a retention.purge ledger entry."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--before", required=True, help="ISO date-time with time zone, e.g. 2020-01-01T00:00Z")
        parser.add_argument("--user", required=True, help="Username of the superuser who purges")
        parser.add_argument("--reason", required=True, help="Why: the retention policy and its clause")

    def handle(self, *args: Any, **options: Any) -> None:
        before = parse_datetime(options["before"])
        if before is None or before.tzinfo is None:
            raise CommandError("--before must be an ISO date-time with a time zone, e.g. 2020-01-01T00:00Z")
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user {options['user']!r}")
        result = retention_purge(before=before, user=user, reason=options["reason"])
        self.stdout.write(self.style.SUCCESS(f"Purged {result['deleted']}; ledger entry #{result['sequence']}"))
