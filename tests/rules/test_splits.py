"""The train/dev/test split: stratified by label, reproducible for a seed, groups never straddle splits."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from rules.datasets.dataset_import import dataset_import
from rules.datasets.parsers import FieldMap
from rules.datasets.splits import split_assign
from rules.models import Example

LABELS = ["a"] * 50 + ["b"] * 30 + ["c"] * 20


def test_it_splits_60_20_20_with_each_label_in_proportion() -> None:
    assignment = split_assign(labels=LABELS, random_state=0)
    assert Counter(assignment) == {"train": 60, "dev": 20, "test": 20}
    by_split = Counter(zip(assignment, LABELS, strict=True))
    assert [by_split[("train", label)] for label in "abc"] == [30, 18, 12]
    assert [by_split[("dev", label)] for label in "abc"] == [10, 6, 4]
    assert [by_split[("test", label)] for label in "abc"] == [10, 6, 4]


def test_the_same_seed_gives_the_same_assignment_and_another_seed_another() -> None:
    assert split_assign(labels=LABELS, random_state=7) == split_assign(labels=LABELS, random_state=7)
    assert split_assign(labels=LABELS, random_state=7) != split_assign(labels=LABELS, random_state=8)


def test_a_group_never_straddles_two_splits_and_labels_stay_balanced() -> None:
    # 40 documents of 17 hypotheses each, labels varying within a document like ContractNLI.
    labels, groups = [], []
    for doc in range(40):
        for hyp in range(17):
            labels.append(["E", "N", "E", "C"][(doc + hyp) % 4])
            groups.append(f"document-{doc}")
    assignment = split_assign(labels=labels, groups=groups, random_state=0)
    per_group: dict[str, set[str]] = {}
    for group, split in zip(groups, assignment, strict=True):
        per_group.setdefault(group, set()).add(split)
    assert all(len(splits) == 1 for splits in per_group.values())
    documents = Counter(next(iter(s)) for s in per_group.values())
    assert documents == {"train": 24, "dev": 8, "test": 8}
    assert split_assign(labels=labels, groups=groups, random_state=0) == assignment


def test_few_groups_still_split_whole_groups() -> None:
    assignment = split_assign(labels=["x", "y"] * 6, groups=["g1"] * 4 + ["g2"] * 4 + ["g3"] * 4, random_state=1)
    assert len(set(assignment[:4])) == len(set(assignment[4:8])) == len(set(assignment[8:])) == 1


def test_too_few_examples_to_stratify_still_get_a_split() -> None:
    assignment = split_assign(labels=["x", "y", "y", "z", "z"], random_state=0)
    assert Counter(assignment) == {"train": 3, "dev": 1, "test": 1}
    assert split_assign(labels=["only"], random_state=0) == ["train"]
    assert split_assign(labels=[], random_state=0) == []


@pytest.mark.django_db
def test_the_same_file_and_seed_give_the_same_splits_in_two_tasks(tmp_path) -> None:
    rows = [{"id": i, "text": f"ticket {i}", "label": ["refund", "routine", "escalate"][i % 3]} for i in range(45)]
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    for name in ("first", "second"):
        record = dataset_import(
            task_name=name, fmt="jsonl", path_or_file=path, split_seed=11, field_map=FieldMap(id="id")
        )
        assert record.split_seed == 11 and record.split == ""

    def splits(name: str) -> dict[str, str]:
        return dict(Example.objects.filter(task__name=name).values_list("source_ref", "split"))

    assert splits("first") == splits("second")
    assert Counter(splits("first").values()) == {"train": 27, "dev": 9, "test": 9}


@pytest.mark.django_db
def test_two_documents_with_the_same_text_land_in_the_same_split(tmp_path) -> None:
    labels = {f"nda-{k}": {"hypothesis": f"Hypothesis {k}."} for k in range(1, 5)}
    documents = []
    for doc_id in range(12):
        text = "The same contract." if doc_id in (3, 9) else f"Contract number {doc_id}."
        annotations = {key: {"choice": ["Entailment", "NotMentioned"][(doc_id + n) % 2], "spans": []}
                       for n, key in enumerate(labels)}
        documents.append({"id": doc_id, "text": text, "spans": [], "annotation_sets": [{"annotations": annotations}]})
    path = tmp_path / "cnli.json"
    path.write_text(json.dumps({"documents": documents, "labels": labels}))
    for seed in range(5):
        dataset_import(task_name=f"cnli-{seed}", fmt="contractnli", path_or_file=path, split_seed=seed)
        splits = set(Example.objects.filter(task__name=f"cnli-{seed}", group_key__in=["document-3", "document-9"])
                     .values_list("split", flat=True))
        assert len(splits) == 1, (seed, splits)
