"""Append-only tables: database triggers that refuse UPDATE and DELETE, on SQLite and PostgreSQL.

Migrations call :func:`append_only` with the tables to protect (each later migration that adds an
audit table calls it too). A DELETE is let through only while an *open* row exists in the permit table
``pld_delete_permit``: the retention purge (``pldreview.retention``) opens a permit, deletes, closes it
and appends a ``retention.purge`` ledger entry naming the permit's id, all in one transaction, so no
other connection ever sees the permit open (PostgreSQL: not yet committed; SQLite: the purge holds the
write lock). Permits are never deleted and only ever closed, so every use of one stays on record:
``verify_ledger`` reports a permit that no ``retention.purge`` entry names. On PostgreSQL permits are
opened and closed through two SECURITY DEFINER functions; with ``permit_owner_statements`` the table
and functions belong to a role of their own, so the application's role can open a permit only through
the function, and can neither close nor erase one behind its back.
Test suites flush through the same permit (``delete_permit``), see ``tests/conftest.py``.

PostgreSQL also refuses TRUNCATE of these tables without a permit: TRUNCATE fires no row triggers.
UPDATE is never permitted.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import connections, migrations, transaction

PERMIT_TABLE = "pld_delete_permit"
# Append-only besides every django-simple-history table. A migration adding an audit table adds it here
# and calls ``append_only([...])``.
APPEND_ONLY_MODELS = (
    "pldreview.LedgerEntry", "rules.Decision", "rules.RuleRevision", "evaluation.Promotion", "rules.FrozenTestSplit",
    "pldreview.LedgerCheckpoint", "evaluation.ServingStop", "evaluation.DecisionOverride", "evaluation.WebhookAttempt",
    "rules.TaskMembershipChange",
)

CREATE_PERMIT = {
    "sqlite": f"CREATE TABLE IF NOT EXISTS {PERMIT_TABLE} (id INTEGER PRIMARY KEY, reason TEXT NOT NULL, "
    "opened_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, closed INTEGER NOT NULL DEFAULT 0)",
    "postgresql": f"CREATE TABLE IF NOT EXISTS {PERMIT_TABLE} (id SERIAL PRIMARY KEY, reason TEXT NOT NULL, "
    "opened_at TIMESTAMPTZ NOT NULL DEFAULT now(), closed BOOLEAN NOT NULL DEFAULT false)",
}
# Whether a permit is open, as each database's trigger condition says it.
_OPEN = {"sqlite": "closed = 0", "postgresql": "NOT closed"}

PG_FUNCTION = f"""CREATE OR REPLACE FUNCTION pld_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'TRUNCATE') AND EXISTS (SELECT 1 FROM {PERMIT_TABLE} WHERE {_OPEN["postgresql"]}) THEN
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NULL;
  END IF;
  RAISE EXCEPTION USING MESSAGE = TG_OP || ' on ' || TG_TABLE_NAME
    || ' refused: the table is append-only (audit record)';
END $$ LANGUAGE plpgsql;"""


def _message(table: str, op: str) -> str:
    return f"{op} on {table} refused: the table is append-only (audit record)"


def _names(table: str) -> tuple[str, str, str]:
    return f"pld_ao_upd_{table}"[:63], f"pld_ao_del_{table}"[:63], f"pld_ao_trunc_{table}"[:63]


def install_sql(vendor: str, table: str) -> list[str]:
    """Return the statements that make one table append-only on the given database vendor."""
    update, delete, truncate = _names(table)
    if vendor == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {update}",
            f"DROP TRIGGER IF EXISTS {delete}",
            f"""CREATE TRIGGER {update} BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{_message(table, "UPDATE")}'); END""",
            f"""CREATE TRIGGER {delete} BEFORE DELETE ON {table}
            WHEN NOT EXISTS (SELECT 1 FROM {PERMIT_TABLE} WHERE {_OPEN["sqlite"]})
            BEGIN SELECT RAISE(ABORT, '{_message(table, "DELETE")}'); END""",
        ]
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {update} ON {table}",
            f"DROP TRIGGER IF EXISTS {truncate} ON {table}",
            f"""CREATE TRIGGER {update} BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION pld_append_only()""",
            f"""CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION pld_append_only()""",
        ]
    return []


