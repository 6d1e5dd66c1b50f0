"""Evaluate the student on a task's split in one mode, in the foreground, recorded like a web run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.models import EvaluationRun
from evaluation.runs.services import MODES, evaluation_run_start
from pldreview.jobs import job_execute
from pldreview.models import Job
from rules.models import PromptVersion, Split, Task


def run_summary(run: EvaluationRun) -> dict[str, Any]:
    """Return the figures of a finished run as one flat dictionary (the --json line)."""
    m = run.metrics
    return {
        "run_id": run.pk,
        "task": run.task.name,
        "split": run.split,
        "mode": run.mode,
        "n": m.get("n", 0),
        "labels": m.get("labels", run.task.label_names),
        "macro_f1": m.get("macro_f1"),
        "macro_f1_ci95": m.get("macro_f1_ci95"),
        "accuracy": m.get("accuracy"),
        "per_class": m.get("per_class"),
        "n_refused": m.get("n_refused", 0),
        "latency_ms_p50": m.get("latency_ms_p50"),
        "latency_ms_p95": m.get("latency_ms_p95"),
        "latency_ms_mean": m.get("latency_ms_mean"),
        "prompt_tokens": run.prompt_tokens,
        "prompt_tokens_mean": m.get("prompt_tokens_mean"),
        "tokens_processed_mean": m.get("tokens_processed_mean"),
        "effective_tok_s": m.get("effective_tok_s"),
        "rule_adherence": run.rule_adherence,
        "adherence_warning": run.adherence.get("warning", "") if run.adherence else "",
        "model_name": run.model_name,
        "quantization": run.quantization,
        "model_sha256": run.model_sha256,
        "prompt_sha256": run.prompt_sha256,
        "prompt_version": run.prompt_version_id,
        "seed": run.seed,
        "n_ctx": run.n_ctx,
        "n_threads": run.n_threads,
        "llama_cpp_version": run.llama_cpp_version,
    }


class Command(BaseCommand):
    help = "Run the student on a task's split (zero-shot, few-shot, pld or cot) and report macro-F1 and latency."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True, help="Task name")
        parser.add_argument("--mode", required=True, choices=MODES)
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--prompt-file", help="pld: a text file with the rules prompt")
        source.add_argument("--prompt-version", type=int, help="pld: the id of a compiled prompt version")
        parser.add_argument("--split", default=Split.TEST, choices=[s.value for s in Split])
        parser.add_argument("--limit", type=int, help="Evaluate at most N examples (whole shared contexts first)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--k", type=int, default=4, help="few-shot: number of demonstrations")
        parser.add_argument("--calibrate", action="store_true", help="Contextual calibration on a content-free input")
        parser.add_argument(
            "--cot-tokens", type=int, help="cot: most reasoning tokens before the label (default PLD_COT_MAX_TOKENS)"
        )
        parser.add_argument("--model", help="A GGUF file (default: PLD_STUDENT_MODEL_PATH or the bundled model)")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            task = Task.objects.get(name=options["task"])
        except Task.DoesNotExist:
            raise CommandError(f"There is no task named {options['task']!r}.") from None
        prompt_text = ""
        version = None
        if options["prompt_file"]:
            path = Path(options["prompt_file"])
            if not path.is_file():
                raise CommandError(f"The prompt file {path} does not exist.")
            prompt_text = path.read_text(encoding="utf-8")
        if options["prompt_version"] is not None:
            version = PromptVersion.objects.filter(pk=options["prompt_version"], task=task).first()
            if version is None:
                raise CommandError(f"Task {task.name} has no prompt version with id {options['prompt_version']}.")
        if options["mode"] != EvaluationRun.Mode.PLD and (prompt_text or version):
            raise CommandError("--prompt-file and --prompt-version go with --mode pld.")
        if options["mode"] != EvaluationRun.Mode.COT and options["cot_tokens"] is not None:
            raise CommandError("--cot-tokens goes with --mode cot.")
        try:
            run = evaluation_run_start(
                task=task,
                mode=options["mode"],
                split=options["split"],
                prompt_version=version,
                prompt_text=prompt_text,
                limit=options["limit"],
                seed=options["seed"],
                k_shot=options["k"],
                calibrate=options["calibrate"],
                model_path=options["model"],
                cot_max_tokens=options["cot_tokens"],
                queue=False,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if not options["json"]:
            self.stdout.write(f"Run {run.pk}: {run.n_examples} examples of {task.name}/{run.split}, mode {run.mode}")
        job = job_execute(run.job_id)
        run.refresh_from_db()
        if job.state != Job.State.SUCCEEDED:
            raise CommandError(f"Evaluation run {run.pk} {job.state}: {run.error or job.error}")
        summary = run_summary(run)
        if options["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=False))
            return
        low, high = summary["macro_f1_ci95"]
        self.stdout.write(
            f"macro-F1 {summary['macro_f1']:.3f} (95% CI {low:.3f}–{high:.3f}), accuracy {summary['accuracy']:.3f}, "
            f"n={summary['n']}, refused {summary['n_refused']}"
        )
        self.stdout.write(
            f"latency p50 {summary['latency_ms_p50']:.0f} ms, p95 {summary['latency_ms_p95']:.0f} ms; "
            f"rules prompt {summary['prompt_tokens']} tokens"
        )
        if summary["rule_adherence"] is not None:
            self.stdout.write(f"rule adherence {summary['rule_adherence']:.2f}")
        if summary["adherence_warning"]:
            self.stdout.write(self.style.WARNING(summary["adherence_warning"]))
        self.stdout.write(f"Results: {run.get_absolute_url()}")
