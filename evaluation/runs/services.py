"""Evaluation runs: create one, start it (queued for the workers, or for a command), execute it, cancel or resume it.

A run fixes everything up front — the examples and their order, the exact rules text, the model
file's checksum — so executing it twice, or resuming it after a crash, gives the same predictions.
"""
from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from evaluation.models import EvaluationRun, EvaluationShard
from evaluation.runs.execution import LIVE, evaluation_shard_execute, run_ledger_facts, run_student_load
from evaluation.runs.shards import shards_live, shards_plan, shards_requeue, worker_label
from evaluation.runs.worker import CANCELLED_MESSAGE, evaluation_run_queue
from evaluation.student import prompts
from evaluation.student.in_process import StudentModelError, check_model_file, default_model_path
from pldreview.jobs import JobProgress, NoProgress, job_create, job_end, job_requeue
from pldreview.ledger import ledger_append
from pldreview.models import Job
from rules.datasets.frozen_split import split_sha256
from rules.models import Example, PromptVersion, Split, Task

logger = logging.getLogger(__name__)

JOB_KIND = "evaluation_run"
# A running job reports progress at least after every example; one silent this long has died.
STALE_AFTER = timedelta(minutes=5)
MODES = [choice.value for choice in EvaluationRun.Mode]


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
            facts={key: value for key, value in run_ledger_facts(run).items()
                   if key not in {"metrics", "rule_adherence", "finished_at"}},
            reason=f"Evaluation run {run.pk} created",
        )
    return run


def evaluation_run_execute(*, run: EvaluationRun, progress: JobProgress | None = None) -> EvaluationRun:
    """Decide every example of the run not yet decided, shard by shard in this process, then finish the run.

    The foreground path (commands, the demo, a job retried from its page); shards another worker
    holds under a live lease are left to it, and that worker finishes the run.
    """
    progress = progress or NoProgress()
    run.refresh_from_db()
    if run.status == EvaluationRun.Status.FINISHED:
        return run
    run_student_load(run)
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


def evaluation_run_start(*, user: Any = None, queue: bool = True, **options: Any) -> EvaluationRun:
    """Create a run (with ``evaluation_run_create``'s keyword arguments) and its job; queue its shards for the workers.

    The run page, ``manage.py evaluate`` and the demo all start runs here. With ``queue=False`` nothing is
    queued: the caller runs the job in the foreground (``job_execute(run.job_id)``), as commands do.
    """
    run = evaluation_run_create(user=user, **options)
    with transaction.atomic():
        _run_job_attach(run, user=user)
        if queue:
            evaluation_run_queue(run=run)
    return run


def _run_job_attach(run: EvaluationRun, *, user: Any) -> None:
    title = f"Evaluate {run.task.name} ({run.get_mode_display()}, {run.split}) — run {run.pk}"
    run.job = job_create(kind=JOB_KIND, title=title, params={"run_id": run.pk}, user=user)
    run.save(update_fields=["job"])


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
    evaluation_run_queue(run=run)
    return run
