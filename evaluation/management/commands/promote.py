"""Promote a prompt version to production (or roll back to one) through the same gate as the web page.

A failing gate is overridden in two steps by two Admins, as on the page: the first passes
``--override-justification``, a different one then passes ``--confirm-override``.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.promotion import (
    pending_override,
    promotion_override_confirm,
    promotion_override_request,
    prompt_version_promote,
)
from rules.models import PromptVersion


class Command(BaseCommand):
    help = "Promote prompt version VERSION_ID to production as USER, with a reason, through the gate."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("version_id", type=int, help="The prompt version's id (as in /prompts/<id>/)")
        parser.add_argument("--reason", default="", help="Why this version should serve production")
        parser.add_argument("--user", required=True, help="The Admin who promotes (username)")
        parser.add_argument(
            "--override-justification", default="",
            help="Request an override of a failing gate with this justification (a second Admin confirms)",
        )
        parser.add_argument(
            "--confirm-override", action="store_true",
            help="Confirm the version's pending override request as a second Admin, which promotes it",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        version = PromptVersion.objects.select_related("task").filter(pk=options["version_id"]).first()
        if version is None:
            raise CommandError(f"There is no prompt version with id {options['version_id']}.")
        user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
        if user is None:
            raise CommandError(f"There is no active user named {options['user']!r}.")
        try:
            if options["confirm_override"]:
                override = pending_override(version)
                if override is None:
                    raise CommandError(f"{version} has no override request waiting for a second Admin.")
                promotion = promotion_override_confirm(override=override, user=user)
            elif options["override_justification"].strip():
                override = promotion_override_request(
                    prompt_version=version, user=user, reason=options["reason"],
                    justification=options["override_justification"],
                )
                self.stdout.write(
                    f"Override of the gate for {version} requested by {user} (request {override.pk}); "
                    "a different Admin confirms it with --confirm-override."
                )
                return
            else:
                promotion = prompt_version_promote(prompt_version=version, user=user, reason=options["reason"])
        except PermissionDenied as exc:
            raise CommandError(f"{user} may not promote prompt versions: {exc}") from exc
        except ValidationError as exc:
            raise CommandError("The promotion was refused: " + " ".join(exc.messages)) from exc
        what = "Rolled back to" if promotion.is_rollback else "Promoted"
        previous = f" (was {promotion.from_version})" if promotion.from_version else ""
        self.stdout.write(f"{what} {version}{previous}; promotion record {promotion.pk}.")
        if promotion.override_justification:
            self.stdout.write(
                f"The gate was overridden: {promotion.override_justification} (requested by "
                f"{promotion.override_requested_by}, confirmed by {promotion.promoted_by})"
            )
