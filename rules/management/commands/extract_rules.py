"""Phase 1 from the command line: the teacher writes one micro-rule per training example."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pldreview.jobs import job_execute_for_command
from rules.models import Task
from rules.teacher.client import add_teacher_arguments, teacher_params_from_options
from rules.teacher.extraction import JOB_KIND as EXTRACT_JOB_KIND


class Command(BaseCommand):
    help = "Ask the teacher for a rationale and one general rule per training example (resumable)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--task", required=True, help="Task name, e.g. nda-demo")
        parser.add_argument("--limit", type=int, help="Only the first N training examples (interleaved by label)")
        parser.add_argument("--split", default="train", choices=["train", "dev"])
        add_teacher_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if not Task.objects.filter(name=options["task"]).exists():
            raise CommandError(f"No task named {options['task']!r}")
        if options.get("limit") is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        params = {"task": options["task"], "limit": options.get("limit"), "split": options["split"]}
        job_execute_for_command(
            self, kind=EXTRACT_JOB_KIND, title=f"Extract micro-rules for {options['task']}",
            params={**params, **teacher_params_from_options(options)},
        )
