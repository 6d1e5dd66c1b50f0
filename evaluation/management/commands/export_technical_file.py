"""Generate a task's signed technical file (EU AI Act Annex IV) and write the PDF (and JSON) to files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.management.commands.export_report import command_user
from evaluation.release.technical_file import technical_file_generate
from rules.models import Task


class Command(BaseCommand):
    help = "Generate the signed technical file (Annex IV) of a task and its production version."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("task", help="Task name")
        parser.add_argument("--out", required=True, help="Where to write the signed PDF")
        parser.add_argument("--json", help="Also write the same facts as JSON here")
        parser.add_argument("--user", help="Act as this user (default: the first superuser or Admin)")

    def handle(self, *args: Any, **options: Any) -> None:
        task = Task.objects.filter(name=options["task"]).first()
        if task is None:
            raise CommandError(f"No task named {options['task']!r}")
        user = command_user(options["user"])
        try:
            record, pdf, json_bytes = technical_file_generate(task=task, user=user)
        except (ValidationError, PermissionDenied) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(message) from exc
        Path(options["out"]).write_bytes(pdf)
        self.stdout.write(self.style.SUCCESS(f"Wrote technical file {record.pk} on {task.name} to {options['out']}"))
        self.stdout.write(f"SHA-256 {record.sha256} · {record.size} bytes · signed by {record.signer}")
        if options["json"]:
            Path(options["json"]).write_bytes(json_bytes)
            self.stdout.write(f"Wrote the JSON to {options['json']} (SHA-256 {record.json_sha256}, stated in the PDF)")
