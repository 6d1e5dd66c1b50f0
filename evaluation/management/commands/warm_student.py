"""Save (or check) the student's warm-start state for production prompt versions."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from evaluation.student.in_process import StudentError
from evaluation.student.warm import student_preload
from rules.models import PromptVersion, Task


class Command(BaseCommand):
    help = (
        "Compute the student's state after the rules of each production prompt version (or of --prompt-version) "
        "and save it under PLD_STUDENT_STATE_DIR, so a restarted process restores it instead of recomputing."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--task", help="Only this task's production version")
        parser.add_argument("--prompt-version", type=int, help="A prompt version's id, in production or not")

    def handle(self, *args: Any, **options: Any) -> None:
        tasks = None
        version = None
        if options["task"]:
            tasks = list(Task.objects.filter(name=options["task"]))
            if not tasks:
                raise CommandError(f"There is no task named {options['task']!r}.")
        if options["prompt_version"] is not None:
            version = PromptVersion.objects.select_related("task").filter(pk=options["prompt_version"]).first()
            if version is None:
                raise CommandError(f"There is no prompt version with id {options['prompt_version']}.")
        try:
            lines = student_preload(tasks=tasks, version=version, save=True)
        except StudentError as exc:
            raise CommandError(exc.message) from exc
        if not lines:
            self.stdout.write("No prompt version in production: nothing to save.")
        for line in lines:
            self.stdout.write(line)
