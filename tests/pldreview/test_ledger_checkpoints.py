"""Signed checkpoints of the ledger head: a cut tail (head moved back) and a cut export are found with them."""
from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from django.core.management import call_command
from django.test import Client

from pldreview.checkpoints import CheckpointError, checkpoint_path, ledger_checkpoint_create, ledger_checkpoint_read
from pldreview.ledger import chain_hash, ledger_append
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerCheckpoint, LedgerEntry, LedgerHead
from tests.pldreview.ledgerkit import audited_world, raw, side_door, stdlib_verify
from tests.pldreview.ledgerkit import verify_command as verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(task, reviewer, second_reviewer, admin_user, auditor, pdf_signing):  # noqa: ANN001, ANN201
    made = audited_world(task, reviewer, second_reviewer, admin_user, auditor)
    # Entries that vouch for no row: a cut that removes only these leaves every row matching its entry.
    for i in range(3):
        ledger_append(event="security.login", actor=auditor, facts={"i": i})
    return made



def _cut_tail(keep: int) -> None:
    """Remove every entry after ``keep`` and move the head back to it, as a database writer can."""
    with side_door("pldreview_ledgerentry"):
        raw("DELETE FROM pldreview_ledgerentry WHERE sequence > %s", [keep])
    kept = LedgerEntry.objects.get(sequence=keep)
    raw("UPDATE pldreview_ledgerhead SET sequence = %s, hash = %s WHERE id = 1", [keep, kept.hash])


def test_a_checkpoint_signs_the_head_and_is_itself_on_the_ledger(world, auditor) -> None:  # noqa: ANN001
    head = LedgerHead.objects.get()
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Weekly")
    assert (checkpoint.sequence, checkpoint.hash) == (head.sequence, head.hash)
    entry = LedgerEntry.objects.get(sequence=head.sequence + 1)
    assert (entry.event, entry.object_id) == ("ledger.checkpoint", str(checkpoint.pk))
    statement = ledger_checkpoint_read(checkpoint_path(checkpoint).read_bytes())
    assert (statement.sequence, statement.hash) == (head.sequence, head.hash)
    code, out = verify()
    assert code == 0 and "1 signed checkpoints" in out, out


def test_a_cut_tail_with_the_head_moved_back_is_found_by_the_stored_checkpoint(world, auditor) -> None:  # noqa: ANN001
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Weekly")
    _cut_tail(checkpoint.sequence - 2)
    verdict = ledger_verify(check_rows=False)
    assert verdict.ok is False
    assert any(p.kind == "checkpoint" and p.sequence == checkpoint.sequence and "removed from the ledger's tail"
               in p.detail for p in verdict.problems)


def test_a_cut_tail_that_took_the_checkpoint_row_too_is_found_by_the_auditors_file(world, auditor, tmp_path) -> None:  # noqa: ANN001
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Weekly")
    kept = tmp_path / "checkpoint.pdf"
    shutil.copy(checkpoint_path(checkpoint), kept)
    _cut_tail(checkpoint.sequence - 2)
    with side_door("pldreview_ledgercheckpoint"):
        raw("DELETE FROM pldreview_ledgercheckpoint")
    # Inside the database everything now agrees: the chain, the head, every row.
    assert verify()[0] == 0
    code, out = verify("--checkpoint", str(kept))
    assert code == 1
    assert f"BROKEN at sequence {checkpoint.sequence} (checkpoint): checkpoint file checkpoint.pdf" in out
    assert f"ends at #{checkpoint.sequence - 2}" in out


