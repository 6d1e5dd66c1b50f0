"""Deciding an evaluation run in this process: claim a shard, decide its examples, finish the run with the last one.

Every worker's shard task (evaluation/runs/worker.py) and the foreground path (``evaluation_run_execute``)
come here. The (run, example) constraint makes each decision land once, however many workers share a run.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from evaluation.models import EvaluationRun, EvaluationShard, Prediction
from evaluation.runs.adherence import adherence_check
from evaluation.runs.metrics import classification_metrics
from evaluation.runs.shards import ShardLost, ShardProgress, shard_claim, shard_release
from evaluation.student import prompts
from evaluation.student.backend import StudentBackend
from evaluation.student.http_client import get_backend_student
from evaluation.student.in_process import ExampleTooLongError, StudentDecision, StudentModelError, decide
from evaluation.student.warm import student_state_restore
from pldreview.jobs import JobCancelled, JobProgress, NoProgress
from pldreview.ledger import ledger_append
from rules.audit import audited_save
from rules.models import Example, PromptVersion

logger = logging.getLogger(__name__)

LIVE = {EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING}


def _calibration_prior(*, run: EvaluationRun, student: StudentBackend) -> dict[str, float]:
    layout = prompts.content_free_layout(task=run.task)
    decision = student.classify(
        rules=run.prompt_text, context=layout.context, example=layout.example, labels=run.task.label_names
    )
    return decision.logprobs


def _record(*, run: EvaluationRun, example: Example, decision: StudentDecision) -> Prediction | None:
    prediction = Prediction(
        run=run,
        example=example,
        label=decision.label,
        probabilities={k: round(v, 6) for k, v in decision.probabilities.items()},
        correct=decision.label == example.gold_label,
        latency_ms=round(decision.latency_ms, 3),
        prompt_tokens=decision.prompt_tokens,
        tokens_processed=decision.tokens_processed,
        output_text=decision.output_text,
        approximation=decision.approximation,
    )
    prediction.full_clean(exclude=["run", "example"])
    return _save_once(prediction)


def _record_refusal(*, run: EvaluationRun, example: Example, error: ExampleTooLongError) -> Prediction | None:
    # A refused example is stored as a wrong prediction with an empty label, so metrics count it
    # as a failure (never silently dropped) and a resumed run does not try it again.
    prediction = Prediction(
        run=run,
        example=example,
        label="",
        probabilities={},
        correct=False,
        latency_ms=0.0,
        prompt_tokens=error.n_tokens,
        tokens_processed=0,
        output_text=f"Refused: {error.message}",
    )
    return _save_once(prediction)


def _save_once(prediction: Prediction) -> Prediction | None:
    # The (run, example) constraint makes each decision land once: a worker whose shard was taken back
    # may still store the example it was on, and that second decision is dropped here.
    try:
        with transaction.atomic():
            prediction.save()
    except IntegrityError:
        logger.info("Example %s of run %s was already decided; this decision is dropped", prediction.example_id,
                    prediction.run_id)
        return None
    return prediction


def evaluation_run_finish(*, run: EvaluationRun) -> EvaluationRun:
    """Compute the run's metrics from its stored predictions, in the run's example order."""
    # The run's order, not the order decisions were stored in: with several workers that order varies,
    # and the bootstrap interval depends on it.
    position = {example_id: i for i, example_id in enumerate(run.options.get("example_ids", []))}
    predictions = sorted(
        run.predictions.select_related("example"),
        key=lambda p: (position.get(p.example_id, len(position)), p.example_id),
    )
    metrics = classification_metrics(
        y_true=[p.example.gold_label for p in predictions],
        y_pred=[p.label for p in predictions],
        labels=run.task.label_names,
        latencies_ms=[p.latency_ms for p in predictions if p.label],
        prompt_tokens=[p.prompt_tokens for p in predictions if p.label],
        tokens_processed=[p.tokens_processed for p in predictions if p.label],
        random_state=run.seed,
    )
    metrics["mode"] = run.mode
    metrics["prompt_tokens"] = run.prompt_tokens
    run.metrics = metrics
    run.n_approximate = sum(1 for p in predictions if p.approximation)
    return run


def run_student_load(run: EvaluationRun) -> StudentBackend:
    """Return the run's student; fail the run when its model cannot be loaded or changed since the run began."""
    try:
        student = get_backend_student(
            run.model_path, n_ctx=run.n_ctx or None, backend=run.student_backend,
            base_url=run.student_base_url, model=run.student_model,
        )
    except StudentModelError as exc:
        _fail(run, exc.message)
        raise
    if student.info.sha256 != run.model_sha256:
        message = (
            f"The model file {run.model_path} changed since the run was created "
            f"(SHA-256 {student.info.sha256[:12]}… instead of {run.model_sha256[:12]}…)."
        )
        _fail(run, message)
        raise StudentModelError(message)
    return student


