"""Create an API token for a user and print its raw value (the only time it is shown)."""
from __future__ import annotations

from datetime import UTC
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from evaluation.production.api_tokens import api_token_create
from rules.models import Task


class Command(BaseCommand):
    help = "Create an API token for USER, issued by the Admin CREATED_BY; prints the raw token once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", required=True, help="Whose token it is (username)")
        parser.add_argument("--name", required=True, help="What uses it, e.g. contract-intake")
        parser.add_argument("--created-by", help="The Admin issuing it (username); default: --user")
        parser.add_argument("--expires", help="ISO date or date-time (UTC) from which it is refused")
        parser.add_argument("--rate-limit", type=int, help="Requests per minute (default PLD_API_DEFAULT_RATE_LIMIT)")
        parser.add_argument("--task", action="append", default=[],
                            help="A task it may classify (repeatable); none = all")

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        owner = users.filter(username=options["user"]).first()
        issuer = users.filter(username=options.get("created_by") or options["user"]).first()
        if owner is None or issuer is None:
            raise CommandError("Both the token's user and the issuing Admin must exist.")
        expires = None
        if options.get("expires"):
            expires = parse_datetime(options["expires"]) or parse_datetime(options["expires"] + "T00:00")
            if expires is None:
                raise CommandError(f"--expires {options['expires']!r} is not an ISO date or date-time.")
            if timezone.is_naive(expires):
                expires = timezone.make_aware(expires, UTC)
        tasks = list(Task.objects.filter(name__in=options["task"]))
        if len(tasks) != len(set(options["task"])):
            raise CommandError(f"Unknown task among {', '.join(options['task'])}.")
        try:
            token, raw = api_token_create(user=owner, name=options["name"], created_by=issuer, expires_at=expires,
                                          rate_limit_per_minute=options.get("rate_limit"), tasks=tasks)
        except PermissionDenied as exc:
            raise CommandError(f"{issuer} may not create API tokens (Admins only).") from exc
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stderr.write(f"Token {token.prefix}… “{token.name}” for {owner}; store it now, it is not shown again:")
        self.stdout.write(raw)
