"""Dataset import through the service: every format, the task it creates, and refused files."""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from rules.datasets.dataset_import import dataset_import, task_define
from rules.datasets.parsers import FieldMap
from rules.models import DatasetImport, Example, Task
from tests.support.datasets import FIXTURES_DIR

pytestmark = pytest.mark.django_db


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


CLAUSES = [
    {"clause": f"Clause number {i} about confidentiality.", "question": "Is it confidential?", "gold": label}
    for i, label in enumerate(["Yes", "No", "Maybe"] * 4)
]


def _nothing_saved() -> None:
    assert Example.objects.count() == 0
    assert DatasetImport.objects.count() == 0


def test_jsonl_maps_columns_onto_task_fields_and_infers_the_labels(tmp_path, admin_user) -> None:
    path = _jsonl(tmp_path / "clauses.jsonl", CLAUSES)
    record = dataset_import(
        task_name="clauses",
        fmt="jsonl",
        path_or_file=path,
        split="train",
        field_map=FieldMap.parse(["premise=clause", "hypothesis=question"], label="gold"),
        user=admin_user,
    )
    task = Task.objects.get(name="clauses")
    assert task.input_fields == ["premise", "hypothesis"]
    assert task.label_names == ["Yes", "No", "Maybe"]
    example = Example.objects.get(source_ref="line 2")
    assert example.inputs == {"premise": "Clause number 1 about confidentiality.", "hypothesis": "Is it confidential?"}
    assert example.gold_label == "No" and example.split == "train" and example.source_file == "clauses.jsonl"
    assert (record.n_records, record.n_added, record.n_skipped) == (12, 12, 0)
    assert record.imported_by == admin_user and record.split == "train" and record.split_seed is None
    assert len(record.source_sha256) == 64


def test_csv_reads_a_header_and_a_field_mapping_given_as_text(tmp_path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text('id,body,outcome\n1,"Charged twice, please help",refund\n2,How do I log in?,routine\n')
    dataset_import(
        task_name="tickets", fmt="csv", path_or_file=path, split="dev",
        field_map=FieldMap.parse("ticket=body", label="outcome", id="id"),
    )
    example = Example.objects.get(gold_label="refund")
    assert example.inputs == {"ticket": "Charged twice, please help"}
    assert example.source_ref == "line 2 · id 1"
    assert Task.objects.get(name="tickets").label_names == ["refund", "routine"]


def test_an_uploaded_file_object_is_read_like_a_path(task) -> None:
    upload = io.BytesIO(b'{"premise": "P", "hypothesis": "H", "label": "Entailment"}\n')
    upload.name = "upload.jsonl"
    record = dataset_import(task_name="nda-demo", fmt="jsonl", path_or_file=upload, split="test")
    assert record.source_name == "upload.jsonl" and record.n_added == 1


def test_importing_the_same_file_twice_adds_nothing_and_keeps_the_first_split(tmp_path) -> None:
    path = _jsonl(tmp_path / "clauses.jsonl", CLAUSES)
    mapping = FieldMap.parse(["premise=clause", "hypothesis=question"], label="gold")
    dataset_import(task_name="clauses", fmt="jsonl", path_or_file=path, split="dev", field_map=mapping)
    again = dataset_import(task_name="clauses", fmt="jsonl", path_or_file=path, split_seed=3, field_map=mapping)
    assert (again.n_added, again.n_skipped) == (0, 12)
    assert set(Example.objects.values_list("split", flat=True)) == {"dev"}
    assert DatasetImport.objects.count() == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "bad.jsonl: the file is empty"),
        ("\n  \n", "bad.jsonl: the file is empty"),
        (
            '{"premise": "P", "hypothesis": "H", "label": "Entailment"}\n{"premise": "P2", "hyp',
            "bad.jsonl, line 2: malformed JSON",
        ),
        ('{"premise": "P", "label": "Entailment"}\n', "bad.jsonl, line 1: missing field 'hypothesis'"),
        ('{"premise": "P", "hypothesis": "H"}\n', "bad.jsonl, line 1: missing label field 'label'"),
        ('{"premise": "P", "hypothesis": "H", "label": "Maybe"}\n', "bad.jsonl, line 1: unknown label 'Maybe'"),
        ('["P", "H", "Entailment"]\n', "bad.jsonl, line 1: expected a JSON object"),
        ('{"premise": ["P"], "hypothesis": "H", "label": "Entailment"}\n', "line 1: not text: field 'premise'"),
        (
            '{"premise": "P", "hypothesis": "H", "label": "Entailment"}\n'
            '{"premise": "Q", "hypothesis": "H", "label": "Entailment"}\n'
            '{"premise": "P", "hypothesis": "H", "label": "Entailment"}\n',
            "bad.jsonl, line 3: duplicate of line 1",
        ),
        (
            '{"premise": "P", "hypothesis": "H", "label": "Entailment"}\n'
            '{"premise": "P", "hypothesis": "H", "label": "Contradiction"}\n',
            "bad.jsonl, line 2: same inputs as line 1 with a different label",
        ),
    ],
    ids=["empty", "blank-lines", "malformed", "missing-field", "missing-label", "unknown-label", "not-an-object",
         "not-text", "duplicate", "conflicting-duplicate"],
)
def test_a_bad_jsonl_file_is_refused_whole_with_its_name_line_and_problem(tmp_path, task, content, expected) -> None:
    # The good first record must not be saved either: the file is refused as a whole.
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValidationError) as caught:
        dataset_import(task_name="nda-demo", fmt="jsonl", path_or_file=path, split="train")
    assert expected in caught.value.messages[0]
    _nothing_saved()


