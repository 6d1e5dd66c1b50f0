"""verify_ledger and the standard-library verifier find a rewritten row, an edited payload and a lost entry."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from pldreview.models import LedgerEntry, LedgerHead
from tests.pldreview.ledgerkit import VERIFIER, raw, side_door, stdlib_verify
from tests.pldreview.ledgerkit import verify_command as verify

pytestmark = pytest.mark.django_db




def export(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.jsonl"
    call_command("export_ledger", "--out", str(path), stdout=io.StringIO())
    return path


def _latest(object_type: str, object_id: int) -> LedgerEntry:
    return LedgerEntry.objects.filter(object_type=object_type, object_id=str(object_id)).order_by("-sequence").first()


def test_an_untouched_ledger_verifies_here_and_with_the_standard_library(world, tmp_path: Path) -> None:  # noqa: ANN001
    code, out = verify()
    assert code == 0, out
    head = LedgerHead.objects.get()
    assert f"head #{head.sequence} {head.hash}" in out
    code, result = stdlib_verify(export(tmp_path))
    assert code == 0 and result["head_sequence"] == head.sequence and result["head_hash"] == head.hash
    code, out = verify("--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_a_rewritten_decision_reviewer_is_named_with_its_sequence_number(world, admin_user) -> None:  # noqa: ANN001
    entry = _latest("rules.decision", world.decision.pk)
    with side_door("rules_decision"):
        raw("UPDATE rules_decision SET reviewer_id = %s WHERE id = %s", [admin_user.pk, world.decision.pk])
    code, out = verify()
    assert code == 1
    assert f"BROKEN at sequence {entry.sequence}" in out
    assert f"rules.decision {world.decision.pk}" in out and "reviewer_id" in out
    data = json.loads(verify("--json")[1])
    assert data["problem"]["sequence"] == entry.sequence and data["problem"]["object_id"] == str(world.decision.pk)


def test_rewritten_rule_text_is_found_though_the_ledger_was_left_alone(world) -> None:  # noqa: ANN001
    rule = world.rules[0]
    entry = _latest("rules.rule", rule.pk)
    raw("UPDATE rules_rule SET text = %s WHERE id = %s", ["If anything, then Entailment", rule.pk])
    code, out = verify()
    assert code == 1 and f"BROKEN at sequence {entry.sequence}" in out and "text" in out


def test_an_edited_payload_breaks_the_chain_here_and_in_the_export(world, tmp_path: Path) -> None:  # noqa: ANN001
    victim = LedgerEntry.objects.filter(event="decision.created").order_by("sequence")[1]
    tampered = victim.payload.replace('"reason":"', '"reason":"(nothing to see) ', 1)
    assert tampered != victim.payload
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET payload = %s WHERE id = %s", [tampered, victim.pk])
    code, out = verify()
    assert code == 1 and f"BROKEN at sequence {victim.sequence}" in out and "payload was edited" in out
    code, result = stdlib_verify(export(tmp_path))
    assert code == 1 and result["broken_sequence"] == victim.sequence


def test_a_deleted_entry_is_named_here_and_in_the_export(world, tmp_path: Path) -> None:  # noqa: ANN001
    victim = LedgerEntry.objects.order_by("sequence")[4]
    with side_door("pldreview_ledgerentry"):
        raw("DELETE FROM pldreview_ledgerentry WHERE id = %s", [victim.pk])
    code, out = verify()
    assert code == 1 and f"BROKEN at sequence {victim.sequence}" in out and "missing" in out
    code, result = stdlib_verify(export(tmp_path))
    assert code == 1 and result["broken_sequence"] == victim.sequence


def test_a_changed_column_that_the_payload_contradicts_is_found(world) -> None:  # noqa: ANN001
    victim = LedgerEntry.objects.order_by("sequence")[2]
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET actor_name = %s WHERE id = %s", ["someone-else", victim.pk])
    code, out = verify()
    assert code == 1 and f"BROKEN at sequence {victim.sequence}" in out and "actor_name" in out


def test_verifying_from_a_later_entry_still_cross_checks_every_row(world, admin_user) -> None:  # noqa: ANN001
    assert verify("--from", "5")[0] == 0
    with side_door("rules_decision"):
        raw("UPDATE rules_decision SET reason = %s WHERE id = %s", ["Fine", world.decision.pk])
    assert verify("--from", "5")[0] == 1


def test_a_ledger_that_cannot_be_read_exits_2(world) -> None:  # noqa: ANN001
    with side_door("pldreview_ledgerentry"):
        raw("ALTER TABLE pldreview_ledgerentry RENAME TO pld_moved_away")
        code, out = verify()
        raw("ALTER TABLE pld_moved_away RENAME TO pldreview_ledgerentry")
    assert code == 2 and "Cannot verify" in out


def test_the_stdlib_verifier_exits_2_on_a_missing_file(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-I", "-S", str(VERIFIER), str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "Cannot read" in done.stderr


def test_text_after_the_payloads_object_is_a_break_even_when_rehashed() -> None:
    """An insider who appends text to the last entry's payload and recomputes its hash and the head's still
    leaves a payload that is not one JSON object: the walk names it (json.loads refuses it too)."""
    from pldreview.ledger import chain_hash, ledger_append
    from pldreview.ledger_verify import ledger_verify
    from pldreview.models import LedgerEntry

    ledger_append(event="test.first", actor=None, facts={"n": 1})
    last = ledger_append(event="test.second", actor=None, facts={"n": 2})
    assert ledger_verify(check_rows=False).ok
    payload = last.payload + '{"event":"test.other"}'
    digest = chain_hash(last.prev_hash, payload)
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET payload = %s, hash = %s WHERE id = %s", [payload, digest, last.pk])
    raw("UPDATE pldreview_ledgerhead SET hash = %s WHERE id = 1", [digest])  # the head has no trigger
    assert LedgerEntry.objects.get(pk=last.pk).hash == digest
    verdict = ledger_verify(check_rows=False)
    assert not verdict.ok and verdict.problem.sequence == last.sequence and verdict.problem.kind == "chain"
    assert verdict.entries_checked == last.sequence - 1
