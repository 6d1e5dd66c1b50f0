"""Phase 3 from the command line: diagnose an evaluation run's failures and file measured refine proposals."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from evaluation.models import EvaluationRun
from evaluation.runs.refine import DEFAULT_DEV_LIMIT, DEFAULT_MAX_GROUPS
from evaluation.runs.refine import JOB_KIND as REFINE_JOB_KIND
from pldreview.jobs import job_execute_for_command
from rules.teacher.client import add_teacher_arguments, teacher_params_from_options


class Command(BaseCommand):
    help = "Ask the teacher to diagnose a finished train/dev run's failures; each patch is measured on dev first."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--evaluation", type=int, required=True, help="A finished evaluation run on train or dev")
        parser.add_argument("--max-groups", type=int, default=DEFAULT_MAX_GROUPS, help="Failure groups to diagnose")
        parser.add_argument("--dev-limit", type=int, default=DEFAULT_DEV_LIMIT, help="Dev examples for before/after")
        parser.add_argument("--seed", type=int, default=0)
        add_teacher_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run = EvaluationRun.objects.filter(pk=options["evaluation"]).first()
        if run is None:
            raise CommandError(f"No evaluation run {options['evaluation']}")
        if run.status != EvaluationRun.Status.FINISHED:
            raise CommandError(f"Evaluation run {run.pk} is {run.status}; refine needs a finished run")
        if run.split not in {"train", "dev"}:
            raise CommandError("Refine learns from train or dev runs only; the test split stays unseen")
        if options["max_groups"] < 1 or options["dev_limit"] < 1:
            raise CommandError("--max-groups and --dev-limit must be at least 1")
        params = {
            "evaluation": run.pk, "max_groups": options["max_groups"], "dev_limit": options["dev_limit"],
            "seed": options["seed"],
        }
        job_execute_for_command(
            self, kind=REFINE_JOB_KIND, title=f"Refine rules from evaluation {run.pk}",
            params={**params, **teacher_params_from_options(options)},
        )
