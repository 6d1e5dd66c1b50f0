"""Saving audited models: the acting user and the reason go onto the django-simple-history record."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

# The history tables' change-reason column is a CharField(max_length=100).
REASON_MAX_LENGTH = 100


def audited_save(
    instance: Any, *, user: AbstractBaseUser | None, reason: str, update_fields: Iterable[str] | None = None
) -> None:
    """Validate and save an audited model instance with who and why attached to its history record."""
    instance.full_clean()
    instance._history_user = user
    instance._change_reason = reason[:REASON_MAX_LENGTH] if reason else ""
    instance.save(update_fields=update_fields)
