"""Evaluation runs: create one, execute it (resumably), start it as a job, cancel or resume it.

A run fixes everything up front — the examples and their order, the exact rules text, the model
file's checksum — so executing it twice, or resuming it after a crash, gives the same predictions.
"""
from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_tasks import TaskContext, task
from django_tasks_db.models import DBTaskResult

from evaluation.models import EvaluationRun, EvaluationShard, Prediction
from evaluation.runs.adherence import adherence_check
from evaluation.runs.metrics import classification_metrics
from evaluation.runs.shards import (
    ShardLost,
    lease_length,
    shard_claim,
    shard_heartbeat,
    shard_release,
    shards_live,
    shards_plan,
    shards_reclaim,
    shards_requeue,
    worker_label,
)
from evaluation.student import prompts
from evaluation.student.http_client import ServerStudent, get_backend_student
from evaluation.student.in_process import (
    ExampleTooLongError,
    Student,
    StudentDecision,
    StudentModelError,
    check_model_file,
    decide,
    default_model_path,
)
from evaluation.student.warm import student_state_restore
from pldreview.jobs import (
    JobCancelled,
    JobProgress,
    NoProgress,
    job_begin,
    job_create,
    job_end,
    job_progress_record,
    job_requeue,
)
from pldreview.ledger import ledger_append
from pldreview.models import Job
from rules.audit import audited_save
from rules.datasets.frozen_split import split_sha256
from rules.models import Example, PromptVersion, Split, Task

logger = logging.getLogger(__name__)

JOB_KIND = "evaluation_run"
# A running job reports progress at least after every example; one silent this long has died.
STALE_AFTER = timedelta(minutes=5)
MODES = [choice.value for choice in EvaluationRun.Mode]
LIVE = {EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING}
CANCELLED_MESSAGE = "Cancelled; resume the run to continue where it stopped."
IN_PROCESS_SCORING = "in-process: every label token's log-probability from llama.cpp's full logits (exact)"


def _select_examples(*, task: Task, split: str, limit: int | None, seed: int) -> list[Example]:
    """Return the run's examples grouped by shared context, so each context is processed once.

    With a limit, whole groups are drawn in a seeded order until the limit is reached: drawing
    single examples would scatter a ContractNLI run across many more documents.
    """
    examples = list(Example.objects.filter(task=task, split=split).order_by("group_key", "id"))
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.group_key or f"#{example.pk}", []).append(example)
    keys = sorted(groups)
    if limit is not None and limit < len(examples):
        random.Random(seed).shuffle(keys)
        chosen: list[Example] = []
        for key in keys:
            if len(chosen) >= limit:
                break
            chosen.extend(groups[key][: limit - len(chosen)])
        # Keep groups contiguous but in a stable order for the run.
        chosen.sort(key=lambda e: (e.group_key or f"#{e.pk}", e.pk))
        return chosen
    return examples


