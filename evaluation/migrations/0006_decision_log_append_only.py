# Written by hand: a logged decision and a Reviewer's feedback on it are records, never changed (database
# triggers). Deleting calls stays possible: purge_decisions enforces the retention period (a ledger event).

from django.db import migrations

from pldreview.db_triggers import (
    by_vendor,
    pg_drop,
    pg_function,
    pg_refusal,
    pg_trigger,
    refuse_changes,
    sqlite_column_guard,
    sqlite_drop,
)

CALL_MESSAGE = "A logged decision is a record: it cannot be changed (purge_decisions deletes by age)."
FEEDBACK_MESSAGE = "Feedback on a decision is a record: only its signature reference may be added."
# The columns a statement consists of; call_id and example_id may go NULL (purge), signature_ref be added later.
FEEDBACK_COLUMNS = "request_id, prompt_version_id, logged_label, correct_label, reason, given_by_id, created_at"
FEEDBACK = "pld_decisionfeedback_no_update"


class Migration(migrations.Migration):

    dependencies = [
        ("evaluation", "0005_production_role_permissions"),
    ]

    operations = [
        refuse_changes(
            "pld_classifycall_no_update", table="evaluation_classifycall", message=CALL_MESSAGE, refuse_delete=False
        ),
        by_vendor(
            {
                "sqlite": [
                    sqlite_column_guard(
                        FEEDBACK, table="evaluation_decisionfeedback", columns=FEEDBACK_COLUMNS,
                        message=FEEDBACK_MESSAGE,
                    ),
                ],
                "postgresql": [
                    pg_function(FEEDBACK, pg_refusal(FEEDBACK_MESSAGE)),
                    pg_trigger(FEEDBACK, before=f"UPDATE OF {FEEDBACK_COLUMNS}", table="evaluation_decisionfeedback"),
                ],
            },
            {"sqlite": sqlite_drop(FEEDBACK), "postgresql": pg_drop(FEEDBACK, table="evaluation_decisionfeedback")},
        ),
    ]
