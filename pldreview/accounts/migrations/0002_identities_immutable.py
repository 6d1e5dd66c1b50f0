# Written by hand: a username that has acted is part of the record; users are deactivated, never deleted.

from django.db import migrations

RENAME = "A username that has decided or signed anything cannot change (deactivate the user instead)."
DELETE = "Users are deactivated, never deleted."
HAS_ACTED = (
    "EXISTS (SELECT 1 FROM rules_decision WHERE reviewer_id = OLD.id)"
    " OR EXISTS (SELECT 1 FROM pldreview_ledgerentry WHERE actor_id = OLD.id)"
)

# SQLite gets no DELETE trigger: Django flushes test databases with DELETE FROM, which it would break.
# A user who acted is still kept there by the foreign keys of their decisions and ledger entries.
SQLITE_FORWARD = [
    f"""CREATE TRIGGER pld_username_immutable BEFORE UPDATE OF username ON auth_user
    WHEN OLD.username <> NEW.username AND ({HAS_ACTED})
    BEGIN SELECT RAISE(ABORT, '{RENAME}'); END;""",
]
SQLITE_BACKWARD = ["DROP TRIGGER IF EXISTS pld_username_immutable;"]

# PostgreSQL flushes with TRUNCATE, which fires no row triggers, so deletes are refused there too.
POSTGRES_FORWARD = [
    f"""CREATE FUNCTION pld_user_identity_guard() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN RAISE EXCEPTION '{DELETE}'; END IF;
      IF NEW.username IS DISTINCT FROM OLD.username AND ({HAS_ACTED}) THEN RAISE EXCEPTION '{RENAME}'; END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER pld_user_identity_guard BEFORE UPDATE OR DELETE ON auth_user
    FOR EACH ROW EXECUTE FUNCTION pld_user_identity_guard();""",
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS pld_user_identity_guard ON auth_user;",
    "DROP FUNCTION IF EXISTS pld_user_identity_guard();",
]


def _run(statements):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_account_state"),
        ("rules", "0001_initial"),
        ("pldreview", "0004_ledger"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
