"""Evidence that cannot be chosen (issue 22, attack 6): the gate judges the first complete run of the whole
frozen test split with the task's seed, lists every run beside it, and notices a changed test split."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from evaluation.models import EvaluationRun
from evaluation.release.promotion import gate_run, promotion_gate, prompt_version_promote
from evaluation.release.reports import report_data
from pldreview.models import LedgerEntry
from rules.datasets.dataset_import import dataset_import
from rules.datasets.frozen_split import TASK_SEED, split_sha256
from rules.datasets.parsers import FieldMap
from rules.models import Example, FrozenTestSplit, PromptVersion
from rules.student_model import student_model_sha256
from tests.support.prompt_versions import approve_all, compiled, gate_examples, scored_run
from tests.support.signatures import sign_promotion

pytestmark = pytest.mark.django_db


@pytest.fixture
def v1(task, admin_user, second_reviewer) -> PromptVersion:
    approve_all(task, second_reviewer)
    return compiled(task, admin_user)


@pytest.fixture
def examples(task) -> list[Example]:
    examples = gate_examples(task)
    # The zero-shot baseline: always the first label (macro-F1 0.167 on these balanced examples).
    scored_run(task, examples, constant=task.label_names[0])
    return examples


def _later(minutes: int) -> dt.datetime:
    return timezone.now() + dt.timedelta(minutes=minutes)


def _failing_run(v1: PromptVersion, examples: list[Example], **extra: object) -> EvaluationRun:
    # Wrong on every example: below the always-Entailment baseline.
    return scored_run(v1.task, examples, version=v1, wrong=len(examples), **extra)


def _passing_run(v1: PromptVersion, examples: list[Example], **extra: object) -> EvaluationRun:
    return scored_run(v1.task, examples, version=v1, **extra)


def _page(client, user, version: PromptVersion) -> str:
    client.force_login(user)
    return client.get(f"/prompts/{version.pk}/promote/").content.decode()


# --- attack 6: re-running until a run passes --------------------------------------------------------------


def test_a_passing_rerun_does_not_change_the_verdict_on_the_first_complete_run(
    client, v1, examples, admin_user
) -> None:
    first = _failing_run(v1, examples)
    rerun = _passing_run(v1, examples, finished_at=_later(5))
    gate = promotion_gate(prompt_version=v1)
    assert not gate.passed
    assert gate.candidate_run == first
    assert "does not beat the better baseline" in {c.key: c.sentence for c in gate.conditions}["baselines"]
    assert [(row.run, row.judged) for row in gate.runs] == [(first, True), (rerun, False)]
    with pytest.raises(ValidationError, match="does not beat the better baseline"):
        prompt_version_promote(prompt_version=v1, user=admin_user, reason="It passes now",
                               signature=sign_promotion(admin_user, v1))
    page = _page(client, admin_user, v1)
    assert f'id="gate-run-{first.pk}" class="gate-judged"' in page and f'id="gate-run-{rerun.pk}"' in page
    assert "judged by the gate: the first complete run of the whole frozen test split" in page
    assert f"complete after run #{first.pk}: shown, never judged" in page
    assert "1 later complete run(s) are listed below and not judged" in page


def test_the_first_run_to_finish_is_judged_not_the_first_started(v1, examples) -> None:
    slow = _passing_run(v1, examples, finished_at=_later(30))
    quick = _failing_run(v1, examples, finished_at=_later(10))
    assert slow.created_at <= quick.created_at
    assert gate_run(prompt_version=v1, model_sha256=student_model_sha256()) == quick
    assert not promotion_gate(prompt_version=v1).passed


def test_the_first_complete_run_passing_is_not_undone_by_a_worse_rerun(v1, examples) -> None:
    first = _passing_run(v1, examples)
    _failing_run(v1, examples, finished_at=_later(5))
    gate = promotion_gate(prompt_version=v1)
    assert gate.passed, gate.problems
    assert gate.candidate_run == first


def test_failed_and_cancelled_runs_are_listed_and_never_judged(client, v1, examples, admin_user) -> None:
    failed = _passing_run(v1, examples, status=EvaluationRun.Status.FAILED, finished_at=None)
    cancelled = _passing_run(v1, examples, status=EvaluationRun.Status.CANCELLED, finished_at=None)
    judged = _failing_run(v1, examples, finished_at=_later(5))
    gate = promotion_gate(prompt_version=v1)
    assert gate.candidate_run == judged
    notes = {row.run.pk: row.note for row in gate.runs}
    assert notes[failed.pk] == "failed: not complete" and notes[cancelled.pk] == "cancelled: not complete"
    page = _page(client, admin_user, v1)
    assert f'id="gate-run-{failed.pk}"' in page and f'id="gate-run-{cancelled.pk}"' in page


# --- a friendlier subset or another seed never gates --------------------------------------------------------


def test_a_limited_run_never_gates_even_when_it_passes_and_is_the_only_one(client, v1, examples, admin_user) -> None:
    subset = examples[:9]
    limited = scored_run(v1.task, subset, version=v1, limit=9)
    scored_run(v1.task, subset, constant=v1.task.label_names[0], limit=9)
    gate = promotion_gate(prompt_version=v1)
    assert not gate.passed and gate.candidate_run is None
    assert "no finished evaluation on the test split that can gate" in gate.problems[0]
    assert gate.runs[0].note == "limited to 9 examples: a run with a limit never gates"
    assert "limited to 9 examples: a run with a limit never gates" in _page(client, admin_user, v1)
    assert limited.pk == gate.runs[0].run.pk


def test_a_run_with_another_seed_never_gates(v1, examples) -> None:
    _passing_run(v1, examples, seed=TASK_SEED + 7)
    gate = promotion_gate(prompt_version=v1)
    assert gate.candidate_run is None and not gate.passed
    assert gate.runs[0].note == f"seed {TASK_SEED + 7}, not the task's seed {TASK_SEED}: never gates"


def test_a_run_on_a_limited_subset_after_a_failing_full_run_changes_nothing(v1, examples) -> None:
    first = _failing_run(v1, examples)
    _passing_run(v1, examples[:6], limit=6, finished_at=_later(5))
    gate = promotion_gate(prompt_version=v1)
    assert gate.candidate_run == first and not gate.passed
    assert len(gate.runs) == 2


def test_a_run_drawn_from_another_test_split_never_gates(v1, examples) -> None:
    _passing_run(v1, examples, split_sha256="0" * 64)
    gate = promotion_gate(prompt_version=v1)
    assert gate.candidate_run is None
    assert gate.runs[0].note.startswith("drawn from another test split than the frozen one (SHA-256 000000000000")


# --- a new student model ---------------------------------------------------------------------------------------


def test_each_student_model_has_its_own_first_complete_run(v1, examples) -> None:
    other = scored_run(v1.task, examples, version=v1, model_sha256="f" * 64)
    first = _failing_run(v1, examples, finished_at=_later(5))
    _passing_run(v1, examples, finished_at=_later(10))
    gate = promotion_gate(prompt_version=v1)
    assert gate.candidate_run == first and not gate.passed
    notes = {row.run.pk: row.note for row in gate.runs}
    assert notes[other.pk] == "another student model (SHA-256 ffffffffffff…): gates only for that model"
    # For the other model its own first complete run is the one judged.
    assert gate_run(prompt_version=v1, model_sha256="f" * 64) == other


# --- the frozen test split ----------------------------------------------------------------------------------


def test_the_first_gating_freezes_the_test_split_on_the_ledger(client, v1, examples, admin_user) -> None:
    sha, n = split_sha256(task=v1.task)
    assert not FrozenTestSplit.objects.exists()
    page = _page(client, admin_user, v1)
    freeze = FrozenTestSplit.objects.get()
    assert (freeze.task, freeze.sha256, freeze.n_examples) == (v1.task, sha, n)
    assert (freeze.prompt_version, freeze.frozen_by) == (v1, admin_user)
    entry = LedgerEntry.objects.get(event="test_split.frozen")
    assert (entry.object_type, entry.object_id, entry.actor_name) == ("rules.frozentestsplit", str(freeze.pk), "adam")
    assert json.loads(entry.payload)["facts"]["sha256"] == sha
    assert sha in page and "unchanged" in page
    promotion_gate(prompt_version=v1)
    assert FrozenTestSplit.objects.count() == 1 and LedgerEntry.objects.filter(event="test_split.frozen").count() == 1


def test_the_freeze_is_kept_in_the_promotion_record(v1, examples, admin_user) -> None:
    _passing_run(v1, examples)
    promotion = prompt_version_promote(prompt_version=v1, user=admin_user, reason="Passes",
                                       signature=sign_promotion(admin_user, v1))
    sha, _n = split_sha256(task=v1.task)
    assert promotion.gate["test_split_frozen_sha256"] == sha == promotion.gate["test_split_sha256"]
    assert [row["judged"] for row in promotion.gate["runs_on_test_split"]] == [True]


def _relabel_by_raw_sql(example: Example, label: str) -> None:
    # The stored content hash is left as it was: only the recomputed hash can notice.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE rules_example SET gold_label = %s WHERE id = %s", [label, example.pk])


def test_a_relabelled_test_split_fails_the_gate_naming_both_hashes(client, v1, examples, admin_user) -> None:
    _passing_run(v1, examples)
    assert promotion_gate(prompt_version=v1).passed
    frozen = FrozenTestSplit.objects.get().sha256
    _relabel_by_raw_sql(examples[0], "NotMentioned" if examples[0].gold_label != "NotMentioned" else "Entailment")
    now, _n = split_sha256(task=v1.task)
    assert now != frozen
    gate = promotion_gate(prompt_version=v1)
    assert not gate.passed and gate.split_changed
    sentence = {c.key: c.sentence for c in gate.conditions}["test_split"]
    assert f"frozen with SHA-256 {frozen}" in sentence and f"now hashes to {now}" in sentence
    page = _page(client, admin_user, v1)
    assert frozen in page and now in page and "changed since it was frozen" in page
    data = report_data(prompt_version=v1, generated_by=admin_user, generated_at=timezone.now(), report_id=None,
                       identity=None)
    assert data["test_split"]["changed"]
    assert (data["test_split"]["frozen_sha256"], data["test_split"]["sha256_now"]) == (frozen, now)


def test_the_report_lists_every_run_and_marks_the_judged_one(v1, examples, admin_user) -> None:
    first = _failing_run(v1, examples)
    rerun = _passing_run(v1, examples, finished_at=_later(5))
    limited = _passing_run(v1, examples[:6], limit=6, finished_at=_later(6))
    promotion_gate(prompt_version=v1, user=admin_user)
    data = report_data(prompt_version=v1, generated_by=admin_user, generated_at=timezone.now(), report_id=None,
                       identity=None)
    runs = {row["id"]: row for row in data["test_split"]["runs"]}
    assert set(runs) == {first.pk, rerun.pk, limited.pk}
    assert runs[first.pk]["judged"] and not runs[rerun.pk]["judged"] and not runs[limited.pk]["judged"]
    assert runs[limited.pk]["limit"] == 6 and runs[first.pk]["by"] == "—"
    assert data["pld"]["id"] == first.pk and data["pld_is_gate_run"]
    assert not data["test_split"]["changed"] and data["test_split"]["frozen_sha256"]


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_importing_into_a_frozen_test_split_is_refused_and_train_is_not(tmp_path, v1, examples, admin_user) -> None:
    promotion_gate(prompt_version=v1, user=admin_user)
    frozen = FrozenTestSplit.objects.get()
    path = _jsonl(tmp_path / "friendlier.jsonl", [
        {"premise": f"An easy clause {i}", "hypothesis": "Easy?", "label": "Entailment"} for i in range(4)
    ])
    field_map = FieldMap.parse(["premise=premise", "hypothesis=hypothesis"], label="label")
    before = Example.objects.filter(task=v1.task, split="test").count()
    with pytest.raises(ValidationError, match=f"frozen on .* \\(SHA-256 {frozen.sha256}\\)"):
        dataset_import(task_name=v1.task.name, fmt="jsonl", path_or_file=path, split="test", field_map=field_map,
                       user=admin_user)
    assert Example.objects.filter(task=v1.task, split="test").count() == before
    dataset_import(task_name=v1.task.name, fmt="jsonl", path_or_file=path, split="train", field_map=field_map,
                   user=admin_user)
    assert Example.objects.filter(task=v1.task, split="train").count() == 4
    assert promotion_gate(prompt_version=v1).split_changed is False


def test_a_run_records_the_whole_test_split_it_was_drawn_from(v1, examples, admin_user) -> None:
    from evaluation.runs.services import evaluation_run_create

    run = evaluation_run_create(task=v1.task, mode=EvaluationRun.Mode.PLD, prompt_version=v1, limit=3,
                                user=admin_user)
    assert run.split_sha256 == split_sha256(task=v1.task)[0] and run.n_examples == 3
    # On the ledger from its creation, with the limit and the split it was drawn from.
    facts = json.loads(LedgerEntry.objects.get(event="evaluation_run.created", object_id=str(run.pk)).payload)["facts"]
    assert (facts["limit"], facts["seed"], facts["split_sha256"]) == (3, 0, run.split_sha256)


@pytest.mark.parametrize("statement", [
    "UPDATE rules_frozentestsplit SET sha256 = %s",
    "DELETE FROM rules_frozentestsplit WHERE sha256 <> %s",
])
def test_the_database_refuses_to_change_or_delete_a_frozen_test_split(v1, examples, statement) -> None:
    promotion_gate(prompt_version=v1)
    frozen = FrozenTestSplit.objects.get().sha256
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, ["0" * 64])
    assert FrozenTestSplit.objects.get().sha256 == frozen


def test_the_migration_gives_earlier_whole_split_runs_todays_hash_and_no_other(v1, examples) -> None:
    import importlib

    from django.apps import apps

    migration = importlib.import_module("evaluation.migrations.0013_evaluation_run_split_sha256")
    whole = _passing_run(v1, examples, split_sha256="")
    part = _passing_run(v1, examples[:5], split_sha256="")
    migration.backfill(apps, None)
    whole.refresh_from_db()
    part.refresh_from_db()
    assert whole.split_sha256 == split_sha256(task=v1.task)[0] and part.split_sha256 == ""
    assert promotion_gate(prompt_version=v1).candidate_run == whole


def test_a_report_without_the_student_model_file_lists_the_runs_and_judges_none(
    v1, examples, admin_user, settings, tmp_path
) -> None:
    run = _passing_run(v1, examples)
    settings.PLD_STUDENT_MODEL_PATH = str(tmp_path / "missing.gguf")
    data = report_data(prompt_version=v1, generated_by=admin_user, generated_at=timezone.now(), report_id=None,
                       identity=None)
    assert [(row["id"], row["judged"]) for row in data["test_split"]["runs"]] == [(run.pk, False)]
    assert not data["pld_is_gate_run"] and data["pld"]["id"] == run.pk


def test_the_upload_page_refuses_a_file_whose_split_would_add_to_a_frozen_test_split(
    client, v1, examples, admin_user
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    promotion_gate(prompt_version=v1, user=admin_user)
    rows = [{"premise": f"Upload clause {i}", "hypothesis": "Shared?", "label": v1.task.label_names[i % 3]}
            for i in range(15)]
    upload = SimpleUploadedFile("more.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    before = Example.objects.count()
    client.force_login(admin_user)
    response = client.post("/datasets/import/", {"task": v1.task.name, "fmt": "jsonl", "file": upload, "split": "",
                                                 "split_seed": "0", "label_field": "label"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "would go into the test split of task nda-demo, which was frozen" in body
    assert FrozenTestSplit.objects.get().sha256 in body
    assert Example.objects.count() == before


def test_re_running_the_zero_shot_baseline_until_it_does_worse_changes_nothing(task, v1) -> None:
    examples = gate_examples(task)
    first_baseline = scored_run(task, examples)  # zero-shot right on every example
    scored_run(task, examples, wrong=len(examples), finished_at=_later(5))  # a later, worse zero-shot run
    scored_run(task, examples, version=v1, wrong=3)
    gate = promotion_gate(prompt_version=v1)
    assert gate.zero_shot_run == first_baseline
    assert not {c.key: c.passed for c in gate.conditions}["baselines"]