def _data_sha256(examples: Iterable[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.content_hash.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def build_rules_text(
    *, task: Task, mode: str, prompt_text: str = "", k_shot: int = 4, seed: int = 0
) -> tuple[str, dict[str, Any]]:
    """Return the rules segment a mode puts before every example, and what to record about it."""
    extra: dict[str, Any] = {}
    if mode == EvaluationRun.Mode.ZERO_SHOT:
        return prompts.task_header(task), extra
    if mode == EvaluationRun.Mode.FEW_SHOT:
        candidates = Example.objects.filter(task=task, split=Split.TRAIN).order_by("id")
        demos = prompts.select_demonstrations(candidates=candidates, labels=task.label_names, k=k_shot, seed=seed)
        if not demos:
            raise ValidationError({"mode": "Few-shot needs labelled examples in the task's train split."})
        extra["demonstration_ids"] = [e.pk for e in demos]
        return prompts.few_shot_rules(task=task, demonstrations=demos), extra
    if mode == EvaluationRun.Mode.PLD:
        if not prompt_text.strip():
            raise ValidationError({"prompt_text": "A pld run needs a prompt version or a prompt file."})
        return prompts.pld_rules(task=task, prompt_text=prompt_text), extra
    if mode == EvaluationRun.Mode.COT:
        return prompts.cot_rules(task=task), extra
    raise ValidationError({"mode": f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}."})


def evaluation_run_create(
    *,
    task: Task,
    mode: str,
    split: str = "test",
    prompt_version: PromptVersion | None = None,
    prompt_text: str = "",
    limit: int | None = None,
    seed: int = 0,
    k_shot: int = 4,
    calibrate: bool = False,
    model_path: str | None = None,
    cot_max_tokens: int | None = None,
    user: Any = None,
) -> EvaluationRun:
    """Create a queued run: check the model file, fix the examples and the exact rules text."""
    if mode not in MODES:
        raise ValidationError({"mode": f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}."})
    if prompt_version is not None:
        if prompt_version.task_id != task.pk:
            raise ValidationError({"prompt_version": "That prompt version belongs to another task."})
        if mode != EvaluationRun.Mode.PLD:
            raise ValidationError({"prompt_version": "A prompt version is evaluated in pld mode."})
        prompt_text = prompt_version.text
    if limit is not None and limit < 1:
        raise ValidationError({"limit": "The limit must be at least 1."})
    if mode == EvaluationRun.Mode.FEW_SHOT and k_shot < 1:
        raise ValidationError({"k_shot": "Few-shot needs at least one example (k ≥ 1)."})
    if cot_max_tokens is not None and cot_max_tokens < 1:
        raise ValidationError({"cot_max_tokens": "The reasoning budget must be at least 1 token."})
    server = settings.PLD_STUDENT_BACKEND == EvaluationRun.Backend.SERVER
    if server and mode == EvaluationRun.Mode.COT:
        raise ValidationError(
            {"mode": "Chain-of-thought runs need the in-process student (PLD_STUDENT_BACKEND=llama_cpp)."}
        )
    path = model_path or default_model_path()
    try:
        info = check_model_file(path)
    except StudentModelError as exc:
        raise ValidationError({"model_path": exc.message}) from exc
    rules_text, extra = build_rules_text(task=task, mode=mode, prompt_text=prompt_text, k_shot=k_shot, seed=seed)
    if mode == EvaluationRun.Mode.COT:
        extra["cot_max_tokens"] = cot_max_tokens or settings.PLD_COT_MAX_TOKENS
    examples = _select_examples(task=task, split=split, limit=limit, seed=seed)
    if not examples:
        raise ValidationError({"split": f"The task {task.name} has no examples in its {split} split."})
    import llama_cpp

    run = EvaluationRun(
        task=task,
        mode=mode,
        prompt_version=prompt_version,
        prompt_text=rules_text,
        prompt_sha256=hashlib.sha256(rules_text.encode("utf-8")).hexdigest(),
        split=split,
        limit=limit,
        seed=seed,
        k_shot=k_shot if mode == EvaluationRun.Mode.FEW_SHOT else 0,
        calibrate=calibrate,
        options={**extra, "example_ids": [e.pk for e in examples]},
        model_path=info.path,
        model_sha256=info.sha256,
        model_name=info.name,
        quantization=info.quantization,
        llama_cpp_version=llama_cpp.__version__,
        student_backend=settings.PLD_STUDENT_BACKEND,
        student_base_url=settings.PLD_STUDENT_BASE_URL if server else "",
        student_model=settings.PLD_STUDENT_MODEL if server else "",
        n_ctx=settings.PLD_STUDENT_N_CTX,
        n_threads=settings.PLD_STUDENT_THREADS,
        n_examples=len(examples),
        data_sha256=_data_sha256(examples),
        # The gate judges a run only if it was drawn from the frozen test split (rules.datasets.frozen_split).
        split_sha256=split_sha256(task=task)[0] if split == Split.TEST else "",
        created_by=user if user is not None and getattr(user, "pk", None) else None,
    )
    # Hashing the model file and reading examples happen before the write: under SQLite a
    # transaction holds the database's write lock for as long as it lasts.
    with transaction.atomic():
        run.full_clean()
        run.save()
        shards_plan(run=run)
        # Every run is on the ledger from its start, so one that later fails, is cancelled or disappears still
        # shows: the gate lists every run of a version on the test split (issue 22).
        ledger_append(
            event="evaluation_run.created", actor=run.created_by, obj=run,
            facts={key: value for key, value in _run_facts(run).items()
                   if key not in {"metrics", "rule_adherence", "finished_at"}},
            reason=f"Evaluation run {run.pk} created",
        )
    return run


def _calibration_prior(*, run: EvaluationRun, student: Student | ServerStudent) -> dict[str, float]:
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


def _load_student(run: EvaluationRun) -> Student | ServerStudent:
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


def evaluation_run_execute(*, run: EvaluationRun, progress: JobProgress | None = None) -> EvaluationRun:
    """Decide every example of the run not yet decided, shard by shard in this process, then finish the run.

    The foreground path (commands, the demo, a job retried from its page); shards another worker
    holds under a live lease are left to it, and that worker finishes the run.
    """
    progress = progress or NoProgress()
    run.refresh_from_db()
    if run.status == EvaluationRun.Status.FINISHED:
        return run
    _load_student(run)
    shards_plan(run=run)
    if run.status in {EvaluationRun.Status.CANCELLED, EvaluationRun.Status.FAILED}:
        run.status = EvaluationRun.Status.QUEUED
        run.error = ""
        run.save(update_fields=["status", "error"])
    queued = shards_requeue(run=run, message="Queued again to run in the foreground.")
    ids: list[int] = run.options.get("example_ids", [])
    done = run.predictions.count()
    progress.set_total(len(ids), f"Evaluating {len(ids)} examples ({run.get_mode_display()})")
    if done:
        progress.set_done(done, f"Resuming: {done} of {len(ids)} already predicted")
    worker = worker_label()
    for shard in queued:
        evaluation_shard_execute(shard_id=shard.pk, worker=worker, progress=progress)
    run.refresh_from_db()
    return run


class _ShardProgress:
    """Passes progress on and renews the shard's lease; stops the shard when its run was cancelled or failed."""

    def __init__(self, inner: JobProgress, shard: EvaluationShard) -> None:
        self.inner = inner
        self.shard = shard
        self._last_beat = time.monotonic()
        # Several beats per lease, so one slow example does not lose it.
        self.interval = min(1.0, settings.PLD_SHARD_LEASE_SECONDS / 4)

    def set_total(self, total: int, message: str = "") -> None:
        self.inner.set_total(total, message)

    def set_done(self, done: int, message: str = "") -> None:
        self.inner.set_done(done, message)

    def advance(self, steps: int = 1, message: str = "") -> None:
        self.inner.advance(steps, message)
        self.beat()

    def note(self, message: str) -> None:
        self.inner.note(message)
        self.beat(force=True)

    def beat(self, *, force: bool = False) -> None:
        """Renew the lease (at most once a second); raise JobCancelled once the run is no longer live."""
        if not force and time.monotonic() - self._last_beat < self.interval:
            return
        self._last_beat = time.monotonic()
        status = shard_heartbeat(shard=self.shard)
        if status not in LIVE:
            raise JobCancelled(f"the run is {status}")


def _run_options_default(run: EvaluationRun, **values: Any) -> None:
    """Store the options the run does not have yet (the first shard to get there wins) and reload them."""
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        missing = {key: value for key, value in values.items() if key not in locked.options}
        if missing:
            locked.options = {**locked.options, **missing}
            locked.save(update_fields=["options"])
    run.options = locked.options


def _run_begin(run: EvaluationRun, student: Student | ServerStudent) -> None:
    # Conditional updates: several shards begin at once and none may overwrite another's later writes.
    runs = EvaluationRun.objects.filter(pk=run.pk)
    runs.filter(status=EvaluationRun.Status.QUEUED).update(status=EvaluationRun.Status.RUNNING, error="")
    runs.filter(started_at__isnull=True).update(started_at=timezone.now())
    runs.filter(prompt_tokens=0).update(
        prompt_tokens=student.count_tokens(run.prompt_text), n_ctx=student.n_ctx, n_threads=student.n_threads
    )
    runs.filter(scoring="").update(scoring=getattr(student, "scoring_method", IN_PROCESS_SCORING))
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
        student = _load_student(run)
    except StudentModelError as exc:
        shard_release(shard=shard, status=EvaluationShard.Status.FAILED, event="failed",
                      message=f"Shard {shard.number} failed on {worker}: {exc.message}")
        raise
    progress = _ShardProgress(progress or NoProgress(), shard)
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
    *, run: EvaluationRun, shard: EvaluationShard, student: Student | ServerStudent, progress: _ShardProgress
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
    *, run: EvaluationRun, shard: EvaluationShard, student: Student | ServerStudent, progress: _ShardProgress
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
        ledger_append(event="evaluation_run.finished", actor=run.created_by, obj=run, facts=_run_facts(run),
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


def _run_facts(run: EvaluationRun) -> dict[str, Any]:
    # What a later report quotes: the metrics and the hashes of the prompt, model and data they came from.
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


def evaluation_run_start(*, user: Any = None, queue: bool = True, **options: Any) -> EvaluationRun:
    """Create a run (with ``evaluation_run_create``'s keyword arguments) and its job; queue its shards for the workers.

    The run page, ``manage.py evaluate`` and the demo all start runs here. With ``queue=False`` nothing is
    queued: the caller runs the job in the foreground (``job_execute(run.job_id)``), as commands do.
    """
    run = evaluation_run_create(user=user, **options)
    with transaction.atomic():
        _run_job_attach(run, user=user)
        if queue:
            _dispatch(run)
    return run


def _run_job_attach(run: EvaluationRun, *, user: Any) -> None:
    title = f"Evaluate {run.task.name} ({run.get_mode_display()}, {run.split}) — run {run.pk}"
    run.job = job_create(kind=JOB_KIND, title=title, params={"run_id": run.pk}, user=user)
    run.save(update_fields=["job"])


def _dispatch(run: EvaluationRun) -> None:
    """Queue every queued shard as its own task, and the run's watch, once the transaction commits."""
    token = uuid.uuid4().hex
    _run_options_set(run, watch=token)
    shards = list(run.shards.filter(status=EvaluationShard.Status.QUEUED).order_by("number"))

    def enqueue() -> None:
        _enqueue_shards(shards)
        for chain in WATCH_CHAINS:
            _watch_later(run.pk, token, chain)

    transaction.on_commit(enqueue)


def _run_options_set(run: EvaluationRun, **values: Any) -> None:
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        locked.options = {**locked.options, **values}
        locked.save(update_fields=["options"])
    run.options = locked.options


def _enqueue_shards(shards: Iterable[EvaluationShard]) -> None:
    for shard in shards:
        result = run_evaluation_shard.enqueue(shard.pk)
        EvaluationShard.objects.filter(pk=shard.pk).update(task_result_id=str(result.id))


# Two watches a run, each queueing its own next one and starting the other's again when it fell silent:
# a worker killed after claiming a watch and before queueing its successor ends one chain, not the watch.
WATCH_CHAINS = (0, 1)


def _watch_later(run_id: int, token: str, chain: int) -> None:
    """Queue the chain's next watch and note it on the run, in one transaction (the other chain checks on it)."""
    # A deferred django-tasks task (run_after): whichever worker is free when it is due runs it. The
    # chains interleave, so one of them comes due every quarter lease.
    due = timezone.now() + lease_length() * (0.5 if chain == 0 else 0.75)
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.options.get("watch") != token:
            return
        result = watch_evaluation_run.using(run_after=due).enqueue(run_id, token, chain)
        run.options = {**run.options, "watches": {**run.options.get("watches", {}), str(chain): str(result.id)}}
        run.save(update_fields=["options"])


def _watch_revive_silent(run: EvaluationRun, token: str, chain: int) -> None:
    """Start another chain again when its newest watch was claimed long ago and never finished (its worker died)."""
    stuck_since = timezone.now() - lease_length() / 2  # a watch takes milliseconds
    for other in WATCH_CHAINS:
        task_result_id = (run.options.get("watches") or {}).get(str(other))
        if other == chain or not task_result_id:
            continue
        if not DBTaskResult.objects.running().filter(id=task_result_id, started_at__lt=stuck_since).exists():
            continue  # queued, running now, or it went on
        message = f"Watch {other} of run {run.pk} stopped with its worker; watch {chain} started it again."
        logger.warning(message)
        _task_result_abandon(task_result_id, message)
        _watch_later(run.pk, token, other)


@transaction.atomic
def evaluation_run_cancel(*, run: EvaluationRun) -> EvaluationRun:
    """Stop a queued or running run: its queued shards at once, its running shards after their current example."""
    if run.status in {EvaluationRun.Status.FINISHED, EvaluationRun.Status.CANCELLED}:
        return run
    run.shards.filter(status=EvaluationShard.Status.QUEUED).update(status=EvaluationShard.Status.CANCELLED)
    run.status = EvaluationRun.Status.CANCELLED
    run.save(update_fields=["status"])
    if run.job is not None:
        job_end(run.job.pk, Job.State.CANCELLED, message=CANCELLED_MESSAGE)
        run.job.refresh_from_db()
    return run


def run_is_stale(run: EvaluationRun) -> bool:
    """Say whether a run marked running has stopped reporting (every worker on it crashed or was killed)."""
    if run.status not in LIVE or shards_live(run):
        return False
    job = run.job
    if job is None:
        return run.status == EvaluationRun.Status.RUNNING
    if job.is_finished:
        return True
    return job.lost_its_worker(silent_for=STALE_AFTER)


@transaction.atomic
def evaluation_run_resume(*, run: EvaluationRun, user: Any = None) -> EvaluationRun:
    """Queue a failed, cancelled or crashed run again; it skips the examples already decided."""
    if run.status == EvaluationRun.Status.FINISHED:
        raise ValidationError("This run has finished; there is nothing to resume.")
    job = run.job
    if shards_live(run) or (job is not None and not job.is_finished and not run_is_stale(run)):
        raise ValidationError("This run is still running or queued; cancel it first or wait for it.")
    if job is not None and not job.is_finished:
        # The workers that held this run died without recording it; say so before queueing it again.
        job_end(job.pk, Job.State.FAILED, error="Interrupted: the processes running this job stopped reporting.")
        job.refresh_from_db()
    shards_plan(run=run)
    run.status = EvaluationRun.Status.QUEUED
    run.error = ""
    run.save(update_fields=["status", "error"])
    who = getattr(user, "username", "") or "the command line"
    shards_requeue(run=run, message=f"Queued again when {who} resumed the run.")
    if job is None:
        _run_job_attach(run, user=user)
    else:
        job_requeue(job)
    _dispatch(run)
    return run


# --- what the workers run (django-tasks) --------------------------------------------------------------


class _RunJobProgress:
    """Shows a sharded run's progress on its job: examples decided by every worker, at most once a second."""

    MIN_INTERVAL_SECONDS = 1.0

    def __init__(self, run: EvaluationRun) -> None:
        self.run = run
        self._last_write = 0.0

    def set_total(self, total: int, message: str = "") -> None: ...
    def set_done(self, done: int, message: str = "") -> None: ...

    def advance(self, steps: int = 1, message: str = "") -> None:
        if time.monotonic() - self._last_write >= self.MIN_INTERVAL_SECONDS:
            self._write()

    def note(self, message: str) -> None:
        self._write(message)

    def _write(self, message: str | None = None) -> None:
        self._last_write = time.monotonic()
        job_progress_record(self.run.job_id, done=self.run.predictions.count(), total=self.run.n_examples,
                            message=message)


@task(takes_context=True)
def run_evaluation_shard(context: TaskContext, shard_id: int) -> dict[str, Any] | None:
    """Decide one shard in this worker, and finish its run when it is the last; the django-tasks entry point."""
    shard = EvaluationShard.objects.select_related("run").filter(pk=shard_id).first()
    if shard is None:
        return None
    run = shard.run
    worker_ids = context.task_result.worker_ids
    job_begin(run.job_id, message=f"Evaluating {run.n_examples} examples in {run.shards.count()} shards")
    try:
        claimed = evaluation_shard_execute(
            shard_id=shard_id, worker=worker_label(worker_ids[-1] if worker_ids else ""), progress=_RunJobProgress(run)
        )
    except JobCancelled:
        job_end(run.job_id, Job.State.CANCELLED, message=CANCELLED_MESSAGE)
        return {"run_id": run.pk, "shard": shard.number, "stopped": "cancelled"}
    except Exception as exc:
        job_end(run.job_id, Job.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    run.refresh_from_db()
    if run.status == EvaluationRun.Status.FINISHED:
        job_end(run.job_id, Job.State.SUCCEEDED, done=run.n_examples, total=run.n_examples,
                result=run_job_result(run), message="Finished")
    return {"run_id": run.pk, "shard": shard.number, "claimed": claimed is not None}


@task()
def watch_evaluation_run(run_id: int, token: str, chain: int = 0) -> int:
    """Queue again the run's shards whose worker stopped responding, while the run is live.

    Each of the run's two chains queues its next watch first (due in half a lease, or three quarters
    for chain 1) and starts the other chain again if that one's worker died holding its watch.
    """
    run = EvaluationRun.objects.filter(pk=run_id).first()
    if run is None or run.status not in LIVE or run.options.get("watch") != token:
        return 0  # over, or a later start or resume watches it now
    _watch_later(run_id, token, chain)  # first: a worker that dies below must not end the watch
    run.refresh_from_db(fields=["options"])
    _watch_revive_silent(run, token, chain)
    reclaimed = shards_reclaim(run=run)
    for shard in reclaimed:
        logger.warning(shard.events[-1]["message"])
        _task_result_abandon(shard.task_result_id, shard.events[-1]["message"])
    _enqueue_shards(reclaimed)
    return len(reclaimed)


class WorkerLost(Exception):
    """Recorded on a django-tasks result whose worker stopped responding (its shard was queued again)."""


def _task_result_abandon(task_result_id: str, message: str) -> None:
    # django-tasks' database backend leaves a dead worker's task marked running for ever; record it as failed.
    if not task_result_id:
        return
    result = DBTaskResult.objects.running().filter(id=task_result_id).first()
    if result is not None:
        result.set_failed(WorkerLost(message))


def run_prompt_provenance(run: EvaluationRun) -> dict[str, Any] | None:
    """Compare the rules text a pld run gave the student with its prompt version's text, plainly.

    A run hashes and counts exactly what the student read; ``pld_rules`` strips the version's final
    line break and adds the answer instruction when the text lacks a label. The page then shows
    both hashes and token counts and says what differs, instead of two unexplained numbers.
    """
    version = run.prompt_version
    if version is None:
        return None
    run_sha = run.prompt_sha256 or hashlib.sha256(run.prompt_text.encode("utf-8")).hexdigest()
    same = run_sha == version.sha256
    if same:
        difference = "The run read the version's text exactly: same SHA-256 and the same text."
    elif run.prompt_text == version.text.strip():
        difference = (
            "The run read the version's text without its leading and trailing whitespace (the final line "
            "break): the template wrapper of pld runs strips it, so the hash and token count differ from the "
            "version's while every rule is the same."
        )
    elif run.prompt_text.startswith(version.text.strip()):
        extra = run.prompt_text[len(version.text.strip()):].strip()
        difference = (
            f"The run read the version's text followed by a line the template wrapper adds: “{extra}”, so "
            "the hash and token count differ from the version's."
        )
    else:
        difference = (
            "The run's rules text is not the version's text: the version was compiled again under the same "
            "number or the run was started from another text. Compare the two below."
        )
    return {
        "same": same,
        "difference": difference,
        "version_sha256": version.sha256,
        "version_tokens": version.token_count,
        "run_sha256": run_sha,
        "run_tokens": run.prompt_tokens,
    }
