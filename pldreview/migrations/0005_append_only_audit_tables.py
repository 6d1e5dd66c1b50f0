# Written by hand: the database refuses UPDATE and DELETE on the audit record (see pldreview/db_triggers.py).

from django.db import migrations

from pldreview.db_triggers import append_only


class Migration(migrations.Migration):

    dependencies = [
        ("pldreview", "0004_ledger"),
        ("rules", "0005_example_feedback_split"),
        ("evaluation", "0007_report_ledger_anchor"),
    ]

    operations = [
        append_only(
            ["pldreview_ledgerentry", "rules_decision", "rules_rulerevision", "evaluation_promotion"],
            with_history=True,
        ),
    ]
