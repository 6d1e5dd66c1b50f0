"""The test database, opened by other processes (a db_worker, a gunicorn, a management command) as they would in use."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from django.db import connection


def shared_database(tmp_path: Path) -> tuple[str, Callable[[str], list[tuple]]]:
    """Return a DATABASE_URL other processes can open with this test's data, and a function reading it by SQL.

    On PostgreSQL it is the test database itself (the test must commit: ``transaction=True``). On SQLite the test
    database lives in this process's memory, so it is copied to a file, schema, triggers and rows: already
    migrated, which spares the other process the ~15 s of migrating a new database.
    """
    if connection.vendor == "postgresql":
        db = connection.settings_dict

        def read_pg(sql: str) -> list[tuple]:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()

        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}", read_pg
    path = tmp_path / "shared.sqlite3"
    connection.ensure_connection()
    with sqlite3.connect(path) as target:
        connection.connection.backup(target)

    def read_sqlite(sql: str) -> list[tuple]:
        with sqlite3.connect(path) as db:
            return db.execute(sql).fetchall()

    return f"sqlite:///{path}", read_sqlite
