"""Demo step: the bundled teacher extracts micro-rules for a few nda-demo examples and merges them.

The 270M base model writes weak rules; the pages say which model wrote each one. Nothing is faked:
what the demo shows is what the teacher answered (cached in the call log, so a second run is instant).
"""
from __future__ import annotations

from typing import TextIO

from rules.models import MicroRule, Task
from rules.teacher.client import TeacherConfig, TeacherError
from rules.teacher.clustering import DEFAULT_EPS, DEFAULT_MIN_SAMPLES, clustering_is_done, clustering_run_create
from rules.teacher.extraction import extraction_pending, micro_rules_extract
from rules.teacher.local import teacher_available

TASK = "nda-demo"
# Five examples per label: 24 took 4 min 23 s with the local teacher on two busy shared cores; 15 keep
# the demo step near two and a half minutes.
LIMIT = 15


def seed_teacher_rules(stdout: TextIO) -> None:
    """Extract and cluster teacher rules for nda-demo, starting the local teacher only if work is left."""
    task = Task.objects.filter(name=TASK).first()
    if task is None:
        stdout.write(f"  task {TASK} is missing; skipping the teacher step\n")
        return
    config = TeacherConfig.from_settings()
    if not extraction_pending(task, config, limit=LIMIT) and clustering_is_done(task=task):
        have = MicroRule.objects.filter(task=task, teacher_model=config.model).count()
        stdout.write(f"  {have} micro-rules by {config.model} and their clustering are already in place\n")
        return
    try:
        with teacher_available(config) as ready:
            stdout.write(f"  teacher {ready.model} at {ready.endpoint}\n")
            summary = micro_rules_extract(task=task, config=ready, limit=LIMIT)
            summary.raise_if_all_failed()
            stdout.write(
                f"  micro-rules: {summary.n_created} new, {summary.n_existing} stored, {summary.n_failed} refused "
                f"({summary.new_calls} teacher calls, {summary.cached_calls} from the log)\n"
            )
            outcome = clustering_run_create(task=task, config=ready, eps=DEFAULT_EPS, min_samples=DEFAULT_MIN_SAMPLES)
            outcome.raise_if_all_failed()
    except TeacherError as exc:
        stdout.write(f"  the teacher failed ({exc.message}); run seed_demo again to resume\n")
        return
    run = outcome.run
    stdout.write(
        f"  clustering #{run.pk}: {run.n_clusters} clusters, {run.n_noise} noise (min_samples {run.min_samples} "
        f"for {run.n_rules} micro-rules); {outcome.n_candidates_created} candidate rules for review\n"
    )
    if run.unmerged_clusters:
        stdout.write(
            f"  {len(run.unmerged_clusters)} clusters were not merged (the teacher wrote no condition); their "
            "micro-rules are listed with the noise, for a person to promote\n"
        )
