"""The evaluate command: a recorded run from the command line, its JSON summary, and clear refusals."""
from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from evaluation.models import EvaluationRun
from evaluation.student.in_process import Student
from pldreview.models import Job
from rules.models import Example, Task

REQUIRED_KEYS = {
    "mode", "n", "labels", "macro_f1", "macro_f1_ci95", "accuracy", "latency_ms_p50", "latency_ms_p95",
    "prompt_tokens", "model_sha256", "prompt_sha256", "rule_adherence",
}


def _run(*args: str) -> str:
    out = StringIO()
    call_command("evaluate", *args, stdout=out)
    return out.getvalue()


@pytest.mark.slow
def test_json_output_ends_with_one_object_with_the_required_keys(
    task: Task, nda_examples: list[Example], student_settings: Student, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("1. If the clause forbids what the hypothesis allows, the label is Contradiction.\n")
    output = _run("--task", task.name, "--mode", "pld", "--prompt-file", str(rules), "--limit", "3", "--json")
    summary = json.loads(output.strip().splitlines()[-1])
    assert REQUIRED_KEYS <= set(summary)
    assert summary["mode"] == "pld" and summary["n"] == 3
    assert summary["labels"] == task.label_names
    assert len(summary["macro_f1_ci95"]) == 2
    assert summary["rule_adherence"] is not None
    run = EvaluationRun.objects.get(pk=summary["run_id"])
    assert run.status == EvaluationRun.Status.FINISHED
    assert run.job is not None and run.job.state == Job.State.SUCCEEDED
    assert summary["prompt_sha256"] == run.prompt_sha256


@pytest.mark.slow
def test_plain_output_reports_f1_and_latency(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    output = _run("--task", task.name, "--mode", "zero-shot", "--limit", "2", "--seed", "3")
    assert "macro-F1" in output and "latency p50" in output and "/evaluations/" in output


def test_it_refuses_an_unknown_task(db: None) -> None:
    with pytest.raises(CommandError, match="no task named 'missing'"):
        _run("--task", "missing", "--mode", "zero-shot")


def test_it_refuses_a_missing_prompt_file(task: Task, nda_examples: list[Example]) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        _run("--task", task.name, "--mode", "pld", "--prompt-file", "/nonexistent/rules.txt")


def test_it_refuses_pld_without_rules(task: Task, nda_examples: list[Example]) -> None:
    with pytest.raises(CommandError, match="prompt version or a prompt file"):
        _run("--task", task.name, "--mode", "pld")


def test_it_refuses_a_corrupt_model_file(task: Task, nda_examples: list[Example], tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 100)
    with pytest.raises(CommandError, match="without any tensors"):
        _run("--task", task.name, "--mode", "zero-shot", "--model", str(model))
    assert not EvaluationRun.objects.exists()


def _cut_copy_of_the_bundled_model(tmp_path: Path, n_bytes: int = 10 * 1024 * 1024) -> Path:
    from rules.student_model import bundled_model_path

    path = tmp_path / "cut.gguf"
    with bundled_model_path().open("rb") as source:
        path.write_bytes(source.read(n_bytes))
    return path


def test_it_names_a_cut_short_model_file_before_any_run_exists(
    task: Task, nda_examples: list[Example], tmp_path: Path
) -> None:
    # llama.cpp itself only says "Failed to load model from file" for this one.
    model = _cut_copy_of_the_bundled_model(tmp_path)
    with pytest.raises(CommandError) as caught:
        _run("--task", task.name, "--mode", "zero-shot", "--model", str(model))
    message = str(caught.value)
    assert "is truncated" in message and "253,113,024" in message and "10,485,760 bytes" in message
    assert "Traceback" not in message and "\n" not in message
    assert not EvaluationRun.objects.exists()
    assert not Job.objects.exists()


def test_it_names_a_file_that_is_not_a_gguf_before_any_run_exists(
    task: Task, nda_examples: list[Example], tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"<html><body>404 Not Found</body></html>" * 100)
    with pytest.raises(CommandError, match="is not a GGUF model file"):
        _run("--task", task.name, "--mode", "zero-shot", "--model", str(model))
    assert not EvaluationRun.objects.exists()


def test_it_refuses_a_prompt_version_of_another_task(task: Task, nda_examples: list[Example]) -> None:
    with pytest.raises(CommandError, match="no prompt version with id 999"):
        _run("--task", task.name, "--mode", "pld", "--prompt-version", "999")


def test_it_refuses_a_reasoning_budget_outside_cot(task: Task, nda_examples: list[Example]) -> None:
    with pytest.raises(CommandError, match="--cot-tokens goes with --mode cot"):
        _run("--task", task.name, "--mode", "zero-shot", "--cot-tokens", "50")
    assert not EvaluationRun.objects.exists()