def test_a_refused_file_does_not_create_its_task(tmp_path) -> None:
    path = tmp_path / "new.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "a", "label": "x"}\n')
    with pytest.raises(ValidationError, match="line 3: duplicate of line 1"):
        dataset_import(task_name="brand-new", fmt="jsonl", path_or_file=path, split="train")
    assert not Task.objects.filter(name="brand-new").exists()


def test_a_new_task_needs_two_labels(tmp_path) -> None:
    path = _jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])
    with pytest.raises(ValidationError, match="Cannot create task 'one-label' from one.jsonl"):
        dataset_import(task_name="one-label", fmt="jsonl", path_or_file=path, split="train")


def test_a_csv_row_with_missing_columns_is_refused(tmp_path, task) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("premise,hypothesis,label\nP,H,Entailment\nQ,H\n")
    with pytest.raises(ValidationError, match=r"bad.csv, line 3: the row does not have the header's 3 columns"):
        dataset_import(task_name="nda-demo", fmt="csv", path_or_file=path, split="train")
    _nothing_saved()


def test_a_csv_with_only_a_header_is_refused(tmp_path, task) -> None:
    path = tmp_path / "header.csv"
    path.write_text("premise,hypothesis,label\n")
    with pytest.raises(ValidationError, match="header.csv: the file has a header but no records"):
        dataset_import(task_name="nda-demo", fmt="csv", path_or_file=path, split="train")


def test_a_file_that_is_not_utf8_is_refused(tmp_path, task) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"premise": "caf\u00e9", "hypothesis": "H", "label": "Entailment"}\n'.encode("latin-1"))
    with pytest.raises(ValidationError, match="latin1.jsonl, byte 16: the file is not UTF-8 text"):
        dataset_import(task_name="nda-demo", fmt="jsonl", path_or_file=path, split="train")


def test_a_field_mapping_must_name_fields_the_task_has(tmp_path, task) -> None:
    path = _jsonl(tmp_path / "x.jsonl", [{"premise": "P", "hypothesis": "H", "label": "Entailment"}])
    with pytest.raises(ValidationError, match="names clause, which task nda-demo does not have"):
        dataset_import(
            task_name="nda-demo", fmt="jsonl", path_or_file=path, split="train", field_map=FieldMap.parse(["clause=p"])
        )
    with pytest.raises(ValidationError, match="must look like task_field=column"):
        FieldMap.parse(["premise"])


# --- ContractNLI ------------------------------------------------------------------------------

def _contractnli(path: Path, *, choice: str = "Contradiction", spans: list[int] | None = None) -> Path:
    text = "Recipient may share with employees. Recipient shall not reverse engineer. Governed by Delaware law."
    document = {
        "id": 7,
        "file_name": "nda7.pdf",
        "text": text,
        "spans": [[0, 35], [36, 73], [74, 100]],
        "annotation_sets": [{"annotations": {
            "nda-5": {"choice": "Entailment", "spans": [0]},
            "nda-11": {"choice": choice, "spans": [1] if spans is None else spans},
            "nda-10": {"choice": "NotMentioned", "spans": []},
        }}],
        "document_type": "search-pdf",
        "url": "",
    }
    other = {**document, "id": 8, "text": "Nothing relevant here at all."}
    other["annotation_sets"] = [{"annotations": {
        key: {"choice": "NotMentioned", "spans": []} for key in ("nda-5", "nda-11", "nda-10")
    }}]
    labels = {
        "nda-5": {"short_description": "Employees", "hypothesis": "Receiving Party may share with employees."},
        "nda-10": {"short_description": "Secrecy", "hypothesis": "The agreement is secret."},
        "nda-11": {"short_description": "Reverse", "hypothesis": "Receiving Party shall not reverse engineer."},
    }
    path.write_text(json.dumps({"documents": [document, other], "labels": labels}, indent=2))
    return path


