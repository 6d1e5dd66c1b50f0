# Written by hand: promotions are audit records, kept forever and never changed (database triggers).

from django.db import migrations

MESSAGE = "A promotion is an audit record: it cannot be changed or deleted."

# SQLite gets no DELETE trigger: Django flushes test databases with DELETE FROM, which it would break.
SQLITE_FORWARD = [
    f"""CREATE TRIGGER pld_promotion_append_only BEFORE UPDATE ON evaluation_promotion
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;""",
]
SQLITE_BACKWARD = ["DROP TRIGGER IF EXISTS pld_promotion_append_only;"]

# PostgreSQL flushes with TRUNCATE, which fires no row triggers, so deletes are refused there too.
POSTGRES_FORWARD = [
    f"""CREATE FUNCTION pld_promotion_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER pld_promotion_append_only BEFORE UPDATE OR DELETE ON evaluation_promotion
    FOR EACH ROW EXECUTE FUNCTION pld_promotion_append_only();""",
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS pld_promotion_append_only ON evaluation_promotion;",
    "DROP FUNCTION IF EXISTS pld_promotion_append_only();",
]


def _run(statements):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("evaluation", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
