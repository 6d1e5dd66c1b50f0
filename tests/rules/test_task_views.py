"""Task list, task page (distribution per split, examples), example page (evidence) and the import form."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from rules.datasets.dataset_import import dataset_import
from rules.datasets.parsers import FORMATS
from rules.forms import FORMAT_CHOICES, DatasetImportForm
from rules.models import DatasetImport, Example, Task
from tests.support.factories import ExampleFactory

pytestmark = pytest.mark.django_db


def _example(task: Task, n: int, *, label: str = "Entailment", split: str = "train", **kwargs) -> Example:
    inputs = kwargs.pop("inputs", {"premise": f"Clause {n}.", "hypothesis": "Staff may see it."})
    return ExampleFactory(task=task, inputs=inputs, gold_label=label, split=split, source_ref=f"line {n}", **kwargs)


def test_the_task_list_shows_each_task_with_its_example_count(client, reviewer, task, django_assert_max_num_queries):
    _example(task, 1)
    _example(task, 2)
    client.force_login(reviewer)
    with django_assert_max_num_queries(8):
        response = client.get("/tasks/")
    assert response.status_code == 200
    assert b"NDA clauses" in response.content and b"<td class=\"num\">2</td>" in response.content
    assert b"Import a dataset" not in response.content  # reviewers do not import


def test_the_task_page_shows_the_label_distribution_per_split(client, auditor, task, django_assert_max_num_queries):
    for n, (label, split) in enumerate([("Entailment", "train")] * 3 + [("Contradiction", "dev"),
                                                                       ("NotMentioned", "test")]):
        _example(task, n, label=label, split=split)
    client.force_login(auditor)
    # 13: one of them reads whether the task's serving is stopped (its red banner), whatever the task holds.
    with django_assert_max_num_queries(13):
        response = client.get("/tasks/nda-demo/")
    assert response.status_code == 200
    distribution = response.context["distribution"]
    assert [(row["label"], row["cells"], row["total"]) for row in distribution["rows"]] == [
        # train, dev, test, feedback (production decisions marked wrong)
        ("Entailment", [3, 0, 0, 0], 3),
        ("Contradiction", [0, 1, 0, 0], 1),
        ("NotMentioned", [0, 0, 1, 0], 1),
    ]
    assert distribution["totals"] == [3, 1, 1, 0]
    assert b"The clause says the opposite." in response.content  # label descriptions are shown


def test_the_examples_filter_by_split_and_label_and_link_to_each_example(client, reviewer, task) -> None:
    first = _example(task, 1, label="Entailment", split="train")
    _example(task, 2, label="Contradiction", split="train")
    _example(task, 3, label="Entailment", split="dev")
    client.force_login(reviewer)
    response = client.get("/tasks/nda-demo/?split=train&label=Entailment")
    assert [row["example"].pk for row in response.context["rows"]] == [first.pk]
    assert f'href="/examples/{first.pk}/"'.encode() in response.content


def test_the_examples_filter_answers_htmx_with_the_table_alone(client, reviewer, task) -> None:
    _example(task, 1, split="dev")
    client.force_login(reviewer)
    response = client.get("/tasks/nda-demo/?split=dev", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b'id="example-table"' in response.content
    assert b"<html" not in response.content and b"site-header" not in response.content


def test_a_long_example_list_is_paginated(client, reviewer, task) -> None:
    for n in range(55):
        _example(task, n)
    client.force_login(reviewer)
    response = client.get("/tasks/nda-demo/?page=2")
    assert len(response.context["rows"]) == 5 and b"Previous" in response.content


def test_an_unknown_task_is_404(client, reviewer) -> None:
    client.force_login(reviewer)
    assert client.get("/tasks/nope/").status_code == 404


def test_the_example_page_marks_contractnli_evidence_in_the_premise(client, reviewer) -> None:
    task = Task.objects.create(
        name="cnli", labels=[{"name": "Entailment"}, {"name": "NotMentioned"}],
        input_fields=["premise", "hypothesis"], shared_context_field="premise",
    )
    premise = "Intro <b>text</b>. Staff may see it. Governing law."
    start = premise.index("Staff")
    example = _example(task, 1, inputs={"premise": premise, "hypothesis": "Employees may see it."},
                       evidence=[{"start": start, "end": start + len("Staff may see it.")}], group_key="document-1")
    sibling = _example(task, 2, label="NotMentioned", inputs={"premise": premise, "hypothesis": "Reverse engineering."},
                       group_key="document-1")
    client.force_login(reviewer)
    response = client.get(f"/examples/{example.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<mark>Staff may see it.</mark>" in body
    assert "Intro &lt;b&gt;text&lt;/b&gt;." in body  # the document text is escaped around the marks
    assert "Employees may see it." in body
    assert f'href="/examples/{sibling.pk}/"' in body  # the other hypotheses on the same document


def test_the_example_page_needs_view_example(client, outsider, task) -> None:
    example = _example(task, 1)
    client.force_login(outsider)
    assert client.get(f"/examples/{example.pk}/").status_code == 403


def test_the_import_form_offers_every_format() -> None:
    assert [code for code, _ in FORMAT_CHOICES] == list(FORMATS)
    assert DatasetImportForm().fields["fmt"].choices == FORMAT_CHOICES


def test_an_admin_imports_a_file_with_a_field_mapping_from_the_form(client, admin_user) -> None:
    rows = [{"clause": f"Clause {i}.", "question": "Staff?", "gold": ["Yes", "No"][i % 2]} for i in range(10)]
    upload = SimpleUploadedFile("clauses.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    client.force_login(admin_user)
    response = client.post("/datasets/import/", {
        "task": "clauses", "fmt": "jsonl", "file": upload, "split": "", "split_seed": "3",
        "fields": "premise=clause\nhypothesis=question", "label_field": "gold",
    }, follow=True)
    assert response.redirect_chain[-1][0] == "/tasks/clauses/"
    assert b"Imported clauses.jsonl: 10 records, 10 added" in response.content
    record = DatasetImport.objects.get()
    assert record.imported_by == admin_user and record.split_seed == 3 and record.split == ""
    assert Example.objects.filter(task__name="clauses").count() == 10
    assert set(Example.objects.values_list("inputs__premise", flat=True)) == {f"Clause {i}." for i in range(10)}


def test_a_refused_upload_comes_back_as_a_form_error_and_saves_nothing(client, admin_user, task) -> None:
    upload = SimpleUploadedFile("bad.jsonl", b'{"premise": "P", "hypothesis": "H", "label": "Entailment"}\n{oops\n')
    client.force_login(admin_user)
    response = client.post("/datasets/import/", {"task": "nda-demo", "fmt": "jsonl", "file": upload,
                                                 "split": "train", "label_field": "label"})
    assert response.status_code == 200
    assert b"The file was refused" in response.content and b"bad.jsonl, line 2: malformed JSON" in response.content
    assert Example.objects.count() == 0 and DatasetImport.objects.count() == 0


def test_a_known_format_refuses_a_field_mapping_in_the_form(client, admin_user) -> None:
    upload = SimpleUploadedFile("x.json", b"{}")
    client.force_login(admin_user)
    response = client.post("/datasets/import/", {"task": "cnli", "fmt": "contractnli", "file": upload,
                                                 "fields": "premise=text", "split": "test"})
    assert response.status_code == 200
    assert response.context["form"].errors["fields"] == ["This format fixes its fields; leave the mapping empty."]


def test_reviewers_and_auditors_cannot_import(client, reviewer, auditor) -> None:
    for user in (reviewer, auditor):
        client.force_login(user)
        assert client.get("/datasets/import/").status_code == 403
        assert client.post("/datasets/import/", {}).status_code == 403


def test_the_import_form_prefills_the_task_from_the_task_page(client, admin_user, task) -> None:
    client.force_login(admin_user)
    page = client.get("/tasks/nda-demo/")
    assert b'href="/datasets/import/?task=nda-demo"' in page.content
    form = client.get("/datasets/import/?task=nda-demo")
    assert b'value="nda-demo"' in form.content and b'<option value="nda-demo">' in form.content


def test_the_fixture_task_pages_render_after_a_real_import(client, reviewer, tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"context": "C.", "stereotype": "S.", "anti-stereotype": "A.", "unrelated": "U."}))
    dataset_import(task_name="stereo", fmt="stereoset", path_or_file=path, split="dev")
    client.force_login(reviewer)
    assert client.get("/tasks/stereo/").status_code == 200
    example = Example.objects.first()
    assert client.get(f"/examples/{example.pk}/").status_code == 200


def test_the_example_list_previews_the_own_fields_not_the_shared_document(client, reviewer) -> None:
    task = Task.objects.create(
        name="cnli", labels=[{"name": "Entailment"}, {"name": "NotMentioned"}],
        input_fields=["premise", "hypothesis"], shared_context_field="premise",
    )
    _example(task, 1, inputs={"premise": "A very long contract " * 50, "hypothesis": "Staff may see it."})
    client.force_login(reviewer)
    response = client.get("/tasks/cnli/")
    assert [row["preview"] for row in response.context["rows"]] == ["Staff may see it."]
    assert b"A very long contract" not in response.content
