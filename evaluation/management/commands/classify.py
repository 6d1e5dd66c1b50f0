"""Classify one input with a task's production prompt version, exactly as the HTTP API does."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from evaluation.models import ClassifyCall
from evaluation.production.decision_log import classify_call_record
from evaluation.production.serving import ClassifyError, classify_inputs, production_classify
from rules.models import Task


class Command(BaseCommand):
    help = (
        "Classify a JSON object of the task's input fields with its production prompt version; prints JSON. "
        "The call goes into the decision log like an API call."
    )

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
        started = time.perf_counter()
        try:
            result = production_classify(task=task, payload=payload)
        except ClassifyError as exc:
            raise CommandError(exc.message) from exc
        try:
            call = classify_call_record(
                task=task, result=result, inputs=classify_inputs(task=task, payload=payload),
                source=ClassifyCall.Source.COMMAND, request_id=uuid.uuid4(),
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        except ClassifyError as exc:
            # Stopped while deciding: neither logged nor given.
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps({**result.as_dict(), "request_id": str(call.request_id)}, indent=2))
