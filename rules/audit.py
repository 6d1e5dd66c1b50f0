"""Saving audited models: who and why go onto the django-simple-history record and into the ledger."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from pldreview.ledger import ledger_append, row_facts

# The history tables' change-reason column is a CharField(max_length=100).
REASON_MAX_LENGTH = 100


def audited_save(
    instance: Any,
    *,
    user: AbstractBaseUser | None,
    reason: str,
    update_fields: Iterable[str] | None = None,
    event: str = "",
) -> None:
    """Validate and save an audited model instance, with who and why on its history record and in the ledger.

    The ledger entry (``event``, default ``<model>.created`` / ``<model>.changed``) carries the row as
    saved, so a later change to the row behind the ledger's back is found by ``verify_ledger``.
    """
    instance.full_clean()
    adding = instance._state.adding
    instance._history_user = user
    instance._change_reason = reason[:REASON_MAX_LENGTH] if reason else ""
    # No savepoint of its own, like ledger_append: a failed save or append fails the caller's transaction whole.
    with transaction.atomic(savepoint=False):
        instance.save(update_fields=update_fields)
        name = instance._meta.model_name
        ledger_append(
            event=event or f"{name}.{'created' if adding else 'changed'}",
            actor=user,
            obj=instance,
            facts=row_facts(instance),
            reason=reason,
        )