def _run_options_default(run: EvaluationRun, **values: Any) -> None:
    """Store the options the run does not have yet (the first shard to get there wins) and reload them."""
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        missing = {key: value for key, value in values.items() if key not in locked.options}
        if missing:
            locked.options = {**locked.options, **missing}
            locked.save(update_fields=["options"])
    run.options = locked.options


def _run_begin(run: EvaluationRun, student: StudentBackend) -> None:
    # Conditional updates: several shards begin at once and none may overwrite another's later writes.
    runs = EvaluationRun.objects.filter(pk=run.pk)
    runs.filter(status=EvaluationRun.Status.QUEUED).update(status=EvaluationRun.Status.RUNNING, error="")
    runs.filter(started_at__isnull=True).update(started_at=timezone.now())
    runs.filter(prompt_tokens=0).update(
        prompt_tokens=student.count_tokens(run.prompt_text), n_ctx=student.n_ctx, n_threads=student.n_threads
    )
    runs.filter(scoring="").update(scoring=student.scoring_method)
    _run_options_default(run, chat_template=bool(student.chat_template))
    run.refresh_from_db()


def evaluation_shard_execute(
    *, shard_id: int, worker: str, progress: JobProgress | None = None
) -> EvaluationShard | None:
    """Claim a shard, decide its examples not yet decided, and finish the run when it is the last shard.

    Returns None when the shard was not queued (another worker has it, or it is done) or was taken back.
    """
    shard = shard_claim(shard_id=shard_id, worker=worker)
    if shard is None:
        return None
    run = EvaluationRun.objects.select_related("task", "prompt_version").get(pk=shard.run_id)
    if run.status not in LIVE:
        shard_release(shard=shard, status=EvaluationShard.Status.CANCELLED, event="skipped",
                      message=f"Shard {shard.number} was not started: the run is {run.get_status_display().lower()}.")
        return shard
    try:
        student = run_student_load(run)
    except StudentModelError as exc:
        shard_release(shard=shard, status=EvaluationShard.Status.FAILED, event="failed",
                      message=f"Shard {shard.number} failed on {worker}: {exc.message}")
        raise
    progress = ShardProgress(progress or NoProgress(), shard)
    try:
        progress.beat(force=True)  # loading the model may have taken a good part of the lease
        _run_begin(run, student)
        if student.backend == EvaluationRun.Backend.LLAMA_CPP:
            student_state_restore(student=student, rules_text=run.prompt_text)
        if run.calibrate and "prior" not in run.options:
            _run_options_default(run, prior=_calibration_prior(run=run, student=student))
        _shard_decide(run=run, shard=shard, student=student, progress=progress)
        if _shard_complete(run=run, shard=shard):
            _run_complete(run=run, shard=shard, student=student, progress=progress)
    except JobCancelled as exc:
        shard_release(shard=shard, status=EvaluationShard.Status.CANCELLED, event="cancelled",
                      message=f"Shard {shard.number} stopped on {worker}: {exc}.")
        EvaluationRun.objects.filter(pk=run.pk, status__in=LIVE).update(status=EvaluationRun.Status.CANCELLED)
        raise
    except ShardLost:
        logger.warning("Shard %s of run %s was taken back from %s; this worker stops", shard.number, run.pk, worker)
        return None
    except Exception as exc:  # recorded on the shard and the run, then re-raised so the job records it too
        shard_release(shard=shard, status=EvaluationShard.Status.FAILED, event="failed",
                      message=f"Shard {shard.number} failed on {worker}: {type(exc).__name__}: {exc}")
        _fail(run, f"{type(exc).__name__}: {exc}")
        raise
    return shard


