"""The technical file (Annex IV): generated from the record, signed, its JSON valid against the committed schema."""
from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import jsonschema_rs
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command

from evaluation.models import ProviderInformation, TechnicalFile
from evaluation.release.pdf_signing import pdf_signature_validate
from evaluation.release.technical_file import provider_information_save
from pldreview.models import LedgerEntry
from rules.models import Example, Task
from tests.support.factories import ExampleFactory
from tests.support.reports import OVERRIDE, build_report_story, pdf_text

SCHEMA = Path(django_settings.BASE_DIR) / "docs" / "schemas" / "technical_file.schema.json"
# A dump of stored values: a Python literal, a dict or a JSON key.
RAW_DUMP = re.compile(r"\b(True|False|None)\b|\{'|': |\"\w+\": ")


@pytest.fixture
def exported(pdf_signing: Path, task: Task, reviewer: User, second_reviewer: User, admin_user: User,
             tmp_path: Path) -> tuple[bytes, dict, str]:
    """Return the PDF, the JSON and the command's output of the demo-like task's technical file."""
    build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)
    for n, split in enumerate(["train", "train", "test"]):
        ExampleFactory(task=task, split=split, gold_label="Entailment", inputs={"premise": f"Clause {n}"})
    provider_information_save(task=task, user=admin_user, values={
        "provider_name": "Example Compliance GmbH", "intended_purpose": "Triage NDA clauses for a lawyer's review",
    })
    out = io.StringIO()
    call_command("export_technical_file", task.name, "--out", str(tmp_path / "tf.pdf"), "--json",
                 str(tmp_path / "tf.json"), "--user", admin_user.username, stdout=out)
    return (tmp_path / "tf.pdf").read_bytes(), json.loads((tmp_path / "tf.json").read_text()), out.getvalue()


@pytest.mark.slow
def test_the_technical_file_is_signed_its_json_valid_and_every_figure_from_the_record(exported, task) -> None:
    pdf, data, output = exported
    record = TechnicalFile.objects.get()

    check = pdf_signature_validate(pdf)
    assert check.valid and check.unmodified and record.sha256 in output
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    validator.validate(data)
    # The schema is not a rubber stamp: a made-up verdict or a missing section is refused.
    claimed = copy.deepcopy(data)
    claimed["sections"]["risk"]["gate_conditions"]["verdict"] = "probably fine"
    missing = copy.deepcopy(data)
    del missing["sections"]["standards"]
    assert not validator.is_valid(claimed) and not validator.is_valid(missing)
    text = pdf_text(pdf)
    assert record.json_sha256 in text.replace(" ", "")  # the signature covers the JSON through its hash
    # The ledger head it states is the one before its own issue entry.
    issued = LedgerEntry.objects.get(event="technical_file.issued")
    assert data["ledger_head"]["sequence"] == issued.sequence - 1 == record.ledger_sequence
    assert data["ledger_head"]["hash"] == LedgerEntry.objects.get(sequence=issued.sequence - 1).hash
    sections = data["sections"]
    splits = {s["split"]: s["examples"] for s in sections["development"]["datasets"]["splits"]}
    assert splits == {"Train": Example.objects.filter(task=task, split="train").count(),
                      "Test": Example.objects.filter(task=task, split="test").count()}
    assert data["production_version"] == 1
    assert [r["label"] for r in sections["development"]["rules"]] == ["Entailment", "NotMentioned"]
    assert any("Approved by" in d["signature"] for r in sections["development"]["rules"] for d in r["decisions"])
    assert sections["risk"]["overrides"][0]["justification"] == OVERRIDE
    assert sections["performance"]["runs"][0]["macro_f1"] == pytest.approx(0.8123)
    assert sections["performance"]["rule_impact"] is None and "Not measured" in text
    assert sections["risk"]["stops"] == [] and "No stops recorded." in text
    assert any(row["clause"] == "§11.50" for row in sections["standards"]["part11"])
    assert sections["standards"]["asvs"]
    measures = {m["measure"]: m["configured"] for m in sections["oversight"]["measures"]}
    assert "PLD_REQUIRED_APPROVALS=1" in measures["Four eyes on rules"]
    # What the provider stated is used; what they left blank is listed to write, never invented.
    assert "Example Compliance GmbH" in text
    assert "Annex IV 1: Contact point" in data["to_be_written_by_organisation"]
    assert "Annex IV 1: Provider (legal entity)" not in data["to_be_written_by_organisation"]
    dump = RAW_DUMP.search(text)
    assert dump is None, text[max(0, dump.start() - 80):dump.end() + 40]


def test_the_page_is_for_admins_and_auditors_and_only_admins_state_the_provider(
    client, task, reviewer, auditor, admin_user
) -> None:
    client.force_login(reviewer)
    assert client.get(f"/tasks/{task.name}/technical-file/").status_code == 403
    assert client.post(f"/tasks/{task.name}/technical-file/generate/").status_code == 403

    assert "Technical file (Annex IV)" not in client.get(f"/tasks/{task.name}/").content.decode()
    client.force_login(auditor)
    assert f'href="/tasks/{task.name}/technical-file/"' in client.get(f"/tasks/{task.name}/").content.decode()
    page = client.get(f"/tasks/{task.name}/technical-file/")
    assert page.status_code == 200 and "Generate a signed technical file" in page.content.decode()
    assert client.post(f"/tasks/{task.name}/technical-file/provider/",
                       {"provider_name": "Mallory Ltd"}).status_code == 403
    assert not ProviderInformation.objects.exists()

    client.force_login(admin_user)
    response = client.post(f"/tasks/{task.name}/technical-file/provider/", {"provider_name": "Example GmbH"})
    assert response.status_code == 302
    assert ProviderInformation.objects.get(task=task).provider_name == "Example GmbH"
    assert LedgerEntry.objects.filter(event="providerinformation.created", object_id=str(task.provider_information.pk))


@pytest.mark.slow
def test_an_auditor_generates_one_on_the_page_and_downloads_pdf_and_json(pdf_signing, client, task, auditor) -> None:
    client.force_login(auditor)
    response = client.post(f"/tasks/{task.name}/technical-file/generate/")
    assert response.status_code == 302
    record = TechnicalFile.objects.get(task=task)
    pdf = b"".join(client.get(f"/technical-files/{record.pk}/technical-file.pdf").streaming_content)
    raw = b"".join(client.get(f"/technical-files/{record.pk}/technical-file.json").streaming_content)
    assert pdf_signature_validate(pdf).valid
    assert json.loads(raw)["production_version"] is None  # never promoted: it says so
    assert "No production version, so no rules in service." in pdf_text(pdf)
