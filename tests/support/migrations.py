"""Moving the test database to an earlier migration and back, for tests of a data migration."""
from __future__ import annotations

from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(target: tuple[str, str]) -> Apps:
    """Migrate the test database to ``target`` (app, migration) and return the historical apps there."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def migrate_to_the_latest() -> None:
    """Apply every migration again, so the tests after a migration test find the schema they expect.

    Migrating one app back also unapplies the later migrations of other apps that depend on it.
    """
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
