"""Incremental verification from the last signed checkpoint: only new entries are re-hashed, nothing is missed."""
from __future__ import annotations

import json

import pytest
from django.db import connection

from pldreview.checkpoints import ledger_checkpoint_create
from pldreview.db_triggers import PERMIT_TABLE
from pldreview.ledger import chain_hash, ledger_append
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry
from tests.pldreview.ledgerkit import audited_world, raw, side_door
from tests.pldreview.ledgerkit import verify_command as verify
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_rejection

pytestmark = pytest.mark.django_db


@pytest.fixture
def checkpointed(task, reviewer, second_reviewer, admin_user, auditor, pdf_signing):  # noqa: ANN001, ANN201
    world = audited_world(task, reviewer, second_reviewer, admin_user, auditor)
    # A signature no decision holds, so a test can delete its row alone.
    world.loose_signature = sign_rejection(reviewer, teacher_rule(task, text="If it rains, then NotMentioned",
                                                                  label="NotMentioned"))
    checkpoint = ledger_checkpoint_create(user=auditor, reason="Hourly")
    for i in range(5):
        ledger_append(event="security.login", actor=auditor, facts={"i": i})
    return world, checkpoint


def test_it_rehashes_only_the_entries_after_the_last_checkpoint(checkpointed) -> None:  # noqa: ANN001
    _world, checkpoint = checkpointed
    head = LedgerEntry.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    verdict = ledger_verify(since_checkpoint=True)
    assert verdict.ok, verdict.message
    assert verdict.incremental_from == checkpoint.sequence + 1
    assert verdict.entries_checked == head - checkpoint.sequence < 10 < checkpoint.sequence
    assert verdict.rows_checked == ledger_verify().rows_checked > 0
    code, out = verify("--since-checkpoint")
    assert code == 0 and f"from entry #{checkpoint.sequence + 1}" in out, out


def test_it_still_finds_a_row_changed_before_the_checkpoint(checkpointed, admin_user) -> None:  # noqa: ANN001
    world, _checkpoint = checkpointed
    with side_door("rules_decision"):
        raw("UPDATE rules_decision SET reviewer_id = %s WHERE id = %s", [admin_user.pk, world.decision.pk])
    verdict = ledger_verify(since_checkpoint=True)
    assert [(p.kind, p.object_type, p.object_id) for p in verdict.problems] == [
        ("row", "rules.decision", str(world.decision.pk))]


def test_it_still_finds_a_deleted_signature_and_a_permit_opened_outside_the_purge(checkpointed) -> None:  # noqa: ANN001
    world, _checkpoint = checkpointed
    raw(f"INSERT INTO {PERMIT_TABLE} (reason) VALUES ('x')")
    if connection.vendor == "postgresql":
        # The tables' owner lifts the append-only trigger, deletes, and puts it back.
        raw("SET CONSTRAINTS ALL IMMEDIATE")
        raw("ALTER TABLE pldreview_signature DISABLE TRIGGER pld_signature_append_only")
        raw("DELETE FROM pldreview_signature WHERE id = %s", [world.loose_signature.pk])
        raw("ALTER TABLE pldreview_signature ENABLE TRIGGER pld_signature_append_only")
    else:
        with side_door("pldreview_signature"):
            raw("DELETE FROM pldreview_signature WHERE id = %s", [world.loose_signature.pk])
    kinds = {(p.kind, p.object_type) for p in ledger_verify(since_checkpoint=True).problems}
    assert ("missing", "pldreview.signature") in kinds and ("permit", PERMIT_TABLE) in kinds


def test_a_snapshot_it_relies_on_cannot_be_edited_before_the_checkpoint(checkpointed, admin_user) -> None:  # noqa: ANN001
    # The row and its latest snapshot rewritten together, the hash left alone: the entry no longer hashes.
    world, checkpoint = checkpointed
    entry = LedgerEntry.objects.filter(object_type="rules.decision", object_id=str(world.decision.pk)).latest(
        "sequence")
    assert entry.sequence < checkpoint.sequence
    data = json.loads(entry.payload)
    data["facts"]["reviewer_id"] = admin_user.pk
    with side_door("rules_decision", "pldreview_ledgerentry"):
        raw("UPDATE rules_decision SET reviewer_id = %s WHERE id = %s", [admin_user.pk, world.decision.pk])
        raw("UPDATE pldreview_ledgerentry SET payload = %s WHERE id = %s",
            [json.dumps(data, sort_keys=True, separators=(",", ":")), entry.pk])
    problems = ledger_verify(since_checkpoint=True).problems
    assert (problems[0].kind, problems[0].sequence) == ("chain", entry.sequence)
    # Re-hashing it as well breaks the link to the next entry; re-hashing everything after, the checkpoint.
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET hash = %s WHERE id = %s",
            [chain_hash(entry.prev_hash, json.dumps(data, sort_keys=True, separators=(",", ":"))), entry.pk])
    problems = ledger_verify(since_checkpoint=True).problems
    assert (problems[0].kind, problems[0].sequence) == ("chain", entry.sequence + 1)


def test_a_rehashed_ledger_before_the_checkpoint_is_found_by_its_signed_hash(checkpointed) -> None:  # noqa: ANN001
    _world, checkpoint = checkpointed
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
    problems = ledger_verify(since_checkpoint=True).problems
    assert ("checkpoint", checkpoint.sequence) in [(p.kind, p.sequence) for p in problems]


def test_a_checkpoint_row_its_signed_file_contradicts_sends_it_back_to_entry_one(checkpointed) -> None:  # noqa: ANN001
    _world, checkpoint = checkpointed
    with side_door("pldreview_ledgercheckpoint"):
        raw("UPDATE pldreview_ledgercheckpoint SET sequence = sequence + 2 WHERE id = %s", [checkpoint.pk])
    verdict = ledger_verify(since_checkpoint=True)
    assert verdict.incremental_from == 1 and verdict.entries_checked > checkpoint.sequence
    assert any(p.kind == "checkpoint" and "its signed file states" in p.detail for p in verdict.problems)