def test_contractnli_gives_one_example_per_document_and_hypothesis_with_evidence_offsets(tmp_path) -> None:
    path = _contractnli(tmp_path / "cnli.json", choice="Entailment")
    record = dataset_import(task_name="cnli", fmt="contractnli", path_or_file=path, split="test")
    task = Task.objects.get(name="cnli")
    assert task.input_fields == ["premise", "hypothesis"] and task.shared_context_field == "premise"
    assert task.label_names == ["Entailment", "Contradiction", "NotMentioned"]
    assert all(label["description"] for label in task.labels)
    assert record.n_added == 6
    example = Example.objects.get(source_ref="document 7 · nda-11")
    assert example.gold_label == "Entailment" and example.group_key == "document-7"
    premise = example.inputs["premise"]
    assert [premise[span["start"]:span["end"]] for span in example.evidence] == [
        "Recipient shall not reverse engineer."
    ]
    assert Example.objects.get(source_ref="document 7 · nda-10").evidence == []
    # Hypotheses come out in their numeric order within a document.
    refs = list(Example.objects.filter(group_key="document-7").order_by("id").values_list("source_ref", flat=True))
    assert refs == ["document 7 · nda-5", "document 7 · nda-10", "document 7 · nda-11"]


def test_contractnli_refuses_an_unknown_choice_naming_the_document_and_hypothesis(tmp_path) -> None:
    path = _contractnli(tmp_path / "cnli.json", choice="Maybe")
    expected = r"cnli.json, document #0 \(id 7\), hypothesis nda-11: unknown label 'Maybe'"
    with pytest.raises(ValidationError, match=expected):
        dataset_import(task_name="cnli", fmt="contractnli", path_or_file=path, split="test")
    assert not Task.objects.filter(name="cnli").exists()


def test_contractnli_refuses_evidence_that_points_past_the_document(tmp_path) -> None:
    path = _contractnli(tmp_path / "cnli.json", spans=[9])
    with pytest.raises(ValidationError, match="hypothesis nda-11: evidence span 9 is not a span of the document"):
        dataset_import(task_name="cnli", fmt="contractnli", path_or_file=path, split="test")


def test_contractnli_refuses_malformed_json_with_its_line_and_a_missing_text(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "documents": [\n    {"id": 1,}\n  ]\n}')
    with pytest.raises(ValidationError, match=r"broken.json, line 3, column \d+: malformed JSON"):
        dataset_import(task_name="cnli", fmt="contractnli", path_or_file=path, split="test")
    path.write_text(json.dumps({"documents": [{"id": 1, "spans": [], "annotation_sets": []}], "labels": {}}))
    with pytest.raises(ValidationError, match=r"document #0 \(id 1\): missing field 'text'"):
        dataset_import(task_name="cnli", fmt="contractnli", path_or_file=path, split="test")


def test_a_known_format_refuses_a_field_mapping(tmp_path) -> None:
    path = _contractnli(tmp_path / "cnli.json")
    with pytest.raises(ValidationError, match="fixes its fields"):
        dataset_import(
            task_name="cnli", fmt="contractnli", path_or_file=path, split="test", field_map=FieldMap.parse("a=b")
        )


# --- StereoSet --------------------------------------------------------------------------------

def _stereoset(path: Path, n_lines: int) -> Path:
    rows = [
        {
            "type": "intersentence", "target": f"group{i}", "bias_type": "race",
            "context": f"People from place {i} live there.",
            "stereotype": f"Stereotyped sentence {i}.", "anti-stereotype": f"Opposite sentence {i}.",
            "unrelated": f"Cats have claws {i}.",
        }
        for i in range(n_lines)
    ]
    return _jsonl(path, rows)


def test_stereoset_gives_one_example_per_sentence_grouped_by_context(tmp_path) -> None:
    path = _stereoset(tmp_path / "stereo.jsonl", 4)
    dataset_import(task_name="stereo", fmt="stereoset", path_or_file=path, split="dev")
    task = Task.objects.get(name="stereo")
    assert task.input_fields == ["context", "sentence"]
    assert task.label_names == ["stereotype", "anti-stereotype", "unrelated"]
    line_two = Example.objects.filter(source_ref="line 2")
    assert sorted(e.gold_label for e in line_two) == ["anti-stereotype", "stereotype", "unrelated"]
    assert len({e.group_key for e in line_two}) == 1
    assert {e.inputs["context"] for e in line_two} == {"People from place 1 live there."}


