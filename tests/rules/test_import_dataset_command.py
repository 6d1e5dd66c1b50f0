"""The import_dataset command: mapping options, clear refusals, and the real datasets when present."""
from __future__ import annotations

from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from rules.models import DatasetImport, Example, Task
from tests.support.datasets import FIXTURES_DIR, SHARED_DATASETS, requires_shared_datasets

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("import_dataset", *args, stdout=out)
    return out.getvalue()


def test_it_imports_a_csv_with_field_options_and_reports_what_it_added(tmp_path) -> None:
    path = tmp_path / "clauses.csv"
    path.write_text(
        "clause,question,verdict\n"
        "Staff may see it.,May employees see it?,Entailment\n"
        "Nobody may see it.,May employees see it?,Contradiction\n"
        "Delaware law applies.,May employees see it?,NotMentioned\n"
    )
    out = _run(
        str(path), "--task", "clauses", "--format", "csv", "--field", "premise=clause",
        "--field", "hypothesis=question", "--label-field", "verdict", "--split", "dev",
    )
    assert "clauses.csv → task clauses: 3 records, 3 added, 0 already present (split dev)." in out
    assert "Added by label: Entailment 1, Contradiction 1, NotMentioned 1" in out
    assert Example.objects.get(gold_label="Entailment").inputs == {
        "premise": "Staff may see it.", "hypothesis": "May employees see it?",
    }


def test_it_creates_a_task_from_a_definition_file_and_splits_by_seed() -> None:
    out = _run(
        str(FIXTURES_DIR / "nda_demo.jsonl"), "--task", "nda-demo", "--format", "jsonl", "--id-field", "id",
        "--task-definition", str(FIXTURES_DIR / "nda_demo.task.json"), "--split-seed", "4",
    )
    assert "90 added" in out and "Added by split: train 54, dev 18, test 18" in out
    task = Task.objects.get(name="nda-demo")
    assert task.title == "NDA clauses" and task.label_description("NotMentioned")
    assert DatasetImport.objects.get().split_seed == 4


def test_a_refused_file_is_a_command_error_naming_file_line_and_problem(tmp_path, task) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"premise": "P", "hypothesis": "H", "label": "Entailment"}\n{"premise": "P", ')
    with pytest.raises(CommandError, match="bad.jsonl, line 2: malformed JSON"):
        _run(str(path), "--task", "nda-demo", "--format", "jsonl", "--split", "train")
    assert Example.objects.count() == 0


def test_a_missing_file_is_a_command_error(tmp_path) -> None:
    with pytest.raises(CommandError, match="cannot read the file"):
        _run(str(tmp_path / "nope.jsonl"), "--task", "x", "--format", "jsonl")


def test_split_and_split_seed_exclude_each_other(tmp_path) -> None:
    with pytest.raises(CommandError, match="not allowed with argument"):
        _run(str(tmp_path / "x.jsonl"), "--task", "x", "--format", "jsonl", "--split", "dev", "--split-seed", "1")


@pytest.mark.datasets
@requires_shared_datasets("contractnli", "test.json")
def test_contractnli_test_imports_2091_pairs_and_a_second_run_adds_none() -> None:
    path = str(SHARED_DATASETS / "contractnli" / "test.json")
    args = ("--task", "contractnli-test", "--format", "contractnli", "--split", "test")
    out = _run(path, *args)
    assert "2,091 records, 2,091 added" in out
    task = Task.objects.get(name="contractnli-test")
    counts = Counter(Example.objects.filter(task=task).values_list("gold_label", flat=True))
    assert counts == {"Entailment": 968, "Contradiction": 220, "NotMentioned": 903}
    assert set(Example.objects.filter(task=task).values_list("split", flat=True)) == {"test"}
    assert Example.objects.filter(task=task).values("group_key").distinct().count() == 123
    assert "0 added, 2,091 already present" in _run(path, *args)
    assert Example.objects.filter(task=task).count() == 2091


@pytest.mark.datasets
@requires_shared_datasets("stereoset", "test.jsonl")
def test_stereoset_imports_12687_sentences_4229_per_label_stratified() -> None:
    out = _run(str(SHARED_DATASETS / "stereoset" / "test.jsonl"), "--task", "stereoset", "--format", "stereoset",
               "--split-seed", "0")
    assert "12,687 records, 12,687 added" in out
    rows = Example.objects.filter(task__name="stereoset").values_list("split", "gold_label")
    by_split = Counter(rows)
    assert Counter(label for _, label in rows) == {"stereotype": 4229, "anti-stereotype": 4229, "unrelated": 4229}
    for split in ("train", "dev", "test"):
        per_label = {by_split[(split, label)] for label in ("stereotype", "anti-stereotype", "unrelated")}
        assert len(per_label) == 1, (split, per_label)
    assert by_split[("train", "stereotype")] > 2 * by_split[("test", "stereotype")]


@pytest.mark.datasets
@requires_shared_datasets("contractnli", "dev.json")
def test_contractnli_dev_split_by_seed_keeps_each_document_in_one_split() -> None:
    out = _run(str(SHARED_DATASETS / "contractnli" / "dev.json"), "--task", "contractnli-dev",
               "--format", "contractnli", "--split-seed", "0")
    assert "1,037 records, 1,037 added" in out
    rows = Example.objects.filter(task__name="contractnli-dev").values_list("group_key", "split")
    per_document: dict[str, set[str]] = {}
    for group, split in rows:
        per_document.setdefault(group, set()).add(split)
    assert len(per_document) == 61 and all(len(splits) == 1 for splits in per_document.values())
    documents = Counter(next(iter(splits)) for splits in per_document.values())
    assert documents["train"] > documents["dev"] > 0 and documents["test"] > 0


@pytest.mark.datasets
@requires_shared_datasets("logiqa2", "test.txt")
def test_logiqa2_test_imports_every_question_with_its_answer_letter() -> None:
    out = _run(str(SHARED_DATASETS / "logiqa2" / "test.txt"), "--task", "logiqa2-test", "--format", "logiqa2",
               "--split", "test")
    assert "1,572 records, 1,572 added" in out
    counts = Counter(Example.objects.filter(task__name="logiqa2-test").values_list("gold_label", flat=True))
    assert counts == {"A": 347, "B": 384, "C": 417, "D": 424}
