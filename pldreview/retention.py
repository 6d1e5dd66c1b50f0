"""The retention purge: the one permitted deletion from the append-only audit tables, itself a ledger event.

It deletes django-simple-history records older than a cutoff. Ledger entries are never purged (the
chain would break) and keep the facts of every change, so ``verify_ledger`` still vouches for each row;
the live audited rows are never purged either. The ``retention.purge`` entry names the delete permit it
opened, so ``verify_ledger`` can tell this deletion from a permit used by anyone else.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from pldreview.db_triggers import delete_permit
from pldreview.ledger import ledger_append
from pldreview.ledger_verify import audited_models


@transaction.atomic
def retention_purge(*, before: datetime, user: AbstractBaseUser, reason: str) -> dict[str, Any]:
    """Delete history records made before ``before`` and append a ``retention.purge`` entry saying so."""
    if not user.is_superuser:
        raise PermissionDenied("Only a superuser may purge audit history.")
    if not reason.strip():
        raise ValidationError("Say why the history is purged (e.g. the retention policy and its clause).")
    deleted: dict[str, int] = {}
    with delete_permit(f"retention purge before {before.isoformat()} by {user.get_username()}") as permit:
        for model in audited_models():
            history = model.history.model  # type: ignore[attr-defined]
            count, _ = history.objects.filter(history_date__lt=before).delete()
            deleted[history._meta.label_lower] = count
    entry = ledger_append(event="retention.purge", actor=user,
                          facts={"before": before, "deleted": deleted, "permit": permit}, reason=reason)
    return {"sequence": entry.sequence, "deleted": deleted, "permit": permit}
