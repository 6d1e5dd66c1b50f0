"""The PostgreSQL pass runs only the tests that open the test database (scripts/test-postgres loads this plugin).

A test that never opens the test database runs the same code on both passes: its second run proves nothing about
PostgreSQL. Several of them start processes that are given a SQLite database of their own whatever the pass
(tests/pldreview/test_deploy_check.py, test_production_demo.py, test_slow_clients.py), so they were the pass's
slowest repeats. The SQLite pass (scripts/test) still runs every one of them.
"""
from __future__ import annotations

import pytest

# A test opens the test database through pytest-django's marker or one of these fixtures (directly or through
# a fixture that needs them: item.fixturenames is the whole closure).
DATABASE_FIXTURES = frozenset({
    "db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server",
})


def opens_test_database(item: pytest.Item) -> bool:
    """Return whether a collected test uses the test database (pytest-django's django_db marker or fixtures)."""
    if item.get_closest_marker("django_db") is not None:
        return True
    return bool(DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests that never open the test database; the report counts them as deselected."""
    kept, dropped = [], []
    for item in items:
        (kept if opens_test_database(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
