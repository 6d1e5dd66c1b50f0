"""Compile a task's approved rule set into a prompt version (or report that it is unchanged)."""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from rules.models import Task
from rules.prompts.compiler import prompt_version_compile


class Command(BaseCommand):
    help = "Compile TASK's approved rules, in reviewed order, into an immutable prompt version."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--task", required=True, help="The task's name, e.g. nda-demo")
        parser.add_argument("--user", help="Username recorded as the compiler (an Admin); empty: none")

    def handle(self, *args: Any, **options: Any) -> None:
        task = Task.objects.filter(name=options["task"]).first()
        if task is None:
            raise CommandError(f"There is no task named {options['task']!r}.")
        user = None
        if options.get("user"):
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"There is no user named {options['user']!r}.")
        try:
            version, created = prompt_version_compile(task=task, user=user)
        except (ValidationError, PermissionDenied) as exc:
            raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from exc
        rules = version.entries.count()
        if created:
            self.stdout.write(
                f"Compiled {version}: {rules} rules, {version.token_count} tokens, sha256 {version.sha256}"
            )
        else:
            self.stdout.write(f"The approved rule set is unchanged: {version} (sha256 {version.sha256})")
