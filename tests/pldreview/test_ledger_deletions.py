"""Attack 5 of issue 22: deletions, signature rewrites and the delete permit no longer pass verify_ledger.

Each test makes the move a database writer can make (raw SQL, a permit, a lifted trigger) and asserts
that verify_ledger names it, with its object and entry; a covered retention purge stays intact.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from evaluation.production.decision_log import decisions_purge
from pldreview.db_triggers import PERMIT_TABLE, delete_permit, permit_owner_statements
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry
from pldreview.retention import retention_purge
from rules.models import Decision
from tests.pldreview.ledgerkit import raw, side_door
from tests.pldreview.ledgerkit import verify_command as verify
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_rejection

pytestmark = pytest.mark.django_db




def _latest(object_type: str, object_id: int) -> LedgerEntry:
    return LedgerEntry.objects.filter(object_type=object_type, object_id=str(object_id)).order_by("-sequence").first()


@contextmanager
def trigger_lifted(table: str, trigger: str) -> Iterator[None]:
    """Take one trigger off a table, as the tables' owner can (SQLite: drop it; PostgreSQL: disable it)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = %s", [trigger])
            (sql,) = cursor.fetchone()
        raw(f"DROP TRIGGER {trigger}")
        yield
        raw(sql)
    else:
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # else PostgreSQL refuses ALTER TABLE for pending foreign-key checks
        raw(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        yield
        raw(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


def _issue_permit_and_delete(decision_id: int) -> None:
    """The issue's statements, as a database writer types them (PostgreSQL: as the tables' owner)."""
    raw(f"INSERT INTO {PERMIT_TABLE} (reason) VALUES ('x')")
    raw("DELETE FROM rules_historicaldecision WHERE id = %s", [decision_id])
    raw("DELETE FROM rules_decision WHERE id = %s", [decision_id])


def test_a_deleted_decision_and_its_history_are_reported_missing_with_their_entry(world) -> None:  # noqa: ANN001
    entry = _latest("rules.decision", world.decision.pk)
    _issue_permit_and_delete(world.decision.pk)
    # Until now the permit was then removed without a trace; a permit is a record and cannot be deleted.
    with pytest.raises(DatabaseError, match="never deleted"), transaction.atomic():
        raw(f"DELETE FROM {PERMIT_TABLE}")
    code, out = verify()
    assert code == 1
    assert f"BROKEN at sequence {entry.sequence} (missing): rules.decision {world.decision.pk} is missing" in out
    verdict = ledger_verify()
    missing = [p for p in verdict.problems if p.kind == "missing"]
    assert [(p.object_type, p.object_id, p.sequence) for p in missing] == [
        ("rules.decision", str(world.decision.pk), entry.sequence)]
    # The permit that let it through is named too: every problem is reported, not only the first.
    assert any(p.kind == "permit" and "'x'" in p.detail and "still open" in p.detail for p in verdict.problems)


def test_every_deleted_row_is_reported_not_only_the_first(world) -> None:  # noqa: ANN001
    # Approvals nothing else points to (a foreign key would otherwise refuse the deletion at commit).
    victims = [d.pk for d in Decision.objects.filter(action="approve", undone_by__isnull=True).order_by("pk")[:3]]
    assert len(victims) == 3
    with delete_permit("cover-up"):
        for pk in victims:
            raw("DELETE FROM rules_decision WHERE id = %s", [pk])
    data = json.loads(verify("--json")[1])
    missing = sorted(p["object_id"] for p in data["problems"] if p["kind"] == "missing")
    assert missing == sorted(str(pk) for pk in victims)
    assert data["ok"] is False


def test_a_rewritten_signature_is_reported_with_its_signing_entry(world, admin_user) -> None:  # noqa: ANN001
    signature = world.decision.signature
    entry = _latest("pldreview.signature", signature.pk)
    assert entry.event == "signature.created"
    # The append-only trigger refuses the rewrite; the tables' owner lifts it, rewrites and puts it back.
    with pytest.raises(DatabaseError), transaction.atomic():
        raw("UPDATE pldreview_signature SET full_name = 'Adam Admin' WHERE id = %s", [signature.pk])
    with trigger_lifted("pldreview_signature", "pld_signature_append_only"):
        raw("UPDATE pldreview_signature SET full_name = %s, content_sha256 = %s WHERE id = %s",
            ["Adam Admin", "0" * 64, signature.pk])
    code, out = verify()
    assert code == 1
    assert f"BROKEN at sequence {entry.sequence} (row): pldreview.signature {signature.pk} differs" in out
    assert "full_name" in out and "content_sha256" in out


def test_a_deleted_signature_is_reported_missing(world, reviewer, task) -> None:  # noqa: ANN001
    loose = sign_rejection(reviewer, teacher_rule(task, text="If it rains, then NotMentioned", label="NotMentioned"))
    entry = _latest("pldreview.signature", loose.pk)
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            raw("DELETE FROM pldreview_signature WHERE id = %s", [loose.pk])
        with trigger_lifted("pldreview_signature", "pld_signature_append_only"):
            raw("DELETE FROM pldreview_signature WHERE id = %s", [loose.pk])
    else:
        raw("DELETE FROM pldreview_signature WHERE id = %s", [loose.pk])
    verdict = ledger_verify()
    assert [(p.kind, p.object_type, p.object_id, p.sequence) for p in verdict.problems] == [
        ("missing", "pldreview.signature", str(loose.pk), entry.sequence)]


def test_a_retention_purge_that_covers_its_deletions_leaves_the_ledger_intact(world, django_user_model) -> None:  # noqa: ANN001
    boss = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    result = retention_purge(before=timezone.now() + timedelta(seconds=1), user=boss, reason="Policy 7.2: 10 years")
    assert sum(result["deleted"].values()) > 0
    purge = LedgerEntry.objects.get(sequence=result["sequence"])
    assert json.loads(purge.payload)["facts"]["permit"] == result["permit"]
    code, out = verify()
    assert code == 0, out


def test_a_permit_used_outside_the_purge_is_flagged_though_it_was_closed(world) -> None:  # noqa: ANN001
    first = Decision.history.model.objects.order_by("history_id").first()
    with delete_permit("housekeeping") as permit:
        raw("DELETE FROM rules_historicaldecision WHERE history_id = %s", [first.history_id])
    # No live row was touched: the permit shows it, and so does the decision's missing history record.
    verdict = ledger_verify()
    assert sorted((p.kind, p.object_id) for p in verdict.problems) == [
        ("history", str(first.id)), ("permit", str(permit))]
    flagged = next(p for p in verdict.problems if p.kind == "permit")
    assert "housekeeping" in flagged.detail and "outside the retention purge" in flagged.detail


def test_an_unused_permit_opened_outside_the_purge_is_flagged(world) -> None:  # noqa: ANN001
    with delete_permit("just looking") as permit:
        pass
    assert [(p.kind, p.object_id) for p in ledger_verify().problems] == [("permit", str(permit))]


def test_history_deleted_with_the_triggers_lifted_and_no_permit_is_reported(world) -> None:  # noqa: ANN001
    # No permit, no live row touched: only the count of history records against the ledgered saves shows it.
    entry = _latest("rules.decision", world.decision.pk)
    with side_door("rules_historicaldecision"):
        raw("DELETE FROM rules_historicaldecision WHERE id = %s", [world.decision.pk])
    verdict = ledger_verify()
    assert [(p.kind, p.object_type, p.object_id, p.sequence) for p in verdict.problems] == [
        ("history", "rules.decision", str(world.decision.pk), entry.sequence)]
    assert "holds 0 records" in verdict.problems[0].detail


def test_a_purge_with_a_past_cutoff_keeps_the_newer_history_accountable(world, django_user_model) -> None:  # noqa: ANN001
    boss = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    retention_purge(before=timezone.now() - timedelta(days=3650), user=boss, reason="Policy 7.2: 10 years")
    assert ledger_verify().ok
    with side_door("rules_historicalrule"):
        raw("DELETE FROM rules_historicalrule WHERE id = %s", [world.rules[0].pk])
    assert [p.kind for p in ledger_verify().problems] == ["history"]


def test_a_permit_can_be_closed_but_never_reopened_or_rewritten(world) -> None:  # noqa: ANN001
    with delete_permit("purge") as permit:
        pass
    for sql in (f"UPDATE {PERMIT_TABLE} SET reason = 'retention' WHERE id = %s",
                f"UPDATE {PERMIT_TABLE} SET closed = {'false' if connection.vendor == 'postgresql' else 0} "
                "WHERE id = %s"):
        with pytest.raises(DatabaseError, match="never deleted"), transaction.atomic():
            raw(sql, [permit])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="roles and privileges are PostgreSQL's")
def test_an_application_role_cannot_write_a_permit_and_its_permits_stay_on_record(world) -> None:  # noqa: ANN001
    # The test cluster's user is a superuser that owns every table (the migrating role); the application's
    # role is an ordinary one with data privileges only, as docs/deploy.md sets it up.
    raw("CREATE ROLE pld_test_app NOLOGIN")
    raw("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO pld_test_app")
    raw("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO pld_test_app")
    for sql in permit_owner_statements(owner="pld_test_permit_owner", app_role="pld_test_app"):
        raw(sql)
    raw("SET LOCAL ROLE pld_test_app")
    for sql in (f"INSERT INTO {PERMIT_TABLE} (reason) VALUES ('x')", f"UPDATE {PERMIT_TABLE} SET closed = true",
                f"DELETE FROM {PERMIT_TABLE}", f"TRUNCATE {PERMIT_TABLE}",
                "ALTER TABLE rules_decision DISABLE TRIGGER ALL", f"ALTER TABLE {PERMIT_TABLE} DISABLE TRIGGER ALL"):
        with pytest.raises(DatabaseError, match="permission denied|must be owner"), transaction.atomic():
            raw(sql)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("DELETE FROM rules_decision WHERE id = %s", [world.decision.pk])
    # The one door left is the function, and what goes through it stays on record.
    with delete_permit("through the function") as permit:
        raw("DELETE FROM rules_historicaldecision WHERE id = %s", [world.decision.pk])
    raw("RESET ROLE")
    verdict = ledger_verify()
    assert sorted((p.kind, p.object_id) for p in verdict.problems) == [
        ("history", str(world.decision.pk)), ("permit", str(permit))]


def test_purging_logged_calls_leaves_their_feedback_matching_its_ledger_entry(world, admin_user) -> None:  # noqa: ANN001
    # A call's deletion sets its feedback's call to NULL; that row, as it now is, goes on the ledger too.
    from evaluation.models import DecisionFeedback, DecisionOverride

    # The world's feedback and the one that followed from its override.
    feedbacks = DecisionFeedback.objects.filter(call__isnull=False).count()
    assert feedbacks == 2
    facts = decisions_purge(older_than_days=0, actor=admin_user)
    assert facts["calls_deleted"] >= 1
    assert LedgerEntry.objects.filter(event="decisionfeedback.changed").count() == feedbacks
    # The override outlives its call's retention: it names the call by request id.
    assert DecisionOverride.objects.count() == 1
    assert ledger_verify().ok


def test_the_ledger_page_lists_every_problem(world, auditor, client) -> None:  # noqa: ANN001
    victims = [d.pk for d in Decision.objects.filter(action="approve", undone_by__isnull=True).order_by("pk")[:2]]
    with delete_permit("cover-up"):
        for pk in victims:
            raw("DELETE FROM rules_decision WHERE id = %s", [pk])
    client.force_login(auditor)
    page = client.get("/ledger/", {"verify": "1"}).content.decode()
    for pk in victims:
        assert f"rules.decision {pk} is missing" in page
    assert "delete permit" in page and "3 problems" in page


def test_the_permit_owner_command_prints_the_statements_or_refuses_sqlite() -> None:
    out = io.StringIO()
    if connection.vendor == "sqlite":
        with pytest.raises(CommandError, match="Only PostgreSQL"):
            call_command("pg_permit_owner", "--app-role", "pld_app", stdout=out)
        return
    call_command("pg_permit_owner", "--app-role", "pld_app", stdout=out)
    assert f"ALTER TABLE {PERMIT_TABLE} OWNER TO pld_permit_owner" in out.getvalue()
    with pytest.raises(CommandError, match="plain role name"):
        call_command("pg_permit_owner", "--app-role", "x; DROP TABLE y", stdout=out)
