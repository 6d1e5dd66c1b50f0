"""A web thread keeps its database connection between requests (PLD_DB_CONN_MAX_AGE) until it is too old."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection, connections


def _probe(tmp_path: Path) -> object:
    # A connection of its own with the project's settings; on SQLite on a file, because the test database's
    # in-memory SQLite ignores close().
    settings_dict = dict(connection.settings_dict)
    if connection.vendor == "sqlite":
        settings_dict["NAME"] = str(tmp_path / "probe.sqlite3")
    return type(connections["default"])(settings_dict, alias="probe")


@pytest.mark.django_db  # lets the probe connect
def test_the_end_of_a_request_keeps_the_connection_until_its_age_runs_out(tmp_path: Path) -> None:
    assert connection.settings_dict["CONN_MAX_AGE"] == 60 and connection.settings_dict["CONN_HEALTH_CHECKS"]
    probe = _probe(tmp_path)
    probe.ensure_connection()
    held = probe.connection
    # What Django runs at the end of every request gunicorn serves (django.db.close_old_connections).
    probe.close_if_unusable_or_obsolete()
    assert probe.connection is held
    with probe.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    probe.close_at = 0  # as if PLD_DB_CONN_MAX_AGE had passed
    probe.close_if_unusable_or_obsolete()
    assert probe.connection is None