def remove_sql(vendor: str, table: str) -> list[str]:
    """Return the statements that undo :func:`install_sql` for one table."""
    update, delete, truncate = _names(table)
    if vendor == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {update}", f"DROP TRIGGER IF EXISTS {delete}"]
    if vendor == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {update} ON {table}", f"DROP TRIGGER IF EXISTS {truncate} ON {table}"]
    return []


def _statements(vendor: str, tables: Iterable[str]) -> list[str]:
    if vendor not in CREATE_PERMIT:
        return []
    statements = [CREATE_PERMIT[vendor]] + ([PG_FUNCTION] if vendor == "postgresql" else [])
    return statements + [sql for table in tables for sql in install_sql(vendor, table)]


def install(schema_editor, tables: Iterable[str]) -> None:
    """Create the permit table (once) and the append-only triggers on each table."""
    for sql in _statements(schema_editor.connection.vendor, tables):
        schema_editor.execute(sql)


def remove(schema_editor, tables: Iterable[str]) -> None:
    """Drop the append-only triggers of each table (the permit table and function stay for others)."""
    for table in tables:
        for sql in remove_sql(schema_editor.connection.vendor, table):
            schema_editor.execute(sql)


def history_tables(apps) -> list[str]:
    """Return the tables of every django-simple-history model in a migration's app registry."""
    return sorted(
        model._meta.db_table
        for model in apps.get_models()
        if model.__name__.startswith("Historical") and any(f.name == "history_id" for f in model._meta.fields)
    )


def append_only(tables: Iterable[str] = (), *, with_history: bool = False) -> migrations.RunPython:
    """Return a migration operation making the tables (and, if asked, every history table) append-only."""
    fixed = list(tables)

    def chosen(apps) -> list[str]:
        return fixed + (history_tables(apps) if with_history else [])

    return migrations.RunPython(
        lambda apps, schema_editor: install(schema_editor, chosen(apps)),
        lambda apps, schema_editor: remove(schema_editor, chosen(apps)),
    )


_PERMIT_MESSAGE = "delete permits are a record: never deleted, and only ever closed"

# The permit table's own guards: a permit is never deleted, and the only change is closing an open one.
PERMIT_GUARD_SQL = {
    "sqlite": [
        f"""CREATE TRIGGER IF NOT EXISTS pld_permit_no_delete BEFORE DELETE ON {PERMIT_TABLE}
        BEGIN SELECT RAISE(ABORT, '{_PERMIT_MESSAGE}'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS pld_permit_close_only BEFORE UPDATE ON {PERMIT_TABLE}
        WHEN NEW.id IS NOT OLD.id OR NEW.reason IS NOT OLD.reason OR NEW.opened_at IS NOT OLD.opened_at
          OR OLD.closed <> 0 OR NEW.closed <> 1
        BEGIN SELECT RAISE(ABORT, '{_PERMIT_MESSAGE}'); END""",
    ],
    "postgresql": [
        f"""CREATE OR REPLACE FUNCTION pld_permit_guard() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.reason = OLD.reason AND NEW.opened_at = OLD.opened_at
     AND NOT OLD.closed AND NEW.closed THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '{_PERMIT_MESSAGE}';
END $$ LANGUAGE plpgsql;""",
        f"DROP TRIGGER IF EXISTS pld_permit_guard ON {PERMIT_TABLE}",
        f"""CREATE TRIGGER pld_permit_guard BEFORE UPDATE OR DELETE ON {PERMIT_TABLE}
        FOR EACH ROW EXECUTE FUNCTION pld_permit_guard()""",
        f"DROP TRIGGER IF EXISTS pld_permit_guard_truncate ON {PERMIT_TABLE}",
        f"""CREATE TRIGGER pld_permit_guard_truncate BEFORE TRUNCATE ON {PERMIT_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION pld_permit_guard()""",
        # The only door to a permit. SECURITY DEFINER: they run as the table's owner, so an application role
        # that is not the owner (permit_owner_statements) opens and closes permits only through them.
        f"""CREATE OR REPLACE FUNCTION pld_delete_permit_open(why text) RETURNS integer
        SECURITY DEFINER SET search_path = pg_catalog, public AS $$
          INSERT INTO {PERMIT_TABLE} (reason) VALUES (why) RETURNING id
        $$ LANGUAGE sql;""",
        f"""CREATE OR REPLACE FUNCTION pld_delete_permit_close(permit integer) RETURNS void
        SECURITY DEFINER SET search_path = pg_catalog, public AS $$
          UPDATE {PERMIT_TABLE} SET closed = true WHERE id = permit AND NOT closed
        $$ LANGUAGE sql;""",
    ],
}
PERMIT_GUARD_DROP_SQL = {
    "sqlite": ["DROP TRIGGER IF EXISTS pld_permit_no_delete", "DROP TRIGGER IF EXISTS pld_permit_close_only"],
    "postgresql": [f"DROP TRIGGER IF EXISTS pld_permit_guard ON {PERMIT_TABLE}",
                   f"DROP TRIGGER IF EXISTS pld_permit_guard_truncate ON {PERMIT_TABLE}"],
}


