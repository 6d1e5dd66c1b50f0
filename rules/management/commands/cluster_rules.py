"""Phase 2 from the command line: cluster micro-rules and propose one merged candidate rule per cluster."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pldreview.jobs import job_execute_for_command
from rules.models import Task
from rules.teacher.client import add_teacher_arguments, teacher_params_from_options
from rules.teacher.clustering import DEFAULT_EPS, DEFAULT_MIN_SAMPLES
from rules.teacher.clustering import JOB_KIND as CLUSTER_JOB_KIND


class Command(BaseCommand):
    help = "Cluster a task's micro-rules with DBSCAN (cosine) and have the teacher merge each cluster."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--task", required=True)
        parser.add_argument("--eps", type=float, default=DEFAULT_EPS, help="DBSCAN eps, cosine distance (0.4)")
        parser.add_argument("--min-samples", type=int, default=DEFAULT_MIN_SAMPLES, help="DBSCAN min_samples (6)")
        parser.add_argument("--no-adapt", action="store_true", help="Use min_samples as given even for small sets")
        parser.add_argument("--embedding", default="auto", choices=["auto", "endpoint", "tfidf-svd"])
        parser.add_argument("--teacher-model", default="", help="Only micro-rules written by this model")
        add_teacher_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if not Task.objects.filter(name=options["task"]).exists():
            raise CommandError(f"No task named {options['task']!r}")
        if not 0 < options["eps"] <= 2:
            raise CommandError("--eps is a cosine distance: above 0 and at most 2")
        if options["min_samples"] < 1:
            raise CommandError("--min-samples must be at least 1")
        params = {
            "task": options["task"],
            "eps": options["eps"],
            "min_samples": options["min_samples"],
            "adapt": not options["no_adapt"],
            "embedding": options["embedding"],
            "teacher_model": options["teacher_model"],
        }
        job_execute_for_command(
            self, kind=CLUSTER_JOB_KIND, title=f"Cluster micro-rules of {options['task']}",
            params={**params, **teacher_params_from_options(options)},
        )
