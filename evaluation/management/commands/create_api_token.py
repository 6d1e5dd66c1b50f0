"""Create an API token for a user and print its raw value (the only time it is shown)."""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.tokens import api_token_create


class Command(BaseCommand):
    help = "Create an API token for USER, issued by the Admin CREATED_BY; prints the raw token once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", required=True, help="Whose token it is (username)")
        parser.add_argument("--name", required=True, help="What uses it, e.g. contract-intake")
        parser.add_argument("--created-by", help="The Admin issuing it (username); default: --user")

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        owner = users.filter(username=options["user"]).first()
        issuer = users.filter(username=options.get("created_by") or options["user"]).first()
        if owner is None or issuer is None:
            raise CommandError("Both the token's user and the issuing Admin must exist.")
        try:
            token, raw = api_token_create(user=owner, name=options["name"], created_by=issuer)
        except PermissionDenied as exc:
            raise CommandError(f"{issuer} may not create API tokens (Admins only).") from exc
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stderr.write(f"Token {token.prefix}… “{token.name}” for {owner}; store it now, it is not shown again:")
        self.stdout.write(raw)
