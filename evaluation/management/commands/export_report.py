"""Generate a signed report on a prompt version and write it to a file (same code as the web)."""
from __future__ import annotations

import shutil
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.models import Report
from evaluation.release.promotion import production_prompt_version
from evaluation.release.reports import report_generate, report_path
from rules.models import PromptVersion, Task


def command_user(username: str | None) -> Any:
    """Return the user a command acts as: the named one, else the first superuser or Admin."""
    users = get_user_model().objects.filter(is_active=True)
    if username:
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"No active user named {username!r}")
        return user
    user = users.filter(is_superuser=True).order_by("id").first() or users.filter(groups__name="Admin").order_by(
        "id"
    ).first()
    if user is None:
        raise CommandError("No superuser or Admin to act as; pass --user NAME")
    return user


class Command(BaseCommand):
    help = "Generate a signed PDF report on a prompt version (by id, or --task for its production version)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("version_id", nargs="?", type=int, help="Prompt version id")
        parser.add_argument("--task", help="Task name: report on its production version")
        parser.add_argument("--out", required=True, help="Where to write the PDF")
        parser.add_argument("--user", help="Act as this user (default: the first superuser or Admin)")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["version_id"]) == bool(options["task"]):
            raise CommandError("Give either a prompt version id or --task NAME")
        user = command_user(options["user"])
        try:
            if options["task"]:
                task = Task.objects.filter(name=options["task"]).first()
                version = production_prompt_version(task) if task is not None else None
                if version is None:
                    raise CommandError(f"Task {options['task']!r} has no prompt version in production.")
            else:
                version = PromptVersion.objects.select_related("task").filter(pk=options["version_id"]).first()
                if version is None:
                    raise CommandError(f"No prompt version with id {options['version_id']}")
            report = report_generate(prompt_version=version, user=user)
        except (ValidationError, PermissionDenied) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(message) from exc
        if report.status != Report.Status.READY:
            raise CommandError(f"Report {report.pk} on {version} failed: {report.error}")
        shutil.copyfile(report_path(report), options["out"])
        self.stdout.write(self.style.SUCCESS(f"Wrote report {report.pk} on {version} to {options['out']}"))
        self.stdout.write(f"SHA-256 {report.sha256} · {report.size} bytes · signed by {report.signer}")
