"""Every job of the rules app: teacher work, phase 1 extraction and phase 2 clustering (see pldreview.jobs)."""
from __future__ import annotations

from typing import Any

from django.urls import reverse

from pldreview.jobs import JobProgress, job_handlers_register
from pldreview.models import Job
from rules.models import Task
from rules.teacher.clustering import DEFAULT_EPS, DEFAULT_MIN_SAMPLES, clustering_is_done, clustering_run_create
from rules.teacher.clustering import JOB_KIND as CLUSTER_JOB_KIND
from rules.teacher.extraction import JOB_KIND as EXTRACT_JOB_KIND
from rules.teacher.extraction import extraction_pending, micro_rules_extract
from rules.teacher.local import teacher_for_params


def extract(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Extract micro-rules for a task's training examples (params: task, limit, split, endpoint, run settings)."""
    params = job.params
    task = Task.objects.get(name=params["task"])
    # Answered when every question is in the call log.
    ready = teacher_for_params(
        params, all_answered=lambda base: not extraction_pending(task, base, limit=params.get("limit"))
    )
    with ready as config:
        summary = micro_rules_extract(
            task=task, config=config, limit=params.get("limit"), split=params.get("split") or "train",
            job=job, progress=progress,
        )
    summary.raise_if_all_failed()
    message = " ".join(filter(None, [
        f"{summary.n_created} new micro-rules, {summary.n_existing} already stored, {summary.n_failed} refused; "
        f"{summary.new_calls} new teacher calls, {summary.cached_calls} answered from the log.",
        summary.failures_note(),
    ]))
    progress.note(f"Stopped early: {summary.stopped}" if summary.stopped else message)
    return {**summary.as_dict(), "message": message, "url": reverse("pld-teacher-micro-rules", args=[task.name])}


def cluster(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Cluster a task's micro-rules and propose merged candidates (params: task, eps, min_samples, adapt...)."""
    params = job.params
    task = Task.objects.get(name=params["task"])
    settings_ = {
        "eps": float(params.get("eps") or DEFAULT_EPS),
        "min_samples": int(params.get("min_samples") or DEFAULT_MIN_SAMPLES),
        "adapt": params.get("adapt", True),
        "embedding": params.get("embedding") or "auto",
        "teacher_model": params.get("teacher_model") or "",
    }
    # Answered when the same clustering finished.
    ready = teacher_for_params(params, all_answered=lambda _base: clustering_is_done(task=task, **settings_))
    with ready as config:
        outcome = clustering_run_create(
            task=task,
            config=config,
            **settings_,
            user=job.created_by,
            job=job,
            progress=progress,
        )
    outcome.raise_if_all_failed()
    run = outcome.run
    message = (
        f"Clustering {run.pk}: {run.n_clusters} clusters and {run.n_noise} noise of {run.n_rules} micro-rules "
        f"(eps {run.eps}, min_samples {run.min_samples}, {run.embedding}); "
        f"{outcome.n_candidates_created} new candidate rules"
        + (" (already done: nothing changed)" if outcome.reused else "")
        + "."
        + (f" {outcome.failures_note()}" if outcome.failures_note() else "")
    )
    progress.note(f"Stopped early: {outcome.stopped}" if outcome.stopped else message)
    return {
        "clustering_run": run.pk,
        "n_clusters": run.n_clusters,
        "n_noise": run.n_noise,
        "n_candidates_created": outcome.n_candidates_created,
        "n_failed": outcome.n_failed,
        "new_calls": outcome.new_calls,
        "cached_calls": outcome.cached_calls,
        "reused": outcome.reused,
        "stopped": outcome.stopped,
        "n_requests": outcome.n_requests,
        "n_teacher_errors": outcome.n_teacher_errors,
        "partial": outcome.partial,
        "message": message,
        "url": reverse("pld-teacher-micro-rules", args=[task.name]) + f"?run={run.pk}",
    }


# Kinds are stored in Job rows: renaming one needs a data migration (pldreview 0014 shows how).
job_handlers_register({
    EXTRACT_JOB_KIND: extract,
    CLUSTER_JOB_KIND: cluster,
})
