"""Demo step: a few classify calls on the production version, so the production page has data to show."""
from __future__ import annotations

import io
import json
from typing import TextIO

from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.models import ClassifyCall
from evaluation.release.promotion import production_prompt_version
from rules.models import Split, Task

DEMO_CALLS = 6


def seed_production_calls(stdout: TextIO) -> None:
    """Classify a few nda-demo test inputs through ``manage.py classify`` (logged like API calls); once only."""
    task = Task.objects.filter(name="nda-demo").first()
    if task is None or production_prompt_version(task) is None:
        stdout.write("  nda-demo has no version in production; skipping the demo calls.\n")
        return
    done = ClassifyCall.objects.filter(task=task).count()
    if done >= DEMO_CALLS:
        stdout.write(f"  {done} logged calls already; none added.\n")
        return
    examples = task.examples.filter(split=Split.TEST).order_by("id")[: DEMO_CALLS - done]
    for example in examples:
        out = io.StringIO()
        try:
            call_command("classify", "--task", task.name, "--input", json.dumps(example.inputs), stdout=out)
        except CommandError as exc:
            stdout.write(f"  example {example.pk}: not classified ({exc}).\n")
            continue
        decision = json.loads(out.getvalue())
        stdout.write(f"  example {example.pk} ({example.gold_label}) → {decision['label']}, "
                     f"request {decision['request_id']}\n")
