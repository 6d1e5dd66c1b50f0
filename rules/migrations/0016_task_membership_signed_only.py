"""Every new task membership is the result of its signed addition (issue 25): a database writer can no longer insert
a membership with no adder and no signature, nor reuse an old signature after a removal.

The INSERT trigger ``pld_taskmembership_signed`` (0015) refused only a row naming its adder without a signature. It
now refuses every row unless the latest change of that person in that task is an "add", signed by the signature the
row names, made by the Admin the row names. That change is append-only and on the ledger with its signature, so a
forged one shows in ``verify_ledger``. Rows already stored (access kept at the upgrade, rows added before additions
were signed) stay as they were: a trigger checks new rows only, and 0015's triggers refuse any UPDATE.
"""

from django.db import migrations

from pldreview.db_triggers import by_vendor, pg_checks, pg_function, pg_trigger, sqlite_drop, sqlite_guard

TABLE = "rules_taskmembership"
SIGNED = "pld_taskmembership_signed"
MESSAGE = ("task membership refused: a member is added only by the signed addition of an Admin"
           " (rules.membership.task_member_add)")
# The row's signature must be that of the latest change of this person in this task, an "add" by the row's adder.
# NULL never equals anything, so a row without a signature or without an adder is refused.
SIGNED_ADDITION = (
    "EXISTS (SELECT 1 FROM rules_taskmembershipchange c WHERE c.signature_id = NEW.signature_id"
    " AND c.action = 'add' AND c.by_id = NEW.added_by_id AND c.task_id = NEW.task_id AND c.user_id = NEW.user_id"
    " AND c.id = (SELECT MAX(id) FROM rules_taskmembershipchange"
    " WHERE task_id = NEW.task_id AND user_id = NEW.user_id))"
)
# Frozen copy of 0015's condition, restored when this migration is unapplied.
OLD_CONDITION = "NEW.added_by_id IS NOT NULL AND NEW.signature_id IS NULL"
OLD_MESSAGE = "task membership refused: an added member needs the signature of the Admin who added them"

# The statements that put the guard in place, by vendor. The tests' personas (tests/support/personas.py) lift it
# for their own unsigned memberships (LIFT) and put it back (PUT_BACK).
GUARD = {
    "sqlite": [sqlite_guard(SIGNED, before="INSERT", table=TABLE, message=MESSAGE, when=f"NOT {SIGNED_ADDITION}")],
    "postgresql": [
        pg_function(SIGNED, pg_checks((f"NOT {SIGNED_ADDITION}", MESSAGE)), replace=True),
        pg_trigger(SIGNED, before="INSERT", table=TABLE),
    ],
}
LIFT = {"sqlite": sqlite_drop(SIGNED), "postgresql": [f"DROP TRIGGER IF EXISTS {SIGNED} ON {TABLE};"]}
# What LIFT took away (on PostgreSQL the trigger only: its function stays).
PUT_BACK = {"sqlite": GUARD["sqlite"], "postgresql": GUARD["postgresql"][1:]}
OLD_GUARD = {
    "sqlite": [sqlite_guard(SIGNED, before="INSERT", table=TABLE, message=OLD_MESSAGE, when=OLD_CONDITION)],
    "postgresql": [
        pg_function(SIGNED, pg_checks((OLD_CONDITION, OLD_MESSAGE)), replace=True),
        pg_trigger(SIGNED, before="INSERT", table=TABLE),
    ],
}


class Migration(migrations.Migration):

    dependencies = [
        ('rules', '0015_task_membership_signed'),
    ]

    operations = [
        by_vendor(
            {"sqlite": [*LIFT["sqlite"], *GUARD["sqlite"]], "postgresql": [*LIFT["postgresql"], *GUARD["postgresql"]]},
            {"sqlite": [*LIFT["sqlite"], *OLD_GUARD["sqlite"]],
             "postgresql": [*LIFT["postgresql"], *OLD_GUARD["postgresql"]]},
        ),
    ]