def test_a_rewritten_and_rehashed_ledger_is_found_by_the_checkpoint(world, auditor) -> None:  # noqa: ANN001
    # Entry 3 rewritten and every hash after it recomputed, head included: the chain holds, the checkpoint not.
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Weekly")
    entries = list(LedgerEntry.objects.order_by("sequence"))
    prev = entries[1].hash
    with side_door("pldreview_ledgerentry"):
        for entry in entries[2:]:
            payload = entry.payload.replace('"reason":"', '"reason":"rewritten ', 1) if entry.sequence == 3 else (
                entry.payload)
            prev, old = chain_hash(prev, payload), prev
            raw("UPDATE pldreview_ledgerentry SET payload = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [payload, old, prev, entry.pk])
        raw("UPDATE pldreview_ledgerhead SET hash = %s", [prev])
    verdict = ledger_verify(check_rows=False)
    assert [(p.kind, p.sequence) for p in verdict.problems] == [("checkpoint", checkpoint.sequence)]
    assert "rewritten after the checkpoint" in verdict.problems[0].detail


def test_a_changed_or_foreign_checkpoint_file_is_refused(world, auditor, tmp_path) -> None:  # noqa: ANN001
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Weekly")
    data = bytearray(checkpoint_path(checkpoint).read_bytes())
    data[-40:-30] = b"0000000000"
    with pytest.raises(CheckpointError):
        ledger_checkpoint_read(bytes(data))
    bad = tmp_path / "changed.pdf"
    bad.write_bytes(bytes(data))
    assert verify("--checkpoint", str(bad))[0] == 2


def test_no_checkpoint_is_signed_over_a_broken_ledger(world, auditor) -> None:  # noqa: ANN001
    victim = LedgerEntry.objects.order_by("sequence")[3]
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET payload = payload || ' ' WHERE id = %s", [victim.pk])
    with pytest.raises(CheckpointError, match="broken"):
        ledger_checkpoint_create(user=auditor, reason="Weekly")
    assert not LedgerCheckpoint.objects.exists()


def test_an_export_cut_before_the_checkpoint_fails_the_standard_library_verifier(world, auditor, tmp_path) -> None:  # noqa: ANN001
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Weekly")
    full = tmp_path / "ledger.jsonl"
    call_command("export_ledger", "--out", str(full), stdout=io.StringIO())
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(full.read_text().splitlines(keepends=True)[: checkpoint.sequence - 2]))
    assert stdlib_verify(cut)[0] == 0  # a prefix of a chain is a chain: alone, the verifier cannot tell
    pair = ["--checkpoint-sequence", str(checkpoint.sequence), "--checkpoint-hash", checkpoint.hash]
    code, result = stdlib_verify(cut, *pair)
    assert code == 1 and result["broken_sequence"] == checkpoint.sequence and "tail was cut" in result["detail"]
    code, result = stdlib_verify(full, *pair)
    assert code == 0 and result["checkpoints"] == 1
    code, result = stdlib_verify(full, "--checkpoint-sequence", str(checkpoint.sequence), "--checkpoint-hash", "a" * 64)
    assert code == 1 and result["broken_sequence"] == checkpoint.sequence


def test_the_command_signs_when_the_head_moved_and_not_otherwise(world) -> None:  # noqa: ANN001
    out = io.StringIO()
    call_command("ledger_checkpoint", stdout=out)
    assert "Checkpoint" in out.getvalue() and LedgerCheckpoint.objects.count() == 1
    out = io.StringIO()
    call_command("ledger_checkpoint", stdout=out)
    assert "none made" in out.getvalue() and LedgerCheckpoint.objects.count() == 1
    assert LedgerCheckpoint.objects.get().created_by is None


def test_auditors_sign_list_and_download_checkpoints_on_the_ledger_page(world, auditor, reviewer) -> None:  # noqa: ANN001
    client = Client()
    client.force_login(auditor)
    response = client.post("/ledger/checkpoints/", follow=True)
    assert response.status_code == 200 and "signed" in response.content.decode()
    checkpoint = LedgerCheckpoint.objects.get()
    assert checkpoint.created_by == auditor
    page = client.get("/ledger/").content.decode()
    url = f"/ledger/checkpoints/{checkpoint.pk}/download/"
    assert url in page and f"#{checkpoint.sequence}" in page
    download = client.get(url)
    body = b"".join(download.streaming_content)
    assert download.status_code == 200 and body == checkpoint_path(checkpoint).read_bytes()
    other = Client()
    other.force_login(reviewer)
    assert other.post("/ledger/checkpoints/").status_code == 403
    assert other.get(url).status_code == 403
    assert LedgerCheckpoint.objects.count() == 1


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="poppler-utils (pdfsig) is not installed")
def test_pdfsig_validates_a_checkpoint_without_this_application(world, auditor) -> None:  # noqa: ANN001
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Weekly")
    done = subprocess.run(["pdfsig", str(checkpoint_path(checkpoint))], capture_output=True, text=True, check=False)
    assert "Signature is Valid" in done.stdout and "Total document signed" in done.stdout
    text = subprocess.run(["pdftotext", str(checkpoint_path(checkpoint)), "-"], capture_output=True, text=True,
                          check=False).stdout
    assert checkpoint.hash in text.replace("\n", "").replace(" ", "")
