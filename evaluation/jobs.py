"""Every job of the evaluation app, registered at the bottom (run by the worker, or in the foreground by commands)."""
from __future__ import annotations

from typing import Any

from evaluation.models import EvaluationRun
from evaluation.release.report_jobs import generate_report
from evaluation.release.reports import JOB_KIND as REPORT_JOB_KIND
from evaluation.runs.execution import run_job_result
from evaluation.runs.impact import EXPLAIN_JOB_KIND, decision_explain_job
from evaluation.runs.impact import JOB_KIND as IMPACT_JOB_KIND
from evaluation.runs.impact_runs import rule_impact_job
from evaluation.runs.refine import JOB_KIND as REFINE_JOB_KIND
from evaluation.runs.refine import refine
from evaluation.runs.services import JOB_KIND, evaluation_run_execute
from evaluation.student.warm import JOB_KIND as WARM_JOB_KIND
from evaluation.student.warm import student_state_save_job
from pldreview.jobs import JobProgress, job_handlers_register
from pldreview.models import Job


def run_evaluation(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Execute (or resume) the evaluation run named in the job's params."""
    run = EvaluationRun.objects.select_related("task", "prompt_version").get(pk=job.params["run_id"])
    return run_job_result(evaluation_run_execute(run=run, progress=progress))


# Kinds are stored in Job rows: renaming one needs a data migration (pldreview 0014 shows how).
job_handlers_register({
    JOB_KIND: run_evaluation,
    REFINE_JOB_KIND: refine,
    REPORT_JOB_KIND: generate_report,
    WARM_JOB_KIND: student_state_save_job,
    IMPACT_JOB_KIND: rule_impact_job,
    EXPLAIN_JOB_KIND: decision_explain_job,
})