def permit_owner_statements(*, owner: str, app_role: str) -> list[str]:
    """Return the PostgreSQL statements (run once by a superuser) giving the delete permit a role of its own.

    ``owner`` (created NOLOGIN if missing) then owns the permit table and the two functions; ``app_role``,
    the role the application connects as, may read permits and call the functions, nothing else. Only
    meaningful when ``app_role`` does not own the audit tables either (an owner may disable their triggers).
    """
    for name in (owner, app_role):
        if not name.replace("_", "").isalnum():
            raise ValueError(f"{name!r} is not a plain role name")
    return [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{owner}') THEN "
        f"CREATE ROLE {owner} NOLOGIN; END IF; END $$",
        f"ALTER TABLE {PERMIT_TABLE} OWNER TO {owner}",
        f"ALTER FUNCTION pld_delete_permit_open(text) OWNER TO {owner}",
        f"ALTER FUNCTION pld_delete_permit_close(integer) OWNER TO {owner}",
        f"ALTER FUNCTION pld_permit_guard() OWNER TO {owner}",
        f"REVOKE ALL ON {PERMIT_TABLE} FROM PUBLIC, {app_role}",
        f"GRANT SELECT ON {PERMIT_TABLE} TO PUBLIC",
        "REVOKE ALL ON FUNCTION pld_delete_permit_open(text), pld_delete_permit_close(integer) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION pld_delete_permit_open(text), pld_delete_permit_close(integer) TO {app_role}",
    ]


def permit_open(cursor, vendor: str, reason: str) -> int:  # noqa: ANN001 (a DB-API cursor)
    """Open a delete permit and return its id (PostgreSQL: through the SECURITY DEFINER function)."""
    if vendor == "postgresql":
        cursor.execute("SELECT pld_delete_permit_open(%s)", [reason])
    else:
        cursor.execute(f"INSERT INTO {PERMIT_TABLE} (reason) VALUES (%s) RETURNING id", [reason])
    return int(cursor.fetchone()[0])


def permit_close(cursor, vendor: str, permit: int) -> None:  # noqa: ANN001 (a DB-API cursor)
    """Close an open delete permit; it stays on record."""
    if vendor == "postgresql":
        cursor.execute("SELECT pld_delete_permit_close(%s)", [permit])
    else:
        cursor.execute(f"UPDATE {PERMIT_TABLE} SET closed = 1 WHERE id = %s AND closed = 0", [permit])


