"""Migration 0013 gives every signature made before it the method it was made by, without opening the table."""
from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tests.support.migrations import migrate_to, migrate_to_the_latest

BEFORE = ("pldreview", "0012_signature_decision_overridden")
AFTER = ("pldreview", "0013_signature_auth_method")


@pytest.mark.django_db(transaction=True)
def test_earlier_signatures_get_password_or_password_totp_and_stay_append_only() -> None:
    try:
        old = migrate_to(BEFORE)
        try:
            user = old.get_model("auth", "User").objects.create(username="olde")
            signature = old.get_model("pldreview", "Signature")
            common = {"user": user, "username": "olde", "full_name": "Olde", "signed_at": timezone.now(),
                      "meaning": "approved", "content_sha256": "a" * 64, "reauth_policy": "each",
                      "password_checked": True}
            with_code = signature.objects.create(second_factor_checked=True, **common).pk
            without = signature.objects.create(second_factor_checked=False, **common).pk
        finally:
            migrate_to(AFTER)
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, auth_method FROM pldreview_signature ORDER BY id")
            assert dict(cursor.fetchall()) == {with_code: "password_totp", without: "password"}
            # The append-only guard is back after the backfill.
            with pytest.raises(DatabaseError), transaction.atomic():
                cursor.execute("UPDATE pldreview_signature SET auth_method = 'passkey'")
    finally:
        migrate_to_the_latest()
