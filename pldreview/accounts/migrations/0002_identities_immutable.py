# Written by hand: a username that has acted is part of the record; users are deactivated, never deleted.

from django.db import migrations

from pldreview.db_triggers import by_vendor, pg_checks, pg_drop, pg_function, pg_trigger, sqlite_drop, sqlite_guard

RENAME = "A username that has decided or signed anything cannot change (deactivate the user instead)."
DELETE = "Users are deactivated, never deleted."
HAS_ACTED = (
    "EXISTS (SELECT 1 FROM rules_decision WHERE reviewer_id = OLD.id)"
    " OR EXISTS (SELECT 1 FROM pldreview_ledgerentry WHERE actor_id = OLD.id)"
)

GUARD = "pld_user_identity_guard"

# SQLite gets no DELETE trigger: Django flushes test databases with DELETE FROM, which it would break.
# A user who acted is still kept there by the foreign keys of their decisions and ledger entries.
SQLITE_FORWARD = [
    sqlite_guard(
        "pld_username_immutable", before="UPDATE OF username", table="auth_user", message=RENAME,
        when=f"OLD.username <> NEW.username AND ({HAS_ACTED})",
    ),
]

# PostgreSQL flushes with TRUNCATE, which fires no row triggers, so deletes are refused there too.
POSTGRES_FORWARD = [
    pg_function(GUARD, pg_checks(
        ("TG_OP = 'DELETE'", DELETE), (f"NEW.username IS DISTINCT FROM OLD.username AND ({HAS_ACTED})", RENAME)
    )),
    pg_trigger(GUARD, before="UPDATE OR DELETE", table="auth_user"),
]


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_account_state"),
        ("rules", "0001_initial"),
        ("pldreview", "0004_ledger"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        by_vendor(
            {"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD},
            {"sqlite": sqlite_drop("pld_username_immutable"), "postgresql": pg_drop(GUARD, table="auth_user")},
        ),
    ]
