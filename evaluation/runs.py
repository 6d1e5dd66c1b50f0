"""Evaluation runs: create one, execute it (resumably), start it as a job, cancel or resume it.

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
from django.utils import timezone

from evaluation import prompts
from evaluation.metrics import classification_metrics
from evaluation.models import EvaluationRun, Prediction
from evaluation.student import (
    COT_MAX_TOKENS,
    ExampleTooLongError,
    Student,
    StudentDecision,
    StudentModelError,
    check_model_file,
    default_model_path,
)
from evaluation.student_server import ServerStudent, get_backend_student
from evaluation.warm import student_state_restore
from pldreview.jobs import JobCancelled, job_cancel, job_retry, job_start
from pldreview.ledger import ledger_append
from pldreview.models import Job
from rules.audit import audited_save
from rules.models import Example, PromptVersion, Split, Task

logger = logging.getLogger(__name__)

JOB_KIND = "evaluation.jobs.run_evaluation"
# A running job reports progress at least after every example; one silent this long has died.
STALE_AFTER = timedelta(minutes=5)
MODES = [choice.value for choice in EvaluationRun.Mode]
IN_PROCESS_SCORING = "in-process: every label token's log-probability from llama.cpp's full logits (exact)"


class _NoProgress:
    """Stands in for a job's progress when a run executes without one."""

    def set_total(self, total: int, message: str = "") -> None: ...
    def set_done(self, done: int, message: str = "") -> None: ...
    def advance(self, steps: int = 1, message: str = "") -> None: ...
    def note(self, message: str) -> None: ...


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
        created_by=user if user is not None and getattr(user, "pk", None) else None,
    )
    # Hashing the model file and reading examples happen before the write: under SQLite a
    # transaction holds the database's write lock for as long as it lasts.
    with transaction.atomic():
        run.full_clean()
        run.save()
    return run


def _calibration_prior(*, run: EvaluationRun, student: Student | ServerStudent) -> dict[str, float]:
    layout = prompts.content_free_layout(task=run.task)
    decision = student.classify(
        rules=run.prompt_text, context=layout.context, example=layout.example, labels=run.task.label_names
    )
    return decision.logprobs


def decide(
    *,
    run: EvaluationRun,
    student: Student | ServerStudent,
    inputs: dict[str, Any],
    rules_text: str | None = None,
    reuse_prefix: bool = True,
) -> StudentDecision:
    """Decide one example the way a run does (its mode, rules, calibration and reasoning budget)."""
    layout = prompts.example_layout(task=run.task, inputs=inputs)
    cot = run.mode == EvaluationRun.Mode.COT
    return student.classify(
        rules=run.prompt_text if rules_text is None else rules_text,
        context=layout.context,
        example=layout.example,
        labels=run.task.label_names,
        cue=layout.cue,
        prior=run.options.get("prior") if run.calibrate else None,
        reasoning_cue=prompts.REASONING_CUE if cot else "",
        max_reasoning_tokens=run.options.get("cot_max_tokens", COT_MAX_TOKENS),
        reuse_prefix=reuse_prefix,
    )


def _record(*, run: EvaluationRun, example: Example, decision: StudentDecision) -> Prediction:
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
    prediction.save()
    return prediction


def _record_refusal(*, run: EvaluationRun, example: Example, error: ExampleTooLongError) -> Prediction:
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
    prediction.save()
    return prediction


def evaluation_run_finish(*, run: EvaluationRun) -> EvaluationRun:
    """Compute the run's metrics from its stored predictions."""
    predictions = list(run.predictions.select_related("example").order_by("id"))
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


