"""Phase 1 from the command line: the teacher writes one micro-rule per training example."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pldreview.jobs import job_create, job_execute
from pldreview.models import Job
from rules.models import Task
from rules.teacher import TEACHER_RUN_PARAMS, default_teacher_endpoint, teacher_endpoints


def add_teacher_arguments(parser: Any) -> None:
    """Add the teacher choice and run settings shared by extract_rules, cluster_rules and refine_rules."""
    names = ", ".join(teacher_endpoints())
    parser.add_argument(
        "--endpoint", choices=list(teacher_endpoints()),
        help=f"Teacher endpoint by name, from PLD_TEACHER_ENDPOINTS ({names}; default {default_teacher_endpoint()})",
    )
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-requests", type=int, help="This run's request budget")
    parser.add_argument("--max-tokens", type=int, help="This run's token budget")
    parser.add_argument("--concurrency", type=int, help="Requests in flight at once")


def teacher_params(options: dict[str, Any]) -> dict[str, Any]:
    """Return the teacher choice and run settings given on the command line, ready for a job's params."""
    names = ("endpoint", *TEACHER_RUN_PARAMS)
    return {name: options[name] for name in names if options.get(name) is not None}


def run_job_or_fail(command: BaseCommand, *, kind: str, title: str, params: dict[str, Any]) -> Job:
    """Run a job in the foreground; turn a failed job into a CommandError."""
    job = job_execute(job_create(kind=kind, title=title, params=params).pk)
    if job.state != Job.State.SUCCEEDED:
        raise CommandError(f"Job {job.pk} {job.state}: {job.error or job.message} (run the command again to resume)")
    command.stdout.write(job.result.get("message", ""))
    if job.result.get("stopped"):
        command.stdout.write(command.style.WARNING(f"Stopped early: {job.result['stopped']}"))
    return job


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
        run_job_or_fail(
            self, kind="rules.jobs.extract", title=f"Extract micro-rules for {options['task']}",
            params={**params, **teacher_params(options)},
        )