def _shard_decide(
    *, run: EvaluationRun, shard: EvaluationShard, student: StudentBackend, progress: ShardProgress
) -> None:
    ids: list[int] = shard.example_ids
    done = set(run.predictions.filter(example_id__in=ids).values_list("example_id", flat=True))
    examples = Example.objects.in_bulk(ids)
    for example_id in ids:
        if example_id in done:
            continue
        example = examples[example_id]
        try:
            decision = decide(run=run, student=student, inputs=example.inputs)
        except ExampleTooLongError as exc:
            _record_refusal(run=run, example=example, error=exc)
        else:
            _record(run=run, example=example, decision=decision)
            if "prefix" not in run.options:
                # Recorded like the other settings: where the rules prefix came from (the first decision's).
                _run_options_default(run, prefix=decision.prefix)
                if student.backend == EvaluationRun.Backend.SERVER and "answered_by" not in run.options:
                    _run_options_default(run, answered_by=student.answered_by)
        progress.advance()
    progress.beat(force=True)


def _shard_complete(*, run: EvaluationRun, shard: EvaluationShard) -> bool:
    """Mark the shard finished unless it is the run's last; return True when this worker must finish the run.

    Finishing shards lock the run's row in turn, so exactly one of them sees every other shard finished.
    That one keeps its lease while it computes the metrics: if its worker dies then, the shard is
    retried and its next holder, with nothing left to decide, finishes the run.
    """
    with transaction.atomic():
        EvaluationRun.objects.select_for_update().filter(pk=run.pk).first()
        if not run.shards.exclude(pk=shard.pk).exclude(status=EvaluationShard.Status.FINISHED).exists():
            return True
        if not shard_release(shard=shard, status=EvaluationShard.Status.FINISHED):
            raise ShardLost(f"Shard {shard.number} was taken back before it finished")
    return False


def _run_complete(
    *, run: EvaluationRun, shard: EvaluationShard, student: StudentBackend, progress: ShardProgress
) -> None:
    run.refresh_from_db()
    progress.note("Computing metrics")
    evaluation_run_finish(run=run)
    if run.mode == EvaluationRun.Mode.PLD:
        progress.note("Checking rule adherence")
        run.adherence = adherence_check(run=run, student=student, progress=progress)
        run.rule_adherence = run.adherence.get("rule_adherence")
        run.metrics["rule_adherence"] = run.rule_adherence
    with transaction.atomic():
        status = EvaluationRun.objects.select_for_update().filter(pk=run.pk).values_list("status", flat=True).get()
        if status not in LIVE:
            raise JobCancelled(f"the run is {status}")
        if not shard_release(shard=shard, status=EvaluationShard.Status.FINISHED):
            raise ShardLost(f"Shard {shard.number} was taken back while it finished the run")
        run.status = EvaluationRun.Status.FINISHED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at", "metrics", "adherence", "rule_adherence", "n_approximate"])
        ledger_append(event="evaluation_run.finished", actor=run.created_by, obj=run, facts=run_ledger_facts(run),
                      reason=f"Evaluation run {run.pk} finished")
        _mark_version_evaluated(run)


def run_job_result(run: EvaluationRun) -> dict[str, Any]:
    """Return what a run's job records as its result: where to look and the headline figures."""
    return {
        "url": run.get_absolute_url(),
        "run_id": run.pk,
        "macro_f1": run.metrics.get("macro_f1"),
        "accuracy": run.metrics.get("accuracy"),
        "rule_adherence": run.rule_adherence,
    }


def run_ledger_facts(run: EvaluationRun) -> dict[str, Any]:
    """Return what the ledger records about a run: what a later report quotes, and the hashes behind it."""
    return {
        "task_id": run.task_id, "mode": run.mode, "prompt_version_id": run.prompt_version_id,
        "prompt_sha256": run.prompt_sha256, "model_sha256": run.model_sha256, "model_name": run.model_name,
        "data_sha256": run.data_sha256, "split": run.split, "seed": run.seed, "n_examples": run.n_examples,
        "limit": run.limit, "split_sha256": run.split_sha256,
        "metrics": run.metrics, "rule_adherence": run.rule_adherence, "finished_at": run.finished_at,
    }


def _fail(run: EvaluationRun, message: str) -> None:
    run.status = EvaluationRun.Status.FAILED
    run.error = message
    run.save(update_fields=["status", "error"])


def _mark_version_evaluated(run: EvaluationRun) -> None:
    version = run.prompt_version
    if version is None:
        return
    version.refresh_from_db()
    if version.status == PromptVersion.Status.DRAFT:
        version.status = PromptVersion.Status.EVALUATED
        audited_save(version, user=run.created_by, reason=f"Evaluated by run {run.pk}")