def evaluation_run_execute(*, run: EvaluationRun, progress: Any = None) -> EvaluationRun:
    """Run the student on every example of the run not yet predicted, then compute the metrics."""
    progress = progress or _NoProgress()
    run.refresh_from_db()
    if run.status == EvaluationRun.Status.FINISHED:
        return run
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
    run.status = EvaluationRun.Status.RUNNING
    run.started_at = run.started_at or timezone.now()
    run.error = ""
    run.prompt_tokens = student.count_tokens(run.prompt_text)
    run.n_ctx = student.n_ctx
    run.n_threads = student.n_threads
    run.options = {**run.options, "chat_template": bool(student.chat_template)}
    run.scoring = getattr(student, "scoring_method", IN_PROCESS_SCORING)
    run.save()

    ids: list[int] = run.options.get("example_ids", [])
    done = set(run.predictions.values_list("example_id", flat=True))
    examples = Example.objects.in_bulk(ids)
    progress.set_total(len(ids), f"Evaluating {len(ids)} examples ({run.get_mode_display()})")
    if done:
        progress.set_done(len(done), f"Resuming: {len(done)} of {len(ids)} already predicted")
    if student.backend == EvaluationRun.Backend.LLAMA_CPP:
        student_state_restore(student=student, rules_text=run.prompt_text)
    first_decision = True
    try:
        if run.calibrate and "prior" not in run.options:
            run.options = {**run.options, "prior": _calibration_prior(run=run, student=student)}
            run.save(update_fields=["options"])
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
                if first_decision:
                    # Recorded like the other settings: where this execution's rules prefix came from.
                    first_decision = False
                    run.options = {**run.options, "prefix": decision.prefix}
                    if student.backend == EvaluationRun.Backend.SERVER:
                        run.options["answered_by"] = student.answered_by
                    run.save(update_fields=["options"])
            progress.advance()
        progress.note("Computing metrics")
        evaluation_run_finish(run=run)
        if run.mode == EvaluationRun.Mode.PLD:
            from evaluation.adherence import adherence_check

            progress.note("Checking rule adherence")
            run.adherence = adherence_check(run=run, student=student, progress=progress)
            run.rule_adherence = run.adherence.get("rule_adherence")
            run.metrics["rule_adherence"] = run.rule_adherence
    except JobCancelled:
        run.status = EvaluationRun.Status.CANCELLED
        run.save(update_fields=["status"])
        raise
    except Exception as exc:  # recorded on the run, then re-raised so the job records it too
        _fail(run, f"{type(exc).__name__}: {exc}")
        raise
    run.status = EvaluationRun.Status.FINISHED
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save()
        ledger_append(event="evaluation_run.finished", actor=run.created_by, obj=run, facts=_run_facts(run),
                      reason=f"Evaluation run {run.pk} finished")
        _mark_version_evaluated(run)
    return run


def _run_facts(run: EvaluationRun) -> dict[str, Any]:
    # What a later report quotes: the metrics and the hashes of the prompt, model and data they came from.
    return {
        "task_id": run.task_id, "mode": run.mode, "prompt_version_id": run.prompt_version_id,
        "prompt_sha256": run.prompt_sha256, "model_sha256": run.model_sha256, "model_name": run.model_name,
        "data_sha256": run.data_sha256, "split": run.split, "seed": run.seed, "n_examples": run.n_examples,
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


def evaluation_run_start(*, user: Any = None, **options: Any) -> EvaluationRun:
    """Create a run (with ``evaluation_run_create``'s keyword arguments) and hand it to the worker as a job."""
    run = evaluation_run_create(user=user, **options)
    with transaction.atomic():
        run.job = job_start(kind=JOB_KIND, title=_job_title(run), params={"run_id": run.pk}, user=user)
        run.save(update_fields=["job"])
    return run


def _job_title(run: EvaluationRun) -> str:
    return f"Evaluate {run.task.name} ({run.get_mode_display()}, {run.split}) — run {run.pk}"


@transaction.atomic
def evaluation_run_cancel(*, run: EvaluationRun) -> EvaluationRun:
    """Ask a queued or running run to stop; a run without a live job is marked cancelled at once."""
    if run.status in {EvaluationRun.Status.FINISHED, EvaluationRun.Status.CANCELLED}:
        return run
    if run.job is not None and not run.job.is_finished:
        # A run reports every example, so its silence means a lost worker sooner than a job's in general.
        job_cancel(job=run.job, silent_for=STALE_AFTER)
        run.job.refresh_from_db()
        if run.job.state == run.job.State.CANCELLED or run.status == EvaluationRun.Status.QUEUED:
            run.status = EvaluationRun.Status.CANCELLED
            run.save(update_fields=["status"])
        return run
    run.status = EvaluationRun.Status.CANCELLED
    run.save(update_fields=["status"])
    return run


def run_is_stale(run: EvaluationRun) -> bool:
    """Say whether a run marked running has stopped reporting (its process crashed or was killed)."""
    if run.status not in {EvaluationRun.Status.RUNNING, EvaluationRun.Status.QUEUED}:
        return False
    job = run.job
    if job is None:
        return run.status == EvaluationRun.Status.RUNNING
    if job.is_finished:
        return True
    return job.lost_its_worker(silent_for=STALE_AFTER)


@transaction.atomic
def evaluation_run_resume(*, run: EvaluationRun, user: Any = None) -> EvaluationRun:
    """Queue a failed, cancelled or crashed run again; it skips the examples already predicted."""
    if run.status == EvaluationRun.Status.FINISHED:
        raise ValidationError("This run has finished; there is nothing to resume.")
    job = run.job
    stale = run_is_stale(run)
    if job is not None and not job.is_finished and not stale:
        raise ValidationError("This run is still running or queued; cancel it first or wait for it.")
    if job is not None and not job.is_finished:
        # The worker that held this job died without recording it; say so before retrying.
        job.state = Job.State.FAILED
        job.error = "Interrupted: the process running this job stopped reporting."
        job.finished_at = timezone.now()
        job.save()
    run.status = EvaluationRun.Status.QUEUED
    run.error = ""
    run.save(update_fields=["status", "error"])
    if job is not None and job.can_retry:
        job_retry(job=job)
    else:
        run.job = job_start(kind=JOB_KIND, title=_job_title(run), params={"run_id": run.pk}, user=user)
        run.save(update_fields=["job"])
    return run


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
