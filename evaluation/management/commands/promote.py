"""Promote a prompt version to production (or roll back to one) through the same gate as the web page."""
from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.promotion import promotion_meaning, prompt_version_promote
from pldreview.signatures import Meaning, prompt_version_content_sha256, signature_sign, signing
from rules.models import PromptVersion


class Command(BaseCommand):
    help = "Promote prompt version VERSION_ID to production as USER, with a reason, through the gate."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("version_id", type=int, help="The prompt version's id (as in /prompts/<id>/)")
        parser.add_argument("--reason", required=True, help="Why this version should serve production")
        parser.add_argument("--user", required=True, help="The Admin who promotes (username)")
        parser.add_argument("--override-justification", default="", help="Why to promote although the gate blocks")
        parser.add_argument(
            "--password-stdin", action="store_true",
            help="Read the user's password (the promotion is a signing) from the first line of stdin, not a prompt",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        version = PromptVersion.objects.select_related("task").filter(pk=options["version_id"]).first()
        if version is None:
            raise CommandError(f"There is no prompt version with id {options['version_id']}.")
        user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
        if user is None:
            raise CommandError(f"There is no active user named {options['user']!r}.")
        meaning = promotion_meaning(version)
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password of {user} (signs “{Meaning(meaning).label}” for {version}): ")
        try:
            with signing():
                signature = signature_sign(
                    user=user, password=password, meaning=meaning, reason=options["reason"],
                    content_sha256=prompt_version_content_sha256(version.text),
                )
                promotion = prompt_version_promote(
                    prompt_version=version, user=user, reason=options["reason"],
                    override_justification=options["override_justification"], signature=signature,
                )
        except PermissionDenied as exc:
            raise CommandError(f"{user} may not promote prompt versions: {exc}") from exc
        except ValidationError as exc:
            raise CommandError("The promotion was refused: " + " ".join(exc.messages)) from exc
        what = "Rolled back to" if promotion.is_rollback else "Promoted"
        previous = f" (was {promotion.from_version})" if promotion.from_version else ""
        self.stdout.write(f"{what} {version}{previous}; promotion record {promotion.pk}.")
        self.stdout.write(signature.manifestation)
        if promotion.override_justification:
            self.stdout.write(f"The gate was overridden: {promotion.override_justification}")
