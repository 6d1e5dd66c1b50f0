# Written by hand: promotions are audit records, kept forever and never changed (database triggers).

from django.db import migrations

from pldreview.db_triggers import refuse_changes

MESSAGE = "A promotion is an audit record: it cannot be changed or deleted."


class Migration(migrations.Migration):

    dependencies = [
        ("evaluation", "0001_initial"),
    ]

    operations = [
        refuse_changes("pld_promotion_append_only", table="evaluation_promotion", message=MESSAGE),
    ]
