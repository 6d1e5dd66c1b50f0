"""Promote a prompt version to production (or roll back to one) through the same gate as the web page.

A failing gate is overridden in two steps by two Admins, as on the page: the first passes
``--override-justification``, a different one then passes ``--confirm-override``.
"""
from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.release.promotion import (
    pending_override,
    promotion_meaning,
    promotion_override_confirm,
    promotion_override_request,
    prompt_version_promote,
)
from pldreview.signatures import Meaning, e_signing, prompt_version_content_sha256, signature_sign
from rules.models import PromptVersion


def _sign(user: Any, password: str, meaning: str, version: PromptVersion, reason: str) -> Any:
    return signature_sign(
        user=user, password=password, meaning=meaning, reason=reason,
        content_sha256=prompt_version_content_sha256(version.text),
    )


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
        if options["confirm_override"]:
            meaning = Meaning.GATE_OVERRIDE_CONFIRMED
        elif options["override_justification"].strip():
            meaning = Meaning.GATE_OVERRIDE_REQUESTED
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password of {user} (signs “{Meaning(meaning).label}” for {version}): ")
        try:
            with e_signing():
                if options["confirm_override"]:
                    override = pending_override(version)
                    if override is None:
                        raise CommandError(f"{version} has no override request waiting for a second Admin.")
                    signature = _sign(user, password, Meaning.GATE_OVERRIDE_CONFIRMED, version, override.reason)
                    promotion = promotion_override_confirm(override=override, user=user, signature=signature)
                elif options["override_justification"].strip():
                    signature = _sign(user, password, Meaning.GATE_OVERRIDE_REQUESTED, version, options["reason"])
                    override = promotion_override_request(
                        prompt_version=version, user=user, reason=options["reason"],
                        justification=options["override_justification"], signature=signature,
                    )
                else:
                    signature = _sign(user, password, meaning, version, options["reason"])
                    promotion = prompt_version_promote(
                        prompt_version=version, user=user, reason=options["reason"], signature=signature,
                    )
            if not options["confirm_override"] and options["override_justification"].strip():
                self.stdout.write(
                    f"Override of the gate for {version} requested by {user} (request {override.pk}); "
                    "a different Admin confirms it with --confirm-override."
                )
                self.stdout.write(signature.manifestation)
                return
        except PermissionDenied as exc:
            raise CommandError(f"{user} may not promote prompt versions: {exc}") from exc
        except ValidationError as exc:
            raise CommandError("The promotion was refused: " + " ".join(exc.messages)) from exc
        what = "Rolled back to" if promotion.is_rollback else "Promoted"
        previous = f" (was {promotion.from_version})" if promotion.from_version else ""
        self.stdout.write(f"{what} {version}{previous}; promotion record {promotion.pk}.")
        self.stdout.write(signature.manifestation)
        if promotion.override_justification:
            self.stdout.write(
                f"The gate was overridden: {promotion.override_justification} (requested by "
                f"{promotion.override_requested_by}, confirmed by {promotion.promoted_by})"
            )
