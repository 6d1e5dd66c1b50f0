"""A signed report states the ledger head; verify_report --ledger catches a ledger rewritten after signing."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.models import Report
from evaluation.release.reports import report_generate, report_path
from pldreview.ledger import chain_hash
from pldreview.models import LedgerEntry, LedgerHead
from tests.pldreview.ledgerkit import audited_world, raw, side_door, stdlib_verify
from tests.support.reports import pdf_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(pdf_signing: Path, tmp_path: Path, task, reviewer, second_reviewer, admin_user, auditor):  # noqa: ANN201
    world = audited_world(task, reviewer, second_reviewer, admin_user, auditor)
    report = report_generate(prompt_version=world.version, user=auditor)
    assert report.status == Report.Status.READY, report.error
    # The head when it was signed: the entry just before its report.issued entry.
    signed_at = LedgerEntry.objects.get(event="report.issued", object_id=str(report.pk)).sequence
    head = LedgerEntry.objects.get(sequence=signed_at - 1)
    assert LedgerHead.objects.get().sequence == signed_at
    path = tmp_path / "report.pdf"
    path.write_bytes(report_path(report).read_bytes())
    return report, path, head


def _verify(path: Path) -> str:
    out = io.StringIO()
    call_command("verify_report", str(path), "--ledger", stdout=out)
    return out.getvalue()


def test_the_report_states_the_head_at_signing_and_keeps_it_on_its_record(signed) -> None:  # noqa: ANN001
    report, path, head = signed
    assert (report.ledger_sequence, report.ledger_hash) == (head.sequence, head.hash)
    text = pdf_text(path.read_bytes())
    assert f"Entry #{head.sequence}" in text and head.hash[:32] in text.replace(" ", "")
    signed_entry = LedgerEntry.objects.get(event="report.issued", object_id=str(report.pk))
    facts = json.loads(signed_entry.payload)["facts"]
    assert facts["sha256"] == report.sha256 and facts["ledger_sequence"] == head.sequence
    assert "still has hash" in _verify(path)


def test_the_stdlib_verifier_agrees_with_the_report_on_an_export(signed, tmp_path: Path) -> None:  # noqa: ANN001
    report, path, head = signed
    export = tmp_path / "ledger.jsonl"
    call_command("export_ledger", "--out", str(export), stdout=io.StringIO())
    assert stdlib_verify(export)[0] == 0
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert lines[head.sequence - 1]["hash"] == report.ledger_hash
    victim = LedgerEntry.objects.get(sequence=3)
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET payload = %s WHERE id = %s",
            [victim.payload.replace('"event":', '"note":"x","event":', 1), victim.pk])
    call_command("export_ledger", "--out", str(export), stdout=io.StringIO())
    code, result = stdlib_verify(export)
    assert code == 1 and result["broken_sequence"] == 3
    with pytest.raises(CommandError, match="entry #3"):
        _verify(path)


def test_an_edited_earlier_entry_is_caught_by_the_older_report(signed) -> None:  # noqa: ANN001
    report, path, head = signed
    victim = LedgerEntry.objects.get(sequence=3)
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET payload = %s WHERE id = %s",
            [victim.payload.replace('"event":', '"note":"x","event":', 1), victim.pk])
    with pytest.raises(CommandError, match="ledger was changed after this report was signed: entry #3"):
        _verify(path)


def test_a_rewritten_and_rehashed_ledger_is_caught_by_the_older_report(signed) -> None:  # noqa: ANN001
    # A determined insider rewrites entry 3 and recomputes every hash after it, head included:
    # the chain is internally consistent again, but no longer ends where the report says.
    report, path, head = signed
    entries = list(LedgerEntry.objects.order_by("sequence"))
    prev = entries[1].hash
    with side_door("pldreview_ledgerentry"):
        for entry in entries[2:]:
            payload = entry.payload.replace('"reason":"', '"reason":"rewritten ', 1) if entry.sequence == 3 else (
                entry.payload)
            new_hash = chain_hash(prev, payload)
            raw("UPDATE pldreview_ledgerentry SET payload = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [payload, prev, new_hash, entry.pk])
            prev = new_hash
        raw("UPDATE pldreview_ledgerhead SET hash = %s", [prev])
    with pytest.raises(CommandError, match=f"entry #{head.sequence} now hashes to"):
        _verify(path)


def test_verify_ledger_holds_the_ledger_to_the_head_every_issued_report_was_signed_at(signed) -> None:  # noqa: ANN001
    from pldreview.ledger_verify import ledger_verify

    report, _path, head = signed
    assert ledger_verify().ok
    keep = head.sequence - 2
    with side_door("pldreview_ledgerentry"):
        raw("DELETE FROM pldreview_ledgerentry WHERE sequence > %s", [keep])
    raw("UPDATE pldreview_ledgerhead SET sequence = %s, hash = %s",
        [keep, LedgerEntry.objects.get(sequence=keep).hash])
    found = [p for p in ledger_verify(check_rows=False).problems if p.kind == "checkpoint"]
    assert [(p.sequence, f"signed report {report.pk}" in p.detail) for p in found] == [(head.sequence, True)]
