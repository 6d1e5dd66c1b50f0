"""The database refuses rewrites of the audit record: raw UPDATE and DELETE raise, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pldreview.checkpoints import ledger_checkpoint_create
from pldreview.db_triggers import APPEND_ONLY_MODELS, delete_permit, protected_tables, unprotected_tables
from pldreview.models import LedgerEntry
from pldreview.retention import retention_purge
from rules.models import Decision
from tests.pldreview.ledgerkit import audited_world, raw

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(task, reviewer, second_reviewer, admin_user, auditor, pdf_signing):  # noqa: ANN001, ANN201
    made = audited_world(task, reviewer, second_reviewer, admin_user, auditor)
    ledger_checkpoint_create(user=auditor, reason="Fills the checkpoint table")
    return made


def _pk_column(table: str) -> str:
    model = next(m for m in apps.get_models() if m._meta.db_table == table)
    return model._meta.pk.column


def test_every_protected_table_has_its_triggers() -> None:
    tables = protected_tables()
    assert {"pldreview_ledgerentry", "rules_decision", "rules_rulerevision", "evaluation_promotion",
            "rules_historicaldecision", "rules_historicalrule", "evaluation_historicalreport"} <= set(tables)
    n_history = sum(1 for m in apps.get_models() if m.__name__.startswith("Historical"))
    assert len(tables) == len(APPEND_ONLY_MODELS) + n_history
    assert unprotected_tables() == []


def test_the_world_fills_every_protected_table(world) -> None:  # noqa: ANN001
    for table in protected_tables():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            assert cursor.fetchone()[0] > 0, table


@pytest.mark.parametrize("statement", ["UPDATE {table} SET {pk} = {pk}", "DELETE FROM {table}"])
def test_raw_sql_update_and_delete_are_refused_on_every_protected_table(world, statement: str) -> None:  # noqa: ANN001
    for table in protected_tables():
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw(statement.format(table=table, pk=_pk_column(table)))


def test_a_changed_reviewer_is_refused(world, admin_user) -> None:  # noqa: ANN001
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("UPDATE rules_decision SET reviewer_id = %s WHERE id = %s", [admin_user.pk, world.decision.pk])
    world.decision.refresh_from_db()
    assert world.decision.reviewer_id != admin_user.pk


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's side door; SQLite has none")
def test_truncate_is_refused_on_postgresql(world) -> None:  # noqa: ANN001
    raw("SET CONSTRAINTS ALL IMMEDIATE")  # else PostgreSQL refuses for the test's pending foreign-key checks
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("TRUNCATE rules_historicaldecision")


def test_a_permit_lets_deletes_through_only_inside_its_transaction(world) -> None:  # noqa: ANN001
    with delete_permit("test"):
        raw("DELETE FROM rules_historicaldecision WHERE history_id = "
            "(SELECT MIN(history_id) FROM rules_historicaldecision)")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("DELETE FROM rules_historicaldecision")


def test_the_retention_purge_deletes_old_history_and_is_itself_a_ledger_event(world, django_user_model) -> None:  # noqa: ANN001
    boss = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    history = Decision.history.model
    before_count = history.objects.count()
    result = retention_purge(before=timezone.now() + timedelta(seconds=1), user=boss, reason="Policy 7.2: 10 years")
    assert history.objects.count() == 0 < before_count
    entry = LedgerEntry.objects.get(sequence=result["sequence"])
    assert entry.event == "retention.purge" and entry.actor_name == "root"
    assert f'"rules.historicaldecision":{before_count}' in entry.payload
    assert Decision.objects.count() > 0  # the audited rows themselves are never purged
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("DELETE FROM rules_decision")


def test_only_a_superuser_purges(world, admin_user) -> None:  # noqa: ANN001
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        retention_purge(before=timezone.now(), user=admin_user, reason="Policy")


@pytest.mark.django_db(transaction=True)
def test_a_transactional_tests_flush_still_empties_the_protected_tables(task, reviewer, second_reviewer,  # noqa: ANN001
                                                                       admin_user, auditor) -> None:
    # The teardown flush of this test deletes from every protected table: it must pass the triggers.
    audited_world(task, reviewer, second_reviewer, admin_user, auditor)
    assert Decision.objects.exists()
