"""Demo step: the student evaluated on the fixture tasks (zero-shot against the rules)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.contrib.auth.models import User

from evaluation.demo.prompts import demo_version
from evaluation.models import EvaluationRun
from evaluation.runs.services import build_rules_text, evaluation_run_execute, evaluation_run_start
from pldreview.jobs import job_execute
from rules.models import PromptVersion, Task

ESCALATION_RULES = Path(settings.BASE_DIR) / "fixtures" / "escalation.rules.txt"


def _ensure_run(
    *, task: Task, mode: str, user: Any, prompt_version: PromptVersion | None = None, prompt_text: str = "",
    split: str = "test",
) -> EvaluationRun:
    """Return the finished run for these inputs, running (or resuming) it only when needed."""
    if prompt_version is not None:
        prompt_text = prompt_version.text
    rules_text, _ = build_rules_text(task=task, mode=mode, prompt_text=prompt_text)
    existing = (
        EvaluationRun.objects.filter(
            task=task, mode=mode, split=split, seed=0, limit=None, prompt_version=prompt_version,
            prompt_sha256=hashlib.sha256(rules_text.encode("utf-8")).hexdigest(),
        )
        .order_by("-created_at")
        .first()
    )
    if existing is not None and existing.status == EvaluationRun.Status.FINISHED:
        return existing
    if existing is not None:
        return evaluation_run_execute(run=existing)
    run = evaluation_run_start(
        task=task, mode=mode, split=split, prompt_version=prompt_version, prompt_text=prompt_text, user=user,
        queue=False,
    )
    job_execute(run.job_id)
    run.refresh_from_db()
    return run


def _report(stdout: TextIO, run: EvaluationRun) -> None:
    m = run.metrics
    line = (
        f"  {run.task.name:<10} {run.mode:<9} {run.split:<5} run {run.pk:<4} macro-F1 {m.get('macro_f1', 0):.3f}"
        f"  accuracy {m.get('accuracy', 0):.3f}  p50 {m.get('latency_ms_p50', 0):.0f} ms"
    )
    if run.rule_adherence is not None:
        line += f"  rule adherence {run.rule_adherence:.2f}"
    stdout.write(line + "\n")
    if run.adherence.get("warning"):
        stdout.write(f"    warning: {run.adherence['warning']}\n")


def seed_evaluations(stdout: TextIO) -> None:
    """Evaluate the student zero-shot and with the demo's version on the fixture tasks; finished runs are reused."""
    user = User.objects.filter(username="adam").first()
    nda = Task.objects.filter(name="nda-demo").first()
    if nda is None:
        stdout.write("  nda-demo is not imported; skipping the evaluations.\n")
        return
    _report(stdout, _ensure_run(task=nda, mode=EvaluationRun.Mode.ZERO_SHOT, user=user))
    # Only the version the demo compiled: versions people compile later are theirs to evaluate.
    version = demo_version(nda)
    if version is None:
        stdout.write("  nda-demo has no prompt version yet; skipping its pld evaluation.\n")
    else:
        _report(stdout, _ensure_run(task=nda, mode=EvaluationRun.Mode.PLD, user=user, prompt_version=version))
        # The teacher's rules cover training examples: a run on train gives each rule page its statistics.
        _report(
            stdout,
            _ensure_run(task=nda, mode=EvaluationRun.Mode.PLD, user=user, prompt_version=version, split="train"),
        )
    escalation = Task.objects.filter(name="escalation").first()
    if escalation is not None and ESCALATION_RULES.exists():
        _report(stdout, _ensure_run(task=escalation, mode=EvaluationRun.Mode.ZERO_SHOT, user=user))
        _report(
            stdout,
            _ensure_run(
                task=escalation,
                mode=EvaluationRun.Mode.PLD,
                user=user,
                prompt_text=ESCALATION_RULES.read_text(encoding="utf-8"),
            ),
        )