def test_stereoset_examples_carry_no_positional_hint_of_their_label(tmp_path) -> None:
    path = _stereoset(tmp_path / "stereo.jsonl", 30)
    dataset_import(task_name="stereo", fmt="stereoset", path_or_file=path, split="dev")
    positions: dict[str, Counter] = {label: Counter() for label in ("stereotype", "anti-stereotype", "unrelated")}
    for ref in {f"line {n}" for n in range(1, 31)}:
        rows = list(Example.objects.filter(source_ref=ref).order_by("id"))
        for position, example in enumerate(rows):
            positions[example.gold_label][position] += 1
    # In the file the stereotype is always first; after import each label turns up in every position.
    for label, counts in positions.items():
        assert set(counts) == {0, 1, 2}, (label, counts)
    refs = Example.objects.values_list("source_ref", flat=True)
    assert not any("stereotype" in ref or "unrelated" in ref for ref in refs)


def test_stereoset_keeps_a_sentence_repeated_in_two_items(tmp_path) -> None:
    row = {"type": "intrasentence", "target": "chess player", "bias_type": "profession",
           "context": "The chess player was BLANK.", "stereotype": "The chess player was asian.",
           "anti-stereotype": "The chess player was hispanic.", "unrelated": "The chess player was fox."}
    path = _jsonl(tmp_path / "stereo.jsonl", [row, {**row, "anti-stereotype": "The chess player was latino.",
                                                    "unrelated": "The chess player was leaf."}])
    record = dataset_import(task_name="stereo", fmt="stereoset", path_or_file=path, split="dev")
    assert record.n_added == 6


def test_stereoset_refuses_a_line_without_one_of_its_sentences(tmp_path) -> None:
    path = _jsonl(tmp_path / "stereo.jsonl", [{"context": "C", "stereotype": "S", "anti-stereotype": "A"}])
    with pytest.raises(ValidationError, match="stereo.jsonl, line 1: missing field 'unrelated'"):
        dataset_import(task_name="stereo", fmt="stereoset", path_or_file=path, split="dev")


# --- LogiQA 2.0 -------------------------------------------------------------------------------

def test_logiqa2_lays_out_passage_question_and_lettered_options_with_the_answer_letter(tmp_path) -> None:
    rows = [
        {"id": 10 + i, "answer": i % 4, "text": f"Passage {i}.", "question": "Which follows?",
         "options": [" first", "second", "third", "fourth"], "type": {"Categorical Reasoning": True}}
        for i in range(8)
    ]
    path = _jsonl(tmp_path / "logiqa.txt", rows)
    dataset_import(task_name="logic", fmt="logiqa2", path_or_file=path, split="test")
    task = Task.objects.get(name="logic")
    assert task.input_fields == ["context", "question", "options"] and task.label_names == ["A", "B", "C", "D"]
    example = Example.objects.get(source_ref="line 3 · id 12")
    assert example.gold_label == "C"
    assert example.inputs["options"] == "A. first\nB. second\nC. third\nD. fourth"


def test_logiqa2_refuses_an_answer_outside_the_options(tmp_path) -> None:
    row = {"id": 1, "answer": 4, "text": "P", "question": "Q", "options": ["a", "b", "c", "d"]}
    path = _jsonl(tmp_path / "logiqa.txt", [row])
    with pytest.raises(ValidationError, match="logiqa.txt, line 1: unknown label: answer index 4"):
        dataset_import(task_name="logic", fmt="logiqa2", path_or_file=path, split="test")


def test_an_existing_task_refuses_a_file_whose_fields_do_not_match(tmp_path, task) -> None:
    path = _stereoset(tmp_path / "stereo.jsonl", 1)
    with pytest.raises(ValidationError, match="do not match task nda-demo's input fields"):
        dataset_import(task_name="nda-demo", fmt="stereoset", path_or_file=path, split="dev")


# --- the fixtures -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("definition", "examples", "n_examples"),
    [("nda_demo.task.json", "nda_demo.jsonl", 90), ("escalation.task.json", "escalation.jsonl", 72)],
)
def test_the_fixture_tasks_import_balanced(definition, examples, n_examples) -> None:
    task = task_define(definition=json.loads((FIXTURES_DIR / definition).read_text()))
    path = FIXTURES_DIR / examples
    mapping = FieldMap(id="id")
    record = dataset_import(task_name=task.name, fmt="jsonl", path_or_file=path, split_seed=0, field_map=mapping)
    assert record.n_added == n_examples
    counts = Counter(Example.objects.filter(task=task).values_list("gold_label", flat=True))
    assert set(counts) == set(task.label_names)
    assert len(set(counts.values())) == 1, counts
    assert all(label["description"] for label in task.labels)
