"""Classify one input with a task's production prompt version, exactly as the HTTP API does."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from evaluation.serving import ClassifyError, production_classify
from rules.models import Task


class Command(BaseCommand):
    help = "Classify a JSON object of the task's input fields with its production prompt version; prints JSON."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--task", required=True, help="The task's name, e.g. nda-demo")
        parser.add_argument("--input", required=True, help='JSON object, e.g. {"premise": "…", "hypothesis": "…"}')

    def handle(self, *args: Any, **options: Any) -> None:
        task = Task.objects.filter(name=options["task"]).first()
        if task is None:
            raise CommandError(f"There is no task named {options['task']!r}.")
        try:
            payload = json.loads(options["input"])
        except ValueError as exc:
            raise CommandError(f"--input is not valid JSON: {exc}") from exc
        try:
            result = production_classify(task=task, payload=payload)
        except ClassifyError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(result.as_dict(), indent=2))
