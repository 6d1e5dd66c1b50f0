"""Rule impact runs, sharded like evaluation runs: start one, execute it shard by shard, cancel, resume.

An impact run's examples are cut into shards exactly as an evaluation run's are (whole shared-context
groups, ``evaluation/runs/shards.py``). Each shard is its own django-tasks task, so any number of
``manage.py db_worker`` processes share a run; a worker claims a shard under a lease it renews, and a
watch queues again the shard of a worker that stopped renewing. A shard decides every variant on its
examples, variant-major, so each variant's rules prefix is prepared once per shard. The worker that
finishes the last shard seals the run (``rule_impact_finish``): its results are computed from the stored
decisions, in the run's example order, so they do not depend on which worker stored what, or when.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_tasks import TaskContext, task

from evaluation.models import RuleImpactDecision, RuleImpactRun, RuleImpactShard
from evaluation.runs.impact import (
    JOB_KIND,
    PreparedVariant,
    Variant,
    decide_variant,
    impact_student,
    rule_impact_create,
    rule_impact_finish,
    rule_impact_set,
    rule_impact_title,
    version_variants,
)
from evaluation.runs.shards import (
    ShardLost,
    ShardProgress,
    lease_length,
    shard_claim,
    shard_release,
    shards_live,
    shards_plan,
    shards_reclaim,
    shards_requeue,
    task_result_abandon,
    worker_label,
)
from evaluation.student.in_process import ExampleTooLongError, Student, StudentModelError
from pldreview.jobs import (
    CountedJobProgress,
    JobCancelled,
    JobProgress,
    NoProgress,
    job_begin,
    job_create,
    job_end,
    job_progress_record,
    job_stop_request,
)
from pldreview.models import Job
from rules.models import Example

logger = logging.getLogger(__name__)

LIVE = {RuleImpactRun.Status.QUEUED, RuleImpactRun.Status.RUNNING}
Status = RuleImpactRun.Status
CANCELLED_MESSAGE = "Cancelled; resume the run to continue where it stopped."
ShardStatus = RuleImpactShard.Status


def _total(run: RuleImpactRun) -> int:
    return run.n_examples * (run.n_rules + 1)


# --- start, cancel, resume ------------------------------------------------------------------------------


def rule_impact_start(*, user: Any = None, **options: Any) -> RuleImpactRun:
    """Create an impact run (``rule_impact_create``'s keyword arguments) and queue its shards for the workers."""
    run = rule_impact_create(user=user, **options)
    with transaction.atomic():
        run.job = job_create(kind=JOB_KIND, title=rule_impact_title(run), params={"run_id": run.pk}, user=user)
        run.save(update_fields=["job"])
        _dispatch(run)
    return run


def rule_impact_job_for_command(run: RuleImpactRun) -> Job:
    """Give a run made by the command its job record, so it executes (and resumes) like a queued one."""
    run.job = job_create(kind=JOB_KIND, title=rule_impact_title(run), params={"run_id": run.pk})
    run.save(update_fields=["job"])
    return run.job


@transaction.atomic
def rule_impact_cancel(*, run: RuleImpactRun) -> RuleImpactRun:
    """Stop a queued or running impact run: its queued shards at once, its running shards after their decision."""
    if run.status in {Status.FINISHED, Status.CANCELLED}:
        return run
    run.shards.filter(status=ShardStatus.QUEUED).update(status=ShardStatus.CANCELLED)
    rule_impact_set(run, status=Status.CANCELLED)
    if run.job_id:
        # The stop request stops a run executing in the foreground (the command) at its next progress report.
        job_stop_request(run.job_id)
        job_end(run.job_id, Job.State.CANCELLED, from_states=(Job.State.QUEUED, Job.State.RUNNING),
                message=CANCELLED_MESSAGE)
    return run


@transaction.atomic
def rule_impact_resume(*, run: RuleImpactRun, user: Any = None) -> RuleImpactRun:
    """Queue a cancelled or failed impact run again, shard by shard; it skips the decisions already stored."""
    if run.status not in {Status.CANCELLED, Status.FAILED}:
        raise ValidationError("Only a cancelled or failed impact run can be resumed.")
    if shards_live(run):
        raise ValidationError("A worker still holds a shard of this run; wait until it stops, then resume.")
    shards_plan(run=run)  # a run created before impact runs had shards
    rule_impact_set(run, status=Status.QUEUED, error="")
    who = getattr(user, "username", "") or "the command line"
    shards_requeue(run=run, message=f"Queued again when {who} resumed the run.")
    # A new job: the stopped one stays the record of the attempt that was stopped.
    run.job = job_create(kind=JOB_KIND, title=rule_impact_title(run), params={"run_id": run.pk}, user=user)
    run.save(update_fields=["job"])
    _dispatch(run)
    return run


# --- executing -----------------------------------------------------------------------------------------


def rule_impact_execute(*, run: RuleImpactRun, progress: JobProgress | None = None) -> RuleImpactRun:
    """Decide every (variant, example) not yet stored, shard by shard in this process, then finish the run.

    The foreground path (the command, a job retried from its page); shards another worker holds under
    a live lease are left to it, and that worker finishes the run.
    """
    progress = progress or NoProgress()
    run.refresh_from_db()
    if run.status == Status.FINISHED:
        return run
    shards_plan(run=run)
    if run.status in {Status.CANCELLED, Status.FAILED}:
        rule_impact_set(run, status=Status.QUEUED, error="")
    queued = shards_requeue(run=run, message="Queued again to run in the foreground.")
    done = run.decisions.count()
    progress.set_total(_total(run), f"Leaving out each of {run.n_rules} rules on {run.n_examples} examples")
    if done:
        progress.set_done(done, f"Resuming: {done} of {_total(run)} decisions already stored")
    worker = worker_label()
    for shard in queued:
        rule_impact_shard_execute(shard_id=shard.pk, worker=worker, progress=progress)
    run.refresh_from_db()
    return run


def _load_student(run: RuleImpactRun) -> Student:
    student = impact_student(run.model_path, run.n_ctx or None)
    if student.info.sha256 != run.model_sha256:
        message = f"The model file changed since the run was created (SHA-256 {student.info.sha256[:12]}…)."
        _fail(run, message)
        raise StudentModelError(message)
    return student


def _checked_variants(run: RuleImpactRun) -> list[Variant]:
    variants = version_variants(run.prompt_version)
    recorded = [(v["number"], v["rule_id"], v["revision_id"]) for v in run.options["variants"]]
    if [(v.number, v.rule_id, v.revision_id) for v in variants] != recorded:
        raise ValidationError("The version's rules differ from those the run recorded.")
    return variants


def _fail(run: RuleImpactRun, message: str) -> None:
    RuleImpactRun.objects.filter(pk=run.pk, status__in=LIVE).update(status=Status.FAILED, error=message)


def rule_impact_shard_execute(
    *, shard_id: int, worker: str, progress: JobProgress | None = None
) -> RuleImpactShard | None:
    """Claim a shard, decide every variant on its examples not yet decided, and finish the run if it is the last.

    Returns None when the shard was not queued (another worker has it, or it is done) or was taken back.
    """
    shard = shard_claim(shard_id=shard_id, worker=worker, model=RuleImpactShard)
    if shard is None:
        return None
    run = RuleImpactRun.objects.select_related("prompt_version", "task").get(pk=shard.run_id)
    if run.status not in LIVE:
        shard_release(shard=shard, status=ShardStatus.CANCELLED, event="skipped",
                      message=f"Shard {shard.number} was not started: the run is {run.get_status_display().lower()}.")
        return shard
    beating = ShardProgress(progress or NoProgress(), shard)
    try:
        student = _load_student(run)
        beating.beat(force=True)  # loading the model may have taken a good part of the lease
        variants = _checked_variants(run)
        runs = RuleImpactRun.objects.filter(pk=run.pk)
        runs.filter(status=Status.QUEUED).update(status=Status.RUNNING, error="")
        runs.filter(started_at__isnull=True).update(started_at=timezone.now())
        _shard_decide(run=run, shard=shard, student=student, variants=variants, progress=beating)
        if _shard_complete(run=run, shard=shard):
            _run_complete(run=run, shard=shard, progress=beating)
    except JobCancelled as exc:
        shard_release(shard=shard, status=ShardStatus.CANCELLED, event="cancelled",
                      message=f"Shard {shard.number} stopped on {worker}: {exc}.")
        RuleImpactRun.objects.filter(pk=run.pk, status__in=LIVE).update(status=Status.CANCELLED)
        raise
    except ShardLost:
        logger.warning("Shard %s of rule impact %s was taken back from %s; this worker stops", shard.number, run.pk,
                       worker)
        return None
    except Exception as exc:  # recorded on the shard and the run, then re-raised so the job records it too
        shard_release(shard=shard, status=ShardStatus.FAILED, event="failed",
                      message=f"Shard {shard.number} failed on {worker}: {type(exc).__name__}: {exc}")
        _fail(run, f"{type(exc).__name__}: {exc}")
        raise
    return shard


def _shard_decide(
    *, run: RuleImpactRun, shard: RuleImpactShard, student: Student, variants: list[Variant], progress: ShardProgress
) -> None:
    examples = Example.objects.in_bulk(shard.example_ids)
    ordered = [examples[pk] for pk in shard.example_ids]
    done = set(run.decisions.filter(example_id__in=shard.example_ids).values_list("variant", "example_id"))
    for variant in variants:
        todo = [e for e in ordered if (variant.number, e.pk) not in done]
        if not todo:
            continue
        prepared = PreparedVariant(student, variant)
        prepared.prepare(student)
        for example in todo:
            try:
                decision = decide_variant(student=student, prepared=prepared, task=run.task, inputs=example.inputs)
                row = RuleImpactDecision(
                    run=run, variant=variant.number, example=example, label=decision.label,
                    probabilities={k: round(v, 6) for k, v in decision.probabilities.items()},
                    tokens_processed=decision.tokens_processed, latency_ms=round(decision.latency_ms, 3),
                )
            except ExampleTooLongError:
                row = RuleImpactDecision(run=run, variant=variant.number, example=example, label="")
            _save_once(row)
            progress.advance(1)
        _note_prefix(run, variant.number, len(prepared.prefix), prepared.processed)
    progress.beat(force=True)


def _save_once(row: RuleImpactDecision) -> None:
    # The (run, variant, example) constraint makes each decision land once: a worker whose shard was taken
    # back may still store the decision it was on, and that second one is dropped here.
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        logger.info("Variant %s of example %s in rule impact %s was already decided", row.variant, row.example_id,
                    row.run_id)


def _note_prefix(run: RuleImpactRun, number: int, length: int, processed: int) -> None:
    # Summed over shards: what preparing this variant's prefix cost the whole run.
    with transaction.atomic():
        locked = RuleImpactRun.objects.select_for_update().get(pk=run.pk)
        seen = locked.options.get("prefix_tokens", {}).get(str(number), {"length": length, "processed": 0})
        seen = {"length": length, "processed": seen["processed"] + processed}
        locked.options = {**locked.options, "prefix_tokens": {**locked.options.get("prefix_tokens", {}),
                                                              str(number): seen}}
        locked.save(update_fields=["options"])
    run.options = locked.options


def _shard_complete(*, run: RuleImpactRun, shard: RuleImpactShard) -> bool:
    """Mark the shard finished unless it is the run's last; return True when this worker must finish the run."""
    # Finishing shards lock the run's row in turn, so exactly one of them sees every other shard finished.
    with transaction.atomic():
        RuleImpactRun.objects.select_for_update().filter(pk=run.pk).first()
        if not run.shards.exclude(pk=shard.pk).exclude(status=ShardStatus.FINISHED).exists():
            return True
        if not shard_release(shard=shard, status=ShardStatus.FINISHED):
            raise ShardLost(f"Shard {shard.number} was taken back before it finished")
    return False


def _run_complete(*, run: RuleImpactRun, shard: RuleImpactShard, progress: ShardProgress) -> None:
    progress.note("Computing each rule's figures")
    with transaction.atomic():
        status = RuleImpactRun.objects.select_for_update().filter(pk=run.pk).values_list("status", flat=True).get()
        if status not in LIVE:
            raise JobCancelled(f"the run is {status}")
        if not shard_release(shard=shard, status=ShardStatus.FINISHED):
            raise ShardLost(f"Shard {shard.number} was taken back while it finished the run")
        rule_impact_finish(run=run)


# --- what the workers run (django-tasks) ----------------------------------------------------------------


def _dispatch(run: RuleImpactRun) -> None:
    """Queue every queued shard as its own task, and the run's watch, once the transaction commits."""
    token = uuid.uuid4().hex
    with transaction.atomic():
        locked = RuleImpactRun.objects.select_for_update().get(pk=run.pk)
        locked.options = {**locked.options, "watch": token}
        locked.save(update_fields=["options"])
    run.options = locked.options
    shards = list(run.shards.filter(status=ShardStatus.QUEUED).order_by("number"))

    def enqueue() -> None:
        _enqueue_shards(shards)
        _watch_later(run.pk, token)

    transaction.on_commit(enqueue)


def _enqueue_shards(shards: Iterable[RuleImpactShard]) -> None:
    for shard in shards:
        result = run_rule_impact_shard.enqueue(shard.pk)
        RuleImpactShard.objects.filter(pk=shard.pk).update(task_result_id=str(result.id))


def _watch_later(run_id: int, token: str) -> None:
    # A deferred task (run_after): whichever worker is free when it is due runs it.
    watch_rule_impact_run.using(run_after=timezone.now() + lease_length() / 2).enqueue(run_id, token)


def _job_result(run: RuleImpactRun) -> dict[str, Any]:
    return {"url": run.get_absolute_url(), "run_id": run.pk, "message": f"Rule impact {run.pk} finished"}


@task(takes_context=True)
def run_rule_impact_shard(context: TaskContext, shard_id: int) -> dict[str, Any] | None:
    """Decide one shard of an impact run in this worker, and finish the run when it is the last (django-tasks)."""
    shard = RuleImpactShard.objects.select_related("run").filter(pk=shard_id).first()
    if shard is None:
        return None
    run = shard.run
    if job_begin(run.job_id, message=f"Leaving out each of {run.n_rules} rules on {run.n_examples} examples "
                                     f"in {run.shards.count()} shards"):
        job_progress_record(run.job_id, done=0, total=_total(run))
    worker_ids = context.task_result.worker_ids
    worker = worker_label(worker_ids[-1] if worker_ids else "")
    try:
        progress = CountedJobProgress(run.job_id, count=run.decisions.count, total=_total(run))
        claimed = rule_impact_shard_execute(shard_id=shard_id, worker=worker, progress=progress)
    except JobCancelled:
        job_end(run.job_id, Job.State.CANCELLED, message=CANCELLED_MESSAGE)
        return {"run_id": run.pk, "shard": shard.number, "stopped": "cancelled"}
    except Exception as exc:
        job_end(run.job_id, Job.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    run.refresh_from_db()
    if run.status == Status.FINISHED:
        job_end(run.job_id, Job.State.SUCCEEDED, done=_total(run), total=_total(run), result=_job_result(run),
                message="Finished")
    return {"run_id": run.pk, "shard": shard.number, "claimed": claimed is not None}


@task()
def watch_rule_impact_run(run_id: int, token: str) -> int:
    """Queue again the run's shards whose worker stopped responding, while the run is live; then watch again."""
    run = RuleImpactRun.objects.filter(pk=run_id).first()
    if run is None or run.status not in LIVE or run.options.get("watch") != token:
        return 0  # over, or a later start or resume watches it now
    _watch_later(run_id, token)  # first: a worker that dies below must not end the watch
    reclaimed = shards_reclaim(run=run)
    for shard in reclaimed:
        logger.warning(shard.events[-1]["message"])
        task_result_abandon(shard.task_result_id, shard.events[-1]["message"])
    _enqueue_shards(reclaimed)
    return len(reclaimed)


# --- the job handler (the command, and a job retried from its page) -------------------------------------


def rule_impact_job(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Execute (or resume) the impact run named in the job's params, every queued shard in this process."""
    run = RuleImpactRun.objects.select_related("prompt_version", "task").get(pk=job.params["run_id"])
    if run.status == Status.CANCELLED and job.cancel_requested:
        raise JobCancelled(f"Rule impact {run.pk} was cancelled")
    run = rule_impact_execute(run=run, progress=progress)
    if run.status != Status.FINISHED:
        # Another worker holds a shard under a live lease: it finishes the run.
        return {"url": run.get_absolute_url(), "run_id": run.pk,
                "message": f"Rule impact {run.pk} is {run.get_status_display().lower()}; other workers finish it"}
    return _job_result(run)