@contextmanager
def delete_permit(reason: str, *, using: str = "default") -> Iterator[int]:
    """Let deletes through the append-only triggers for the duration of one transaction; yield the permit's id.

    Only for the retention purge (whose ``retention.purge`` entry names the permit) and test-suite flushes.
    The permit stays on record, closed: ``verify_ledger`` reports any permit no purge entry names.
    """
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        permit = permit_open(cursor, connection.vendor, reason)
        yield permit  # an exception rolls the whole transaction back, permit included
        permit_close(cursor, connection.vendor, permit)


def protected_tables() -> list[str]:
    """Return every table the database keeps append-only, from the running app registry."""
    from django.apps import apps

    return [apps.get_model(label)._meta.db_table for label in APPEND_ONLY_MODELS] + history_tables(apps)


def unprotected_tables(*, using: str = "default") -> list[str]:
    """Return the protected tables that exist but lack their UPDATE trigger (e.g. after SQLite remade one)."""
    connection = connections[using]
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        elif connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            return []
        triggers = {name for (name,) in cursor.fetchall()}
    return [t for t in protected_tables() if t in existing and _names(t)[0] not in triggers]


def ensure_append_only(*, using: str = "default", **_: object) -> None:
    """Reinstall missing append-only triggers; connected to post_migrate, since SQLite loses a table's
    triggers whenever a migration rebuilds that table (most AddField/AlterField operations)."""
    missing = unprotected_tables(using=using)
    if missing:
        connection = connections[using]
        with connection.cursor() as cursor:
            for sql in _statements(connection.vendor, missing):
                cursor.execute(sql)


# Guards written for one table (four eyes, signatures, immutable prompt versions, ...). Migrations keep the
# condition and message, which are what each guard means; the statements around them are built here. Each
# builder reproduces, byte for byte, the text earlier migrations wrote by hand: SQLite stores a trigger's
# text as given and PostgreSQL a function's body, so a layout change would show as a schema change.

def sqlite_guard(name: str, *, before: str, table: str, message: str, when: str = "", indent: str = "    ") -> str:
    """Return a SQLite trigger that aborts the statement with the message (only when the condition holds)."""
    when_line = f"\n{indent}WHEN {when}" if when else ""
    return (
        f"CREATE TRIGGER {name} BEFORE {before} ON {table}{when_line}\n"
        f"{indent}BEGIN SELECT RAISE(ABORT, '{message}'); END;"
    )


def sqlite_column_guard(name: str, *, table: str, columns: str, message: str) -> str:
    """Return a SQLite trigger refusing any UPDATE of the listed columns (comma-separated)."""
    return (
        f"CREATE TRIGGER {name} BEFORE UPDATE OF {columns}\n"
        f"    ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END;"
    )


def pg_function(name: str, body: str, *, replace: bool = False) -> str:
    """Return a PL/pgSQL trigger function; ``body`` is the text between the dollar quotes."""
    create = "CREATE OR REPLACE FUNCTION" if replace else "CREATE FUNCTION"
    return f"{create} {name}() RETURNS trigger AS $${body}$$ LANGUAGE plpgsql;"


def pg_refusal(message: str) -> str:
    """Return the body of a PostgreSQL trigger function that refuses every row it fires for."""
    return f"\n    BEGIN RAISE EXCEPTION '{message}'; END "


def pg_checks(*checks: tuple[str, str]) -> str:
    """Return the body of a PostgreSQL trigger function raising each (condition, message) whose condition holds."""
    raises = "".join(f"      IF {cond} THEN RAISE EXCEPTION '{message}'; END IF;\n" for cond, message in checks)
    return f"\n    BEGIN\n{raises}      RETURN NEW;\n    END "


def settled_guard(
    name: str, *, table: str, frozen: Iterable[str], message: str, replace: bool = False, indent: str = "    "
) -> dict[str, list[str]]:
    """Return the SQLite trigger and PostgreSQL function refusing, on a request-like row, any change of the
    ``frozen`` columns and any change at all once its status has left 'pending' (and, on PostgreSQL, deletes)."""
    columns = list(frozen)
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)
    pg_changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in columns)
    body = (
        f"\n{indent}BEGIN\n{indent}  IF TG_OP = 'DELETE' OR OLD.status <> 'pending'\n"
        f"{indent}     OR {pg_changed} THEN\n"
        f"{indent}    RAISE EXCEPTION '{message}';\n{indent}  END IF;\n{indent}  RETURN NEW;\n{indent}END "
    )
    return {
        "sqlite": [
            sqlite_guard(
                name, before="UPDATE", table=table, message=message, when=f"OLD.status <> 'pending' OR {changed}",
                indent=indent,
            )
        ],
        "postgresql": [pg_function(name, body, replace=replace)],
    }


