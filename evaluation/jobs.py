"""Job handlers of the evaluation app (run by the worker, or in the foreground by commands)."""
from __future__ import annotations

from typing import Any

from evaluation.models import EvaluationRun
from evaluation.runs import evaluation_run_execute, run_job_result
from pldreview.jobs import JobProgress
from pldreview.models import Job


def run_evaluation(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Execute (or resume) the evaluation run named in the job's params."""
    run = EvaluationRun.objects.select_related("task", "prompt_version").get(pk=job.params["run_id"])
    return run_job_result(evaluation_run_execute(run=run, progress=progress))
