# Written by hand: a logged decision and a Reviewer's feedback on it are records, never changed (database
# triggers). Deleting calls stays possible: purge_decisions enforces the retention period (a ledger event).

from django.db import migrations

CALL_MESSAGE = "A logged decision is a record: it cannot be changed (purge_decisions deletes by age)."
FEEDBACK_MESSAGE = "Feedback on a decision is a record: only its signature reference may be added."
# The columns a statement consists of; call_id and example_id may go NULL (purge), signature_ref be added later.
FEEDBACK_COLUMNS = "request_id, prompt_version_id, logged_label, correct_label, reason, given_by_id, created_at"

SQLITE_FORWARD = [
    f"""CREATE TRIGGER pld_classifycall_no_update BEFORE UPDATE ON evaluation_classifycall
    BEGIN SELECT RAISE(ABORT, '{CALL_MESSAGE}'); END;""",
    f"""CREATE TRIGGER pld_decisionfeedback_no_update BEFORE UPDATE OF {FEEDBACK_COLUMNS}
    ON evaluation_decisionfeedback BEGIN SELECT RAISE(ABORT, '{FEEDBACK_MESSAGE}'); END;""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS pld_classifycall_no_update;",
    "DROP TRIGGER IF EXISTS pld_decisionfeedback_no_update;",
]

POSTGRES_FORWARD = [
    f"""CREATE FUNCTION pld_classifycall_no_update() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '{CALL_MESSAGE}'; END $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER pld_classifycall_no_update BEFORE UPDATE ON evaluation_classifycall
    FOR EACH ROW EXECUTE FUNCTION pld_classifycall_no_update();""",
    f"""CREATE FUNCTION pld_decisionfeedback_no_update() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '{FEEDBACK_MESSAGE}'; END $$ LANGUAGE plpgsql;""",
    f"""CREATE TRIGGER pld_decisionfeedback_no_update BEFORE UPDATE OF {FEEDBACK_COLUMNS}
    ON evaluation_decisionfeedback FOR EACH ROW EXECUTE FUNCTION pld_decisionfeedback_no_update();""",
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS pld_classifycall_no_update ON evaluation_classifycall;",
    "DROP FUNCTION IF EXISTS pld_classifycall_no_update();",
    "DROP TRIGGER IF EXISTS pld_decisionfeedback_no_update ON evaluation_decisionfeedback;",
    "DROP FUNCTION IF EXISTS pld_decisionfeedback_no_update();",
]


def _run(statements):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("evaluation", "0005_production_role_permissions"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