def pg_trigger(name: str, *, before: str, table: str) -> str:
    """Return a PostgreSQL row trigger running the function of the same name."""
    return f"CREATE TRIGGER {name} BEFORE {before} ON {table}\n    FOR EACH ROW EXECUTE FUNCTION {name}();"


def sqlite_drop(*names: str) -> list[str]:
    """Return the statements dropping the named SQLite triggers."""
    return [f"DROP TRIGGER IF EXISTS {name};" for name in names]


def pg_drop(name: str, *, table: str) -> list[str]:
    """Return the statements dropping a PostgreSQL trigger and its function (both share the name)."""
    return [f"DROP TRIGGER IF EXISTS {name} ON {table};", f"DROP FUNCTION IF EXISTS {name}();"]


def by_vendor(forward: dict[str, list[str]], backward: dict[str, list[str]]) -> migrations.RunPython:
    """Return a migration operation running the statements written for the database's vendor (others: none)."""

    def run(statements: dict[str, list[str]]):
        def execute(apps, schema_editor) -> None:
            for sql in statements.get(schema_editor.connection.vendor, []):
                schema_editor.execute(sql)

        return execute

    return migrations.RunPython(run(forward), run(backward))


def refuse_changes(name: str, *, table: str, message: str, refuse_delete: bool = True) -> migrations.RunPython:
    """Return a migration operation refusing every UPDATE of the table's rows (and DELETE, on PostgreSQL).

    SQLite gets no DELETE trigger: Django flushes test databases with DELETE FROM, which it would break.
    PostgreSQL flushes with TRUNCATE, which fires no row triggers, so deletes are refused there too.
    """
    return by_vendor(
        {
            "sqlite": [sqlite_guard(name, before="UPDATE", table=table, message=message)],
            "postgresql": [
                pg_function(name, pg_refusal(message)),
                pg_trigger(name, before="UPDATE OR DELETE" if refuse_delete else "UPDATE", table=table),
            ],
        },
        {"sqlite": sqlite_drop(name), "postgresql": pg_drop(name, table=table)},
    )


def keep_sqlite_triggers(tables: Iterable[str]) -> tuple[migrations.RunPython, migrations.RunPython]:
    """Return two operations to put around operations that rebuild SQLite tables: the first sets aside every
    trigger on or naming the tables, the second recreates them from their stored text, byte for byte.

    SQLite has no ALTER TABLE ... ADD CONSTRAINT: Django copies the table into a new one. Dropping the old one
    drops every trigger on it (four eyes, signatures, search index), not only the append-only ones
    ``ensure_append_only`` puts back, and renaming the copy fails while a trigger elsewhere names the table.
    """
    names = list(tables)
    kept: dict[str, list[tuple[str, str]]] = {}

    def set_aside(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "sqlite":
            return
        on_or_naming = " OR ".join(["tbl_name = %s OR sql LIKE %s"] * len(names))
        params = [value for name in names for value in (name, f"%{name}%")]
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND ({on_or_naming}) ORDER BY name",
                params,
            )
            triggers = cursor.fetchall()
        kept[schema_editor.connection.alias] = triggers
        for name, _sql in triggers:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")

    def restore(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "sqlite":
            return
        for _name, sql in kept.pop(schema_editor.connection.alias, []):
            schema_editor.execute(sql, params=None)

    # Unapplying rebuilds the table too: the same pair, run the other way round, keeps the triggers then.
    return (
        migrations.RunPython(set_aside, restore),
        migrations.RunPython(restore, set_aside),
    )
